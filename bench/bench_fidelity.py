"""Merge fidelity on real history (issue 13): a window of more-itertools history replayed as clusters.

    python bench/bench_fidelity.py [--splits by-area,by-author,interleaved] [--out results.json]

For each split of the window's commits (``tests/replay_helpers.py``), each cluster's agent
cherry-picks its commits in order in its worktree (the same command agent the flow test uses, run
directly), then ``integrate_branches`` merges, resolves, verifies (nothing to verify) and accounts,
as the flow does, without Prefect. The integrated tree is compared with the upstream tip (the
commits applied in upstream order): lines lost, resurrected and duplicated against upstream, per
split, beside what the report said. Met when every differing file is named by the report and the
run is not "integrated", or the trees are equal and the run passes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import emit, workdir  # noqa: E402

from prefect_work_clusters.tasks.checks.rows import ClusterCheck  # noqa: E402
from prefect_work_clusters.tasks.git import core as gitops  # noqa: E402
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.integration.integrate import integrate_branches  # noqa: E402
from prefect_work_clusters.tasks.integration.models import IntegrationResult  # noqa: E402
from prefect_work_clusters.tasks.options import RunOptions  # noqa: E402
from prefect_work_clusters.tasks.resolve import resolve_run  # noqa: E402
from prefect_work_clusters.tasks.worktrees import prepare  # noqa: E402
from tests.replay_helpers import SPLITS, Window, differences, load_window, plan_yaml, write_agent  # noqa: E402


def named(result: IntegrationResult) -> set[str]:
    """The files the report names as not accounted for (or left in a conflict)."""
    acc = result.accounting
    paths = {i.path for i in acc.unexplained} | {f.path for f in acc.unexplained_findings} if acc else set()
    return paths | {f.path for s in result.steps for f in s.files if f.resolved_by is None}


def replay(root: Path, split_name: str) -> tuple[Window, IntegrationResult]:
    w = load_window(root)
    split = SPLITS[split_name](w)
    cmd, env = write_agent(root, split)
    plan = root / "replay.yaml"
    plan.write_text(plan_yaml(w, split))
    os.environ.update(env)  # the integration agent inherits it
    ctx = resolve_run(plan, w.repo, RunOptions(integration_agent_cmd=cmd), agents_needed=False)
    base = prepare(ctx).base_sha
    checks = []
    for name in split:
        wt = ctx.worktree(name)
        subprocess.run(cmd.split(), cwd=wt, check=True,
                       env={**os.environ, "WC_ROLE": "cluster", "WC_CLUSTER": name, "WC_WORKTREE": str(wt)})
        checks.append(ClusterCheck(cluster=name, status="ok", mergeable=True,
                                   files_changed=githistory.changed_files(ctx.repo, base, ctx.branch(name)),
                                   head_sha=gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.branch(name)}")))
    return w, integrate_branches(ctx, base, checks)


def run(splits: list[str], tmp: Path) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    results: dict[str, Any] = {}
    rows = []
    for name in splits:
        t0 = time.monotonic()
        w, result = replay(tmp / name, name)
        diffs = differences(w, result.final_sha, result.base_sha) if result.final_sha else []
        said = named(result)
        met = (not diffs and result.ok) or (bool(diffs) and not result.ok and {d.path for d in diffs} <= said)
        acc = result.accounting
        results[name] = {
            "clusters": len(result.steps), "seconds": round(time.monotonic() - t0, 1), "ok": result.ok,
            "conflicts": [f"{f.path} ({f.resolved_by or 'person'})" for s in result.steps for f in s.files],
            "differing_files": [d.__dict__ for d in diffs], "report_names": sorted(said),
            "report_kinds": [f"{i.count} {i.kind} in {i.path} ({', '.join(i.by)})" for i in acc.unexplained]
            + [f"{f.path}:{f.line} {f.message}" for f in acc.unexplained_findings] if acc else [],
            "met": met}
        lost, res, dup = (sum(getattr(d, k) for d in diffs) for k in ("lost", "resurrected", "duplicated"))
        verdict = "integrated" if result.ok else "not integrated"
        rows.append((f"{name}: {len(result.steps)} clusters, {len(diffs)} file(s) differ from upstream",
                     f"{lost} lost / {res} resurrected / {dup} duplicated",
                     f"report: {verdict}, names {len(said & {d.path for d in diffs})} of {len(diffs)}",
                     "met" if met else "NOT met"))
    return results, rows


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="merge the results into this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    with workdir("fidelity", keep=args.keep) as tmp:
        results, rows = run(args.splits.split(","), tmp)
    emit("merge fidelity: more-itertools history replayed as clusters", results, rows, args.out)
    for name, r in results.items():
        for line in r["report_kinds"]:
            print(f"  {name}: {line}")
    if not all(r["met"] for r in results.values()):
        raise SystemExit("a difference from upstream went unreported, or a faithful integration failed")


if __name__ == "__main__":
    main()
