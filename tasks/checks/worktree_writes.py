"""Writes into a cluster's worktree while its agent was not running (between its attempts, after
it finished): a process the run does not control, or the agent's own left behind. Removed, never
committed as the cluster's work, and named; the containment watch (``tasks.checks.containment``)
asks, with the untracked files each worktree may hold."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops


def written(expected: set[str] | None, cluster: str, worktree: Path, when: str, idle: bool = False) -> str | None:
    """Files changed in a cluster's worktree while its agent was not running: removed (they must
    never be committed as its work) and named. Only after an attempt of this run: the files there
    are then known (``expected``: the untracked files it may hold). ``idle``: its git at the
    lowest CPU priority (a look beside the run's own work)."""
    if expected is None or not worktree.is_dir():
        return None
    # One status for edits and untracked files alike (as ``git ls-files --others`` lists them);
    # not stripped: an entry starts with its two status letters, a space among them.
    listed = [i for i in gitops.run(worktree, "status", "--porcelain=v1", "-z", "--untracked-files=all",
                                    "--no-renames", idle=idle).stdout.split("\0") if i]
    new = {i[3:] for i in listed if i.startswith("??")} - expected
    changed = sorted({i[3:] for i in listed if not i.startswith("??")} | new)
    if not changed:
        return None
    gitchanges.reset_to(worktree, gitops.head(worktree), keep=expected)
    return f"files written into {cluster}'s worktree {when} (removed, never committed): {', '.join(changed[:20])}"


def after_agents(ctx: RunContext, pool: ThreadPoolExecutor, untracked: dict[str, set[str]],
                 idle: bool = False) -> Iterator[str | None]:
    """``written`` for each cluster ``untracked`` names (with the untracked files its
    worktree may hold), after its agent finished: one git status each, side by side in ``pool``."""
    return pool.map(lambda cluster: written(untracked[cluster], cluster, ctx.worktree(cluster),
                                            "after its agent finished", idle), list(untracked))
