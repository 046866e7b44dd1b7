"""Containment cost (issue 12): the shared git dir's snapshot/compare per attempt, and the driver
overrides' cost per git call.

    python bench/bench_guard.py [--clusters 100] [--files 400] [--rounds 20] [--out results.json]

The repo (``git fast-import``, bench/common.py) gets one branch and one worktree per cluster, as
a run has (worktrees added with ``--no-checkout``: the check reads the admin dirs, not the
files). Timed exactly as ``run_attempt`` pays it: a window opened and closed around an attempt
(two comparisons), plus one comparison inside it; and a window whose agent planted a hook and
moved another cluster's branch (found, restored, blamed). Per git call: ``git rev-parse HEAD``
through ``tasks.git.core.run`` with the driver overrides active against a bare ``subprocess.run``.
Target: the containment of one attempt well under 100 ms at 100 clusters.
"""

from __future__ import annotations

import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from common import base_parser, cluster_names, emit, make_repo, verdict, workdir

from prefect_work_clusters.tasks.checks import containment
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.plan.models import Cluster, Plan

TARGET_MS = 100.0


def _ctx(tmp: Path, files: int, count: int) -> RunContext:
    repo = tmp / "repo"
    make_repo(repo, files, count)
    names = cluster_names(count)
    plan = Plan(name="bench", clusters=[Cluster(name=n, paths=[f"{n}/"]) for n in names])
    plan_file = tmp / "bench.yaml"
    plan_file.write_text("name: bench\n")
    ctx = RunContext(plan=plan, plan_file=plan_file, repo=repo, workspace=tmp / "workspace")
    base = gitops.out(repo, "rev-parse", "main")
    gitops.set_branch(repo, ctx.base_branch, base, "bench")
    for name in names:
        gitops.run(repo, "worktree", "add", "-q", "--no-checkout", "-b", ctx.branch(name), str(ctx.worktree(name)),
                   base)
    return ctx


def _attempt_ms(ctx: RunContext, cluster: str, attack: bool) -> tuple[float, float, list[str]]:
    """Wall and CPU (this process, not its git children) milliseconds of one attempt's containment:
    as ``run_attempt`` does it, a comparison when the window opens, after the agent and after verify."""
    t, cpu = time.perf_counter(), time.process_time()
    with containment.window(ctx, cluster) as win:
        if attack:
            hook = gitops.common_dir(ctx.repo) / "hooks" / "post-commit"
            hook.write_text("#!/bin/sh\nexit 0\n")
            hook.chmod(0o755)
            other = ctx.plan.clusters[-1].name
            moved = gitops.commit_files_on(ctx.repo, "main", {"moved.txt": b"by another agent\n"}, "moved")
            gitops.set_branch(ctx.repo, ctx.branch(other), moved, "bench")
        containment.check_now(ctx, win)
        containment.check_now(ctx, win, last=True)
    return 1000 * (time.perf_counter() - t), 1000 * (time.process_time() - cpu), win.tampering


def run(files: int, count: int, rounds: int, tmp: Path) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    ctx = _ctx(tmp, files, count)
    t = time.perf_counter()
    containment.begin(ctx)
    begin_ms = 1000 * (time.perf_counter() - t)
    names = [c.name for c in ctx.plan.clusters]
    clean, clean_cpu, _ = zip(*(_attempt_ms(ctx, names[i % count], False) for i in range(rounds)), strict=True)
    attacked, _, blamed = zip(*(_attempt_ms(ctx, names[0], True) for _ in range(max(3, rounds // 10))), strict=True)
    caught = all(any("post-commit" in b for b in found) and any(ctx.branch(names[-1]) in b for b in found)
                 for found in blamed)
    notes = containment.finish(ctx)

    calls = 200
    t = time.perf_counter()
    for _ in range(calls):
        gitops.run(ctx.repo, "rev-parse", "HEAD")
    ours_ms = 1000 * (time.perf_counter() - t) / calls
    t = time.perf_counter()
    for _ in range(calls):
        subprocess.run(["git", "rev-parse", "HEAD"], cwd=ctx.repo, capture_output=True, check=True)
    bare_ms = 1000 * (time.perf_counter() - t) / calls

    per_attempt, restoring, cpu = statistics.median(clean), statistics.median(attacked), statistics.median(clean_cpu)
    results = {"clusters": count, "files": files, "rounds": rounds, "begin_ms": round(begin_ms, 2),
               "attempt_ms": [round(x, 2) for x in clean], "attempt_ms_median": round(per_attempt, 2),
               "attempt_cpu_ms_median": round(cpu, 2),
               "attacked_attempt_ms_median": round(restoring, 2), "attacks_caught_and_blamed": caught,
               "unexpected_notes": notes, "git_call_ms": round(ours_ms, 2), "bare_git_call_ms": round(bare_ms, 2)}
    rows = [
        (f"containment per attempt, {count} branches and worktrees (3 comparisons)", f"{per_attempt:.1f} ms",
         f"< {TARGET_MS:g} ms", verdict(per_attempt, TARGET_MS)),
        ("  of it CPU time in this process (git children not counted)", f"{cpu:.1f} ms", "-", "-"),
        ("the same with a planted hook and a moved branch (restored)", f"{restoring:.1f} ms", "-", "-"),
        ("snapshot at the start of the run", f"{begin_ms:.1f} ms", "-", "-"),
        ("git call through core.run, driver overrides on", f"{ours_ms:.2f} ms", "-", "-"),
        ("bare subprocess git call", f"{bare_ms:.2f} ms", "-", "-"),
        ("every attack caught and blamed on its attempt", "yes" if caught and not notes else "NO", "yes",
         "met" if caught and not notes else "NOT met"),
    ]
    return results, rows


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], files=400, clusters=100)
    parser.add_argument("--rounds", type=int, default=20, help="attempts timed; medians are reported (default 20)")
    args = parser.parse_args()
    with workdir("guard", keep=args.keep) as tmp:
        results, rows = run(args.files, args.clusters, args.rounds, tmp)
    emit("containment: shared git dir snapshot/compare and driver overrides", results, rows, args.out)
    if not results["attacks_caught_and_blamed"] or results["unexpected_notes"]:
        raise SystemExit("an attack was missed or a clean attempt was reported: the numbers above are not valid")


if __name__ == "__main__":
    main()
