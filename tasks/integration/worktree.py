"""The integration worktree: made on our integration branch (before the agents start, in a run, and
written while they work), and which commit its index and files hold while they lag the branch.

A clean merge is made as objects (``tasks.integration.merging``) and the files are left behind;
they catch up once, touching only what changed, before anything needs them. Where they are is
written to ``.runs/integration-files.json``, so a run stopped in between catches them up before
it looks at the worktree again. A worktree written ahead holds nothing but what we wrote: a file
an agent put there while it worked stops the integration before any merge.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path

from prefect_work_clusters.tasks.context import RunContext, write_json_atomic
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import merge as gitmerge
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.integration.agent import decisions_dir
from prefect_work_clusters.tasks.integration.tip import record_tip
from prefect_work_clusters.tasks.proc import background
from prefect_work_clusters.tasks.worktrees import sparse_dirs

ATTRIBUTES = ".gitattributes"


def names_attributes(paths: Iterable[str]) -> bool:
    """Whether a ``.gitattributes`` file is among ``paths`` (string tests: 100,000 paths of a tree
    as PurePosixPath took 0.5 s)."""
    return any(p == ATTRIBUTES or p.endswith("/" + ATTRIBUTES) for p in paths)


class WorktreeFiles:
    """Which commit the integration worktree's index and files hold while they lag its branch."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.record = ctx.runs_dir / "integration-files.json"
        self.seconds = 0.0  # spent catching up
        self._filling: Future[str | None] | None = None

    def lagging(self) -> bool:
        return self.record.exists()

    def _read(self) -> dict[str, object]:
        try:
            found = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return {}
        return found if isinstance(found, dict) else {}

    def at(self) -> str | None:
        """The commit the files hold; None when the worktree was never checked out."""
        found = self._read().get("at")
        return found if isinstance(found, str) else None

    def written_ahead(self) -> bool:
        """Whether the files were written whole while the agents worked (``write_ahead``), and
        nothing of ours has written in the worktree since."""
        return self._read().get("ahead") is True

    def mark(self, at: str | None, *, new: bool = False) -> None:
        """The branch is about to move past the files, which hold ``at``; kept from the first move
        (``new``: a new worktree, whatever an old record said)."""
        if new or not self.lagging():
            write_json_atomic(self.record, {"at": at})

    def fill(self, commit: str, *, ahead: bool = False) -> None:
        """Write a never-checked-out worktree's index and files at ``commit`` in the background,
        while the preflight and the merges run as objects (they touch neither); the catch-up at the
        end waits for it and then writes only what the merges changed. A sparse plan's 25,000
        files took 2.6 s after the merges, one after the other. ``ahead``: beside the agents, at
        the lowest CPU priority, and recorded as written ahead."""
        if not self.lagging() or self.at() is not None or self._filling is not None:
            return

        def write() -> str | None:
            problem = gitmerge.catch_up(self.ctx.integration_worktree, None, commit, idle=ahead)
            if problem is None:  # said at once: a run stopped after this goes on from ``commit``
                write_json_atomic(self.record, {"at": commit, "ahead": True} if ahead else {"at": commit})
            return problem

        self._filling = background.begin("wc-fill", write)

    def wait(self) -> None:
        """Wait for a fill still writing (when it failed, the record still says "never checked out")."""
        if self._filling is not None:
            self._filling.result()
            self._filling = None

    def catch_up(self) -> str | None:
        """Bring the files to the branch; git's reason when it refuses (nothing is changed then)."""
        t0 = time.monotonic()
        self.wait()
        problem = gitmerge.catch_up(self.ctx.integration_worktree, self.at()) if self.lagging() else None
        self.seconds += time.monotonic() - t0
        if problem is None:
            self.record.unlink(missing_ok=True)
        return problem

    def must_catch_up(self) -> None:
        problem = self.catch_up()
        if problem:
            wt = shlex.quote(str(self.ctx.integration_worktree))
            raise WorkClustersError(
                f"the integration worktree {wt} could not be brought to {self.ctx.integration_branch}: {problem}; "
                f"move what git names out of the worktree, then re-run")


def _worktree(ctx: RunContext, base_sha: str) -> gitworktrees.WorktreeInfo:
    """The integration worktree, not checked out when new. In a sparse plan it holds every
    cluster's cone: verification sees what the clusters saw, and its files are those folders, not
    the whole repository."""
    cones = sparse_dirs(ctx, [p for c in ctx.plan.clusters for p in c.paths])
    return gitworktrees.ensure_worktree(ctx.repo, ctx.integration_worktree, ctx.integration_branch, base_sha,
                                        cones, checkout=False)


def write_ahead(ctx: RunContext, base_sha: str) -> WorktreeFiles | None:
    """A run's new integration worktree and branch, made at the base before its agents start (so
    the containment guard watches them from then on), its files written in the background while
    the agents work, at the lowest CPU priority so that they never slow the agents (in a 100-cluster
    run of instant agents, CPU-bound, it took 4 s from their phase at the usual priority); the
    integration then writes only what the merges change. ``wait()`` before the integration. None
    when the worktree or the branch exists already: the integration takes them as it finds them.
    A full plan's 100,000 files take 3 to 9 s to write."""
    if (ctx.integration_worktree / ".git").exists() or \
            gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.integration_branch}") is not None:
        return None
    files = WorktreeFiles(ctx)
    files.mark(None, new=True)
    _worktree(ctx, base_sha)
    record_tip(ctx, tip=base_sha)
    files.fill(base_sha, ahead=True)
    return files


def _nothing_planted(wt: Path) -> None:
    """A worktree written ahead holds nothing but what we wrote; anything else was written while
    the agents ran (one outside the sandbox can write there): a file planted for the verify
    commands to run, a ``conftest.py`` say, stops the integration before any merge, kept for you to see."""
    found = gitchanges.written(wt)
    if found:
        more = f" (+{len(found) - 10} more)" if len(found) > 10 else ""
        raise WorkClustersError(
            f"the integration worktree {wt} holds files this run did not write, written while the agents ran "
            f"(an agent outside the sandbox?): {', '.join(found[:10])}{more}; nothing was merged. Look at them, "
            f"then remove the worktree (git worktree remove --force {shlex.quote(str(wt))}) and re-run")


def start_integration(ctx: RunContext, base_sha: str, files: WorktreeFiles) -> None:
    """The integration worktree on our integration branch. The branch is kept when it grew from
    the recorded base; it is reset to the base only when it did not (and then the decisions that
    explained old resolutions go too). A merge left half-done, or uncommitted edits, stop
    us: they may be a person's work in progress. A new worktree is not checked out yet; in a sparse
    plan it is sparse, holding every cluster's folders."""
    if not (ctx.integration_worktree / ".git").exists():
        files.mark(None, new=True)
    wt = _worktree(ctx, base_sha)
    head = gitops.head(wt.path)
    written_ahead = files.written_ahead() and files.at() == head
    if written_ahead:  # by this run while its agents worked, and nothing since: it holds what we wrote
        files.record.unlink()
        _nothing_planted(wt.path)
    elif files.lagging() and files.at() is not None:  # a run stopped before the files caught up
        files.must_catch_up()
    if not files.lagging() and not written_ahead and (
            gitchanges.merge_in_progress(wt.path) or gitchanges.tracked_changes(wt.path)):
        q = shlex.quote(str(wt.path))
        raise WorkClustersError(
            f"the integration worktree {wt.path} has a merge in progress or uncommitted changes; finish it "
            f"(git -C {q} add -A && git -C {q} commit --no-edit) or abort it (git -C {q} merge --abort), then re-run")
    if not gitops.is_ancestor(ctx.repo, base_sha, head):
        gitchanges.reset_to(wt.path, base_sha)
        files.record.unlink(missing_ok=True)  # the reset checked everything out
        head = base_sha
    elif files.lagging() and names_attributes(githistory.tree_files(ctx.repo, head)):
        files.must_catch_up()  # merge-tree reads the attributes from the files: they must be there
    else:  # no attributes file: what merge-tree reads is the same while the files are written
        files.fill(head)
    if head == base_sha:  # nothing merged: no earlier resolution is left to explain
        shutil.rmtree(decisions_dir(ctx), ignore_errors=True)
    record_tip(ctx)
