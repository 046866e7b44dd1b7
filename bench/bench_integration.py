"""Integration speed (issue 4): the preflight and the merge of many disjoint cluster branches.

    python bench/bench_integration.py [--branches 50] [--files 5000] [--repeat 3] [--out results.json]

The repo is made with ``git fast-import`` (bench/common.py); each cluster branch edits one file of
its own folder and adds a module of 20 lines, so no two branches touch the same file. Timed
exactly as the flow runs them, without Prefect: the preflight (``tasks.integration.preflight.predict``: one
``git merge-tree --write-tree`` per branch) and ``integrate_branches`` (the integration worktree,
each clean merge written as objects and the worktree checked out once, then the change accounting).
Each repetition starts from a fresh integration branch; medians are reported.
Targets: the preflight in at most 1 s, the merges in at most 5 s (issue 16: 100 branches in a
100,000-file repo, as ``run_all.sh`` runs it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from common import base_parser, cluster_names, emit, layout, make_repo, verdict, workdir

from prefect_work_clusters.tasks.checks.rows import ClusterCheck
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.integration.integrate import integrate_branches
from prefect_work_clusters.tasks.integration.preflight import predict
from prefect_work_clusters.tasks.plan.models import Cluster, Plan

PREFLIGHT_TARGET, MERGE_TARGET = 1.0, 5.0


def make_branches(repo: Path, files: int, count: int) -> tuple[str, list[ClusterCheck]]:
    """One branch per cluster off ``main``, each changing only its own folder."""
    base = gitops.out(repo, "rev-parse", "main")
    owned = {name: [p for p in layout(files, count) if p.startswith(f"{name}/")] for name in cluster_names(count)}
    checks = []
    for name, paths in owned.items():
        changes = {f"{name}/added.py": "".join(f"{name.upper()}_{n} = {n}\n" for n in range(20)).encode()}
        if paths:
            changes[paths[0]] = f"# {paths[0]}, edited by {name}\n".encode()
        sha = githistory.commit_files_on(repo, base, changes, f"{name}: work")
        githistory.set_branch(repo, f"clusters/bench/{name}", sha, "bench")
        checks.append(ClusterCheck(cluster=name, status="ok", mergeable=True, files_changed=sorted(changes),
                                   head_sha=sha))
    return base, checks


def run(files: int, count: int, repeat: int, tmp: Path) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    repo = tmp / "repo"
    t0 = time.monotonic()
    made = make_repo(repo, files, count)
    base, checks = make_branches(repo, files, count)
    setup = time.monotonic() - t0
    plan = Plan(name="bench", clusters=[Cluster(name=c.cluster, paths=[f"{c.cluster}/"]) for c in checks])
    plan_file = tmp / "bench.yaml"
    plan_file.write_text("name: bench\n")
    ctx = RunContext(plan=plan, plan_file=plan_file, repo=repo, workspace=tmp / "workspace")
    branches = [(c.cluster, ctx.branch(c.cluster)) for c in checks]
    touched = {c.cluster: c.files_changed for c in checks}

    preflights, merges, accountings, checkouts, ok = [], [], [], [], True
    for _ in range(repeat):
        pf = predict(repo, base, branches, touched)
        preflights.append(pf.seconds)
        ok &= pf.conflict_count == 0
        if gitops.branch_exists(repo, ctx.integration_branch):
            gitworktrees.remove_worktree(repo, ctx.integration_worktree, force=True)
            githistory.delete_branch(repo, ctx.integration_branch)
        result = integrate_branches(ctx, base, checks)
        merges.append(result.merge_seconds)
        accountings.append(result.accounting_seconds)
        checkouts.append(result.checkout_seconds)
        acc = result.accounting
        ok &= result.ok and acc is not None and len(acc.clusters) == count and all(c.added >= 20 for c in acc.clusters)
    preflight, merge, accounting, checkout = (statistics.median(x)
                                              for x in (preflights, merges, accountings, checkouts))
    results = {"files": files, "branches": count, "repeat": repeat, "setup_seconds": round(setup, 3), **made,
               "preflight_seconds": preflights, "merge_seconds": merges, "accounting_seconds": accountings,
               "checkout_seconds": checkouts,
               "preflight_seconds_median": preflight, "merge_seconds_median": merge, "all_merged_and_kept": ok}
    rows = [
        (f"preflight of {count} branches (git merge-tree)", f"{preflight:.3f} s", f"<= {PREFLIGHT_TARGET:g} s",
         verdict(preflight, PREFLIGHT_TARGET)),
        (f"merge of {count} branches in {files:,} files (clean: merge-tree, one checkout)", f"{merge:.3f} s",
         f"<= {MERGE_TARGET:g} s", verdict(merge, MERGE_TARGET)),
        ("of it: the one checkout of the integration worktree", f"{checkout:.3f} s", "-", "-"),
        ("per merge, the checkout left out", f"{1000 * (merge - checkout) / max(1, count):.1f} ms", "-", "-"),
        (f"change accounting of {count} clusters", f"{accounting:.3f} s", "-", "-"),
        ("every branch merged, every line kept", "yes" if ok else "NO", "yes", "met" if ok else "NOT met"),
    ]
    return results, rows


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], files=5000, clusters=50)
    parser.add_argument("--branches", dest="clusters", type=int, default=argparse.SUPPRESS,
                        help="cluster branches to merge (the same as --clusters; default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; medians are reported (default 3)")
    args = parser.parse_args()
    with workdir("integration", keep=args.keep) as tmp:
        results, rows = run(args.files, args.clusters, args.repeat, tmp)
    emit("integration: preflight and merge of disjoint branches", results, rows, args.out)
    if not results["all_merged_and_kept"]:
        raise SystemExit("a branch did not merge cleanly or a line was lost: the numbers above are not valid")


if __name__ == "__main__":
    main()
