"""Containment cost (issues 12 and 16): what the guards cost a whole run, per attempt, and per
git call (the driver overrides).

    python bench/bench_guard.py [--clusters 100] [--files 400] [--rounds 20] [--out results.json]

The repo (``git fast-import``, bench/common.py) gets one branch and one sparse worktree per
cluster, made as a run makes them (``tasks.worktrees.prepare``). The whole run's figure (issue 16:
guard and accounting of 100 clusters on 100,000 files <= 3 s together) is every guard call a run
makes, in order: the watch's start (the user's checkout and the git dir), per cluster one attempt
as ``run_attempt`` pays it (the window opened, a comparison after the agent, ``check_attempt``, a
comparison after verify, the untracked files remembered, the window closed; the agent's file and
our commits are not timed), the branches and base checked after all agents, the integration's
window, and the last comparison; then the change accounting of the branches the attempts made.
Per attempt: a window opened and closed around an attempt plus one comparison inside it, and a
window whose agent planted a hook and moved another cluster's branch (found, restored, blamed).
Per git call: ``git rev-parse HEAD`` through ``tasks.git.core.run`` with the driver overrides
active against a bare ``subprocess.run``.

What costs what: a comparison reads again only what the kernel saw change in the shared git dir
since the last one (``tasks.git.events``, inotify: a watch on each watched folder and file), so
it costs what changed, not the ~620 files of 100 worktrees' admin dirs, hooks/, info/ and refs;
the per-attempt row is also measured with ``WORK_CLUSTERS_NO_INOTIFY`` set (every comparison a
full read with stat stamps, as before). The rest of a run's guards is git: your checkout's
status at the start and the end (with the file count), one ``ls-files`` per attempt for its
untracked files, one status per worktree at the end; building the watches is part of the start.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from common import base_parser, cluster_names, emit, layout, make_repo, verdict, workdir

from prefect_work_clusters.tasks.agents import guard
from prefect_work_clusters.tasks.checks import containment
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import events
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.integration.accounting import account
from prefect_work_clusters.tasks.plan.models import Cluster, Plan, WorktreeOptions
from prefect_work_clusters.tasks.worktrees import Prepared, prepare

TARGET_MS = 100.0
RUN_TARGET_S = 3.0  # issue 16: the guards and the change accounting of a 100-cluster run together


def _ctx(tmp: Path, files: int, count: int) -> tuple[RunContext, Prepared]:
    repo = tmp / "repo"
    make_repo(repo, files, count)
    names = cluster_names(count)
    plan = Plan(name="bench", clusters=[Cluster(name=n, paths=[f"{n}/"]) for n in names],
                worktree=WorktreeOptions(checkout="sparse"))
    plan_file = tmp / "bench.yaml"
    plan_file.write_text("name: bench\n")
    ctx = RunContext(plan=plan, plan_file=plan_file, repo=repo, workspace=tmp / "workspace")
    return ctx, prepare(ctx)


class Clock:
    """Time spent in the guards (``with clock:`` around each call), the work between them left out."""

    def __init__(self) -> None:
        self.seconds = self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._start


def _whole_run(ctx: RunContext, prepared: Prepared, files: int) -> dict[str, float]:
    """Every guard call of a run, in the run's order, and the accounting of the branches it made."""
    clock, paths = Clock(), layout(files, len(ctx.plan.clusters))
    with clock:
        containment.begin(ctx, fresh=True)
    begin_s = clock.seconds
    changes: dict[str, bytes] = {}
    for record in prepared.records:
        name, wt = record.cluster, record.worktree
        window = containment.window(ctx, name, wt)
        with clock:
            win = window.__enter__()
        link_before, head_before = guard.git_link(wt), gitops.head(wt)
        mine = {f"{name}/added.py": "".join(f"{name.upper()}_{n} = {n}\n" for n in range(20)).encode()}
        owned = next((p for p in paths if p.startswith(f"{name}/")), None)
        if owned:
            mine[owned] = f"# {owned}, edited by {name}\n".encode()
        for rel, body in mine.items():  # the agent
            (wt / rel).write_bytes(body)
        changes.update(mine)
        with clock:
            containment.check_now(ctx, win)
            guard.check_attempt(ctx, record, link_before, head_before)
            ignores = containment.trusted_ignores(ctx)
        gitchanges.commit_all(wt, f"{name}: work", ignores=ignores)
        with clock:
            containment.check_now(ctx, win, last=True)
        gitchanges.commit_empty(wt, f"work-clusters: {name} finished")
        with clock:
            containment.remember_worktree(ctx, name, wt)
            window.__exit__(None, None, None)
        record.head_sha = gitops.head(wt)
    attempts_s = clock.seconds - begin_s
    with clock:
        records = guard.restore_refs(ctx, prepared.records)[0]
        guard.restore_base(ctx, prepared.base_sha, records)
        with containment.window(ctx, containment.INTEGRATION):
            pass  # the merges in here are bench_integration's
    before_finish = clock.seconds
    with clock:
        notes = containment.finish(ctx)
    finish_s = clock.seconds - before_finish
    final = githistory.commit_files_on(ctx.repo, prepared.base_sha, changes, "integrated")
    t = time.perf_counter()
    acc = account(ctx.repo, prepared.base_sha, final, [(r.cluster, r.branch) for r in records], [])
    accounting_s = time.perf_counter() - t
    if notes or not acc.ok:
        raise SystemExit(f"a clean run was reported: {notes or acc}")
    return {"guard_s": clock.seconds, "begin_s": begin_s, "attempts_s": attempts_s, "finish_s": finish_s,
            "accounting_s": accounting_s}


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
            moved = githistory.commit_files_on(ctx.repo, "main", {"moved.txt": b"by another agent\n"}, "moved")
            githistory.set_branch(ctx.repo, ctx.branch(other), moved, "bench")
        containment.check_now(ctx, win)
        containment.check_now(ctx, win, last=True)
    return 1000 * (time.perf_counter() - t), 1000 * (time.process_time() - cpu), win.tampering


def run(files: int, count: int, rounds: int, tmp: Path) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    ctx, prepared = _ctx(tmp, files, count)
    whole = _whole_run(ctx, prepared, files)
    t = time.perf_counter()
    containment.begin(ctx)
    begin_ms = 1000 * (time.perf_counter() - t)
    names = [c.name for c in ctx.plan.clusters]
    clean, clean_cpu, _ = zip(*(_attempt_ms(ctx, names[i % count], False) for i in range(rounds)), strict=True)
    attacked, _, blamed = zip(*(_attempt_ms(ctx, names[0], True) for _ in range(max(3, rounds // 10))), strict=True)
    caught = all(any("post-commit" in b for b in found) and any(ctx.branch(names[-1]) in b for b in found)
                 for found in blamed)
    os.environ[events.OFF_ENV] = "1"  # every comparison a full read, as before the watches
    try:
        walked = statistics.median(_attempt_ms(ctx, names[i % count], False)[0] for i in range(rounds))
    finally:
        del os.environ[events.OFF_ENV]
    notes = containment.finish(ctx)

    calls = 10 * rounds  # 200 at the default 20 rounds; the smoke test makes a few
    t = time.perf_counter()
    for _ in range(calls):
        gitops.run(ctx.repo, "rev-parse", "HEAD")
    ours_ms = 1000 * (time.perf_counter() - t) / calls
    t = time.perf_counter()
    for _ in range(calls):
        subprocess.run(["git", "rev-parse", "HEAD"], cwd=ctx.repo, capture_output=True, check=True)
    bare_ms = 1000 * (time.perf_counter() - t) / calls

    per_attempt, restoring, cpu = statistics.median(clean), statistics.median(attacked), statistics.median(clean_cpu)
    together = whole["guard_s"] + whole["accounting_s"]
    results = {"clusters": count, "files": files, "rounds": rounds, "begin_ms": round(begin_ms, 2),
               **{f"run_{k}": round(v, 3) for k, v in whole.items()}, "run_guard_and_accounting_s": round(together, 3),
               "attempt_ms": [round(x, 2) for x in clean], "attempt_ms_median": round(per_attempt, 2),
               "attempt_cpu_ms_median": round(cpu, 2), "attempt_full_read_ms_median": round(walked, 2),
               "attacked_attempt_ms_median": round(restoring, 2), "attacks_caught_and_blamed": caught,
               "unexpected_notes": notes, "git_call_ms": round(ours_ms, 2), "bare_git_call_ms": round(bare_ms, 2)}
    rows = [
        (f"guards and accounting of a {count}-cluster run, {files:,} files", f"{together:.2f} s",
         f"<= {RUN_TARGET_S:g} s", verdict(together, RUN_TARGET_S)),
        ("of it the guards: start / attempts / end (s)",
         f"{whole['guard_s']:.2f} ({whole['begin_s']:.2f} / {whole['attempts_s']:.2f} / {whole['finish_s']:.2f})",
         "-", "-"),
        ("of it the change accounting (s)", f"{whole['accounting_s']:.2f}", "-", "-"),
        (f"containment per attempt, {count} branches and worktrees (3 comparisons)", f"{per_attempt:.1f} ms",
         f"< {TARGET_MS:g} ms", verdict(per_attempt, TARGET_MS)),
        ("  of it CPU time in this process (git children not counted)", f"{cpu:.1f} ms", "-", "-"),
        ("  the same, every comparison a full read (no inotify)", f"{walked:.1f} ms", "-", "-"),
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
    emit("containment: the guards of a whole run, the shared git dir per attempt, driver overrides", results, rows,
         args.out)
    if not results["attacks_caught_and_blamed"] or results["unexpected_notes"]:
        raise SystemExit("an attack was missed or a clean attempt was reported: the numbers above are not valid")


if __name__ == "__main__":
    main()
