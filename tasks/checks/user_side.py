"""What is the user's while agents run: the files of their checkout, and the refs a person may move
(``tasks.checks.containment`` reports changes to them as "changed while agents ran: by you or by an
agent" and never undoes them): remote-tracking refs, the stash, the branches checked out in a
worktree that is not this plan's, and refs created outside ``refs/replace/`` and ``clusters/<plan>/``.
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path

from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import gitdir
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.proc import background

USER_SIDE = "changed while agents ran: by you or by an agent"
# The user's checkout as ``user_state`` reads it: path -> (status letters, mtime_ns, size).
CheckoutState = dict[str, tuple[str, int, int]]


def user_state(repo: Path) -> CheckoutState:
    """The user's checkout: each file git shows as changed or untracked, with its stat. Read with
    ``--no-optional-locks`` so that looking never rewrites the user's index."""
    text = gitops.out(repo, "--no-optional-locks", "status", "--porcelain=v1", "-z", "--untracked-files=all",
                      "--no-renames")
    state: CheckoutState = {}
    for item in (i for i in text.split("\0") if i):
        code, rel = item[:2], item[3:]
        try:
            st = os.lstat(repo / rel)
            state[rel] = (code, st.st_mtime_ns, st.st_size)
        except OSError:
            state[rel] = (code, 0, 0)
    return state



def read_checkout(repo: Path) -> Future[CheckoutState]:
    """Your checkout's status (~1 s at 100,000 files, in git) read in the background now, for the
    containment watch (``containment.begin``, before the first agent): read while the worktrees are made.
    Nothing of the run writes there meanwhile (its workspace lies outside the repository), and an
    edit of yours in between is reported as the others: changed while agents ran, by you or by an agent."""
    return background.begin("wc-checkout", user_state, repo)


def checked_out_by_user(ctx: RunContext) -> set[str]:
    """The branches checked out in a worktree that is not this plan's (your checkout, mostly)."""
    ours = {str(ctx.worktree(c.name)) for c in ctx.plan.clusters} | {str(ctx.integration_worktree)}
    return {f"refs/heads/{w.branch}" for w in gitworktrees.worktrees(ctx.repo) if w.branch and str(w.path) not in ours}


def user_movable(ctx: RunContext, change: gitdir.Change, checked_out: set[str]) -> bool:
    name = change.name
    if name.startswith(("refs/remotes/", "refs/stash")):
        return True
    if change.before is None and not name.startswith(("refs/replace/", f"refs/heads/{ctx.prefix}/")):
        return True  # a branch or tag you made; deleting it could lose your work
    return name in checked_out
