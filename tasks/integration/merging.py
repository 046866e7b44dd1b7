"""The merges of an integration: clean ones as objects, conflicts through the ladder in the worktree.

A merge git settles by itself is written with ``git merge-tree --write-tree`` and ``commit-tree``
(the parents and message ``git merge --no-ff`` would give it) and the integration branch is
moved to it; the worktree's index and files are left behind and catch up once, touching only
what changed, before anything needs them: the ladder (a conflict), verification, the end. At
100,000 files that is one checkout instead of one per merge (~0.27 s each).

Where the files are while they lag the branch is written to ``.runs/integration-files.json``,
so a run stopped in between catches them up before it looks at the worktree again. When they
cannot catch up (an untracked file in the way, as ``git merge`` would have refused), the branch
goes back to the last commit they hold and the merges from there run the slow way, so the
cluster in the way is reported exactly as before.
"""

from __future__ import annotations

import json
import shlex
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from prefect_work_clusters.tasks.checks.rows import ClusterCheck
from prefect_work_clusters.tasks.context import RunContext, write_json_atomic
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import merge as gitmerge
from prefect_work_clusters.tasks.git import refs as gitrefs
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.integration.agent import decisions_dir
from prefect_work_clusters.tasks.integration.ladder import Ladder, merge_message
from prefect_work_clusters.tasks.integration.models import MergeStep
from prefect_work_clusters.tasks.integration.preflight import Preflight
from prefect_work_clusters.tasks.integration.tip import record_tip
from prefect_work_clusters.tasks.worktrees import sparse_dirs

ATTRIBUTES = ".gitattributes"


def _attributes(paths: Iterable[str]) -> bool:
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

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wc-fill")
        self._filling = pool.submit(write)
        pool.shutdown(wait=False)

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
    elif files.lagging() and _attributes(githistory.tree_files(ctx.repo, head)):
        files.must_catch_up()  # merge-tree reads the attributes from the files: they must be there
    else:  # no attributes file: what merge-tree reads is the same while the files are written
        files.fill(head)
    if head == base_sha:  # nothing merged: no earlier resolution is left to explain
        shutil.rmtree(decisions_dir(ctx), ignore_errors=True)
    record_tip(ctx)


@dataclass
class _Point:
    """Where to come back to when the files cannot catch up: the loop's state at the last commit
    they hold."""

    index: int
    steps: int
    merged: int
    head: str


class _Branch:
    """The integration branch while merges are made as objects: it is moved, and its tip recorded,
    once per run of them (100 moves and records took 1.6 s), before anything reads it."""

    def __init__(self, ctx: RunContext, at: str) -> None:
        self.ctx, self.at = ctx, at
        self.pending: list[str] = []  # the merge messages of the commits it has not moved over yet

    def advance(self, message: str) -> None:
        self.pending.append(message)

    def move(self, head: str) -> None:
        """Move the branch to ``head`` when it lags, with one reflog line for the merges it passes."""
        if head == self.at:
            return
        reason = self.pending[0] if len(self.pending) == 1 else (
            f"work-clusters: merge {len(self.pending)} clusters into {self.ctx.plan.name} "
            "(clean merges made as objects)")
        githistory.move_branch(self.ctx.repo, self.ctx.integration_branch, head, self.at, reason)
        record_tip(self.ctx, tip=head)
        self.at, self.pending = head, []


def merge_clusters(ctx: RunContext, base_sha: str, checks: Sequence[ClusterCheck], ladder: Ladder,
                   files: WorktreeFiles, preflight: Preflight,
                   stats: Mapping[str, str]) -> tuple[list[MergeStep], MergeStep | None]:
    """Every cluster's step in merge order, and the step that stopped on a conflict, if any
    (``stats``: each cluster's diffstat). The worktree holds the branch's tip when this returns
    (or the merge left for a person)."""
    by_name = {c.cluster: c for c in checks}
    touched: Mapping[str, Sequence[str]] = {c.cluster: c.files_changed for c in checks}
    checked = {c.cluster: c.head_sha for c in checks if c.mergeable and c.head_sha}
    order = ctx.plan.merge_order()
    wt, branch_name = ctx.integration_worktree, ctx.integration_branch
    steps: list[MergeStep] = []
    merged: list[str] = []
    stopped: MergeStep | None = None
    head = gitops.head(wt)
    branch_at = _Branch(ctx, head)
    earlier = gitmerge.contained_commits(ctx.repo, head, list(checked.values()))
    # ``fast``: clean merges as objects (off for good once the files could not catch up);
    # ``now_slow``: this cluster conflicted as objects, so the ladder takes it in the worktree.
    # ``attributes_seen``: a merged branch changed a .gitattributes, which the preflight did not read.
    fast, now_slow, attributes_moved, attributes_seen = True, False, False, False
    point = _Point(0, 0, 0, head)
    i = 0
    while True:
        if i == len(order) or now_slow or attributes_moved:
            branch_at.move(head)
            problem = files.catch_up()  # before the end, the ladder, or merge-tree reading new attributes
            attributes_moved = False
            if problem:  # back to what the files hold; from there, the slow way
                githistory.move_branch(ctx.repo, branch_name, point.head, head,
                                       "work-clusters: back to the merges the integration worktree holds")
                files.must_catch_up()
                record_tip(ctx)
                branch_at = _Branch(ctx, point.head)
                i, head, fast = point.index, point.head, False
                del steps[point.steps:], merged[point.merged:]
                continue
            if i == len(order):
                break
        cluster = order[i]
        check, branch = by_name[cluster.name], ctx.branch(cluster.name)
        i += 1
        if stopped:
            steps.append(MergeStep(cluster=cluster.name, branch=branch, status="not-reached",
                                   reason="an earlier merge stopped on a conflict"))
            continue
        commit = checked.get(cluster.name)
        if commit is None:
            steps.append(MergeStep(cluster=cluster.name, branch=branch, status="skipped",
                                   reason=f"contract check: {check.status}" if not check.mergeable
                                   else "its branch did not exist at the contract check"))
            continue
        stat = stats[cluster.name]
        now = gitrefs.read(ctx.repo).get(f"refs/heads/{branch}")
        moved = "" if now == commit else (now[:12] if now else "nowhere (deleted)")
        if commit in earlier:
            steps.append(MergeStep(cluster=cluster.name, branch=branch, status="merged", reason="merged earlier",
                                   commit=gitmerge.merged_by(ctx.repo, head, commit) or head, diffstat=stat,
                                   checked=commit, moved=moved))
            merged.append(cluster.name)
            continue
        message = merge_message(ctx, cluster.name, branch, commit)
        made = None
        if fast and not now_slow:  # the preflight's commit while it read the attributes the files hold
            made = (None if attributes_seen else preflight.merged_commit(cluster.name, head, commit)) \
                or gitmerge.merge_commit(wt, head, commit, message)
        if made:
            if not files.lagging():
                point = _Point(i - 1, len(steps), len(merged), head)
                files.mark(head)
            branch_at.advance(message)
            step = MergeStep(cluster=cluster.name, branch=branch, status="merged", commit=made)
            attributes_moved = _attributes(touched.get(cluster.name, ()))
            attributes_seen = attributes_seen or attributes_moved
        else:
            if files.lagging() and not now_slow:  # the ladder works in the worktree: it must hold ``head``
                i, now_slow = i - 1, True
                continue
            now_slow = False
            branch_at.move(head)  # the ladder merges in the worktree, on the branch
            predicted = preflight.for_cluster(cluster.name)
            kinds = {c.path: c.kinds for c in predicted.conflicts} if predicted else {}
            step = ladder.merge(cluster.name, branch, commit, head, list(merged), touched, kinds)
        step.diffstat, step.checked, step.moved = stat, commit, moved
        steps.append(step)
        if step.status == "merged" and step.commit:
            merged.append(cluster.name)
            head = step.commit
            if not made:  # the ladder committed on the branch
                record_tip(ctx)
                branch_at = _Branch(ctx, head)
        else:
            stopped = step
            record_tip(ctx, merging=commit)
    return steps, stopped
