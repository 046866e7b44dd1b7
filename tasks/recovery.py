"""Safety around a run: one run per repo and plan, and recovery from a run that was killed.

A run holds a lock keyed by repository and plan for its whole duration; a second run of the
same plan is refused at once, runs of other plans proceed. A run killed with SIGKILL releases
the lock with its process (flock), but may leave agents running (they live in their own
sessions) and git lock files behind; the next run stops the former and removes the latter.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from prefect_work_clusters.tasks.context import RunContext, write_json_atomic
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.proc import tree as proctree


class RunLocked(WorkClustersError):
    """Another run of the same plan on the same repository is in progress: try again later."""

    exit_code = 75  # EX_TEMPFAIL: nothing was done, the same command may succeed later


# Locks this process holds for the code it calls, by lock file, and how many times: the CLI
# takes the lock before Prefect starts (so a refusal costs no server start and prints no flow
# traceback), and the flow it then calls takes it again, which must not refuse its own caller.
_shared: dict[Path, int] = {}


def _lock_paths(ctx: RunContext) -> tuple[Path, Path]:
    base = gitops.common_dir(ctx.repo) / f"work-clusters-run-{ctx.plan.name}"
    return base.with_suffix(".lock"), base.with_suffix(".owner.json")


@contextmanager
def run_lock(ctx: RunContext, *, share: bool = False) -> Iterator[None]:
    """Hold the run lock of ``ctx``'s repo and plan, or raise RunLocked at once. Taken by
    ``run``, ``integrate`` and ``clean``. With ``share``, what this process calls inside may
    take it again (the CLI around its flow); otherwise a second taking is refused too."""
    lock_path, owner_path = _lock_paths(ctx)
    if _shared.get(lock_path):
        _shared[lock_path] += 1
        try:
            yield
        finally:
            _shared[lock_path] -= 1
        return
    lock = FileLock(str(lock_path), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        owner = read_json(owner_path)
        who = f" (pid {owner.get('pid')} on {owner.get('host')}, since {owner.get('since')})" if owner else ""
        raise RunLocked(f"another run of plan {ctx.plan.name} is in progress on {ctx.repo}{who}; "
                        "wait for it to finish, or stop it, then try again") from None
    try:
        write_json_atomic(owner_path, {"pid": os.getpid(), "host": socket.gethostname(),
                                       "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        if share:
            _shared[lock_path] = 1
        yield
    finally:
        _shared.pop(lock_path, None)
        owner_path.unlink(missing_ok=True)
        lock.release()


def read_json(path: Path) -> dict[str, object]:
    """The JSON object in ``path``, or ``{}`` when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _pid_file(ctx: RunContext, cluster: str) -> Path:
    return ctx.runs_dir / "pids" / f"{cluster}.json"


def note_agent_started(ctx: RunContext, cluster: str, pid: int) -> None:
    """Record a running agent, so that a run killed meanwhile can be cleaned up after."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        return
    write_json_atomic(_pid_file(ctx, cluster), {"pid": pid, "create_time": created})


def note_agent_ended(ctx: RunContext, cluster: str) -> None:
    _pid_file(ctx, cluster).unlink(missing_ok=True)


def _recorded_agents(ctx: RunContext) -> list[tuple[Path, int, float]]:
    pid_dir = ctx.runs_dir / "pids"
    found = []
    for pid_file in sorted(pid_dir.glob("*.json")) if pid_dir.is_dir() else []:
        data = read_json(pid_file)
        pid, created = data.get("pid"), data.get("create_time")
        if isinstance(pid, int) and isinstance(created, float):
            found.append((pid_file, pid, created))
    return found


def stop_agents(ctx: RunContext, grace: float = 2.0) -> None:
    """Stop every agent of this run now, all at once (an interrupt): TERM, ``grace``, KILL.
    Their attempts then return as if the agents had died, and record the clusters interrupted."""
    stoppers = [threading.Thread(target=proctree.stop_orphan, args=(pid, created, grace), daemon=True)
                for _, pid, created in _recorded_agents(ctx)]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join(grace + 5)


def recover(ctx: RunContext) -> list[str]:
    """Undo what a killed run left: agents still running, git lock files. Call under run_lock.

    Returns one note per thing done, for the report.
    """
    notes: list[str] = []
    for pid_file, pid, created in _recorded_agents(ctx):
        if proctree.stop_orphan(pid, created):
            notes.append(f"stopped agent {pid_file.stem} (pid {pid}) left running by an earlier run that was killed")
        pid_file.unlink(missing_ok=True)
    places = [ctx.worktree(c.name) for c in ctx.plan.clusters] + [ctx.integration_worktree]
    for wt in places:
        if not (wt / ".git").exists():
            continue
        lock = Path(gitops.out(wt, "rev-parse", "--path-format=absolute", "--git-path", "index.lock"))
        if lock.exists():
            lock.unlink()
            notes.append(f"removed {lock}, a git lock file left by an earlier run that was killed "
                         "(no run of this plan holds it now)")
    return notes
