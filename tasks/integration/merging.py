"""The merges of an integration: clean ones as objects, conflicts through the ladder in the worktree.

A merge git settles by itself is written with ``git merge-tree --write-tree`` and ``commit-tree``
(the parents and message ``git merge --no-ff`` would give it) and the integration branch is
moved to it; the worktree's index and files are left behind and catch up once
(``tasks.integration.worktree``), touching only what changed, before anything needs them: the
ladder (a conflict), verification, the end. At 100,000 files that is one checkout instead of one
per merge (~0.27 s each). When they cannot catch up (an untracked file in the way, as ``git
merge`` would have refused), the branch goes back to the last commit they hold and the merges
from there run the slow way, so the cluster in the way is reported exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prefect_work_clusters.tasks.checks.rows import ClusterCheck
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import merge as gitmerge
from prefect_work_clusters.tasks.git import refs as gitrefs
from prefect_work_clusters.tasks.integration.ladder import Ladder, merge_message
from prefect_work_clusters.tasks.integration.models import MergeStep
from prefect_work_clusters.tasks.integration.preflight import Preflight
from prefect_work_clusters.tasks.integration.tip import record_tip
from prefect_work_clusters.tasks.integration.worktree import WorktreeFiles, names_attributes


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
            attributes_moved = names_attributes(touched.get(cluster.name, ()))
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
