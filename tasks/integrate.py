"""Integration: merge every mergeable cluster branch with ``git merge --no-ff``, then verify.

The integration branch is rebuilt from the recorded base on every integration, so merges land
on the base the clusters started from, never silently on a base that moved meanwhile. A
conflict stops the integration with the worktree left mid-merge and exact instructions.
"""

from __future__ import annotations

import shlex
import time
from typing import Literal

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from tasks import gitops
from tasks.context import CommandResult, RunContext
from tasks.contract_check import ClusterCheck
from tasks.errors import WorkClustersError
from tasks.run_agents import base_env, run_commands

MergeStatus = Literal["merged", "conflict", "skipped", "not-reached"]


class MergeStep(BaseModel):
    cluster: str
    branch: str
    status: MergeStatus
    reason: str = ""
    commit: str | None = None
    conflicts: list[str] = Field(default_factory=list)
    diffstat: str = ""


class IntegrationResult(BaseModel):
    branch: str
    worktree: str
    base_sha: str
    steps: list[MergeStep]
    verify: list[CommandResult] = Field(default_factory=list)
    final_sha: str | None = None
    instructions: str = ""
    merge_seconds: float = 0.0
    verify_seconds: float = 0.0

    @property
    def all_merged(self) -> bool:
        return all(s.status == "merged" for s in self.steps)

    @property
    def verified(self) -> bool:
        return all(v.ok for v in self.verify)

    @property
    def ok(self) -> bool:
        return self.all_merged and self.verified


def conflict_instructions(ctx: RunContext, step: MergeStep) -> str:
    wt = shlex.quote(str(ctx.integration_worktree))
    files = " ".join(shlex.quote(f) for f in step.conflicts)
    listed = "\n".join(f"  {f}" for f in step.conflicts)
    return (
        f"Merging {step.branch} into {ctx.integration_branch} conflicted in:\n{listed}\n\n"
        f"The integration worktree is left mid-merge for a person. To finish:\n"
        f"  cd {wt}\n"
        f"  # edit those files and remove every conflict marker, then:\n"
        f"  git add -- {files}\n  git commit --no-edit\n"
        f"  work-clusters integrate {shlex.quote(str(ctx.plan_file))} --repo {shlex.quote(str(ctx.repo))}\n"
        f"    (merges the remaining branches on top of your resolution, then verifies)\n"
        f"To give up on this merge instead:\n  git -C {wt} merge --abort\n"
    )


def start_integration(ctx: RunContext, base_sha: str) -> None:
    """The integration worktree on our integration branch. The branch is kept when it grew from
    the recorded base (a person's committed conflict resolution survives); it is reset to the
    base only when it did not. A merge left half-done, or uncommitted edits, stop us: they may
    be a person's work in progress."""
    wt = gitops.ensure_worktree(ctx.repo, ctx.integration_worktree, ctx.integration_branch, base_sha)
    if gitops.merge_in_progress(wt.path) or gitops.has_changes(wt.path):
        q = shlex.quote(str(wt.path))
        raise WorkClustersError(
            f"the integration worktree {wt.path} has a merge in progress or uncommitted changes; finish it "
            f"(git -C {q} add -A && git -C {q} commit --no-edit) or abort it (git -C {q} merge --abort), then re-run")
    if not gitops.is_ancestor(ctx.repo, base_sha, gitops.head(wt.path)):
        gitops.reset_hard(wt.path, base_sha)


def integrate_branches(ctx: RunContext, base_sha: str, checks: list[ClusterCheck]) -> IntegrationResult:
    """Merge in ``depends_on`` order, then plan order; stop at the first unresolved conflict."""
    start_integration(ctx, base_sha)
    wt = ctx.integration_worktree
    by_name = {c.cluster: c for c in checks}
    steps: list[MergeStep] = []
    instructions = ""
    t0 = time.monotonic()
    for cluster in ctx.plan.merge_order():
        check, branch = by_name[cluster.name], ctx.branch(cluster.name)
        if instructions:
            steps.append(MergeStep(cluster=cluster.name, branch=branch, status="not-reached",
                                   reason="an earlier merge stopped on a conflict"))
            continue
        if not check.mergeable:
            steps.append(MergeStep(cluster=cluster.name, branch=branch, status="skipped",
                                   reason=f"contract check: {check.status}"))
            continue
        stat = gitops.diffstat(ctx.repo, base_sha, branch)
        if gitops.is_ancestor(ctx.repo, branch, gitops.head(wt)):
            steps.append(MergeStep(cluster=cluster.name, branch=branch, status="merged", reason="merged earlier",
                                   commit=gitops.head(wt), diffstat=stat))
            continue
        outcome = gitops.merge_no_ff(wt, branch, f"work-clusters: merge {cluster.name} into {ctx.plan.name}")
        if outcome.ok:
            steps.append(MergeStep(cluster=cluster.name, branch=branch, status="merged",
                                   commit=gitops.head(wt), diffstat=stat))
        else:
            step = MergeStep(cluster=cluster.name, branch=branch, status="conflict", conflicts=outcome.conflicts,
                             diffstat=stat, reason="merge conflict")
            steps.append(step)
            instructions = conflict_instructions(ctx, step)
    merge_seconds = time.monotonic() - t0
    result = IntegrationResult(branch=ctx.integration_branch, worktree=str(wt), base_sha=base_sha, steps=steps,
                               instructions=instructions, merge_seconds=merge_seconds)
    if not instructions:
        t1 = time.monotonic()
        result.final_sha = gitops.head(wt)
        result.verify = run_commands(ctx.plan.integration.verify, wt, base_env(ctx, wt),
                                     ctx.plan.limits.timeout_seconds, ctx.log_file("integration-verify"))
        result.verify_seconds = time.monotonic() - t1
    return result


@task(name="integrate", cache_policy=NO_CACHE)
def integrate(ctx: RunContext, base_sha: str, checks: list[ClusterCheck]) -> IntegrationResult:
    """Merge the cluster branches into the integration branch and run the integration verify."""
    result = integrate_branches(ctx, base_sha, checks)
    logger = get_run_logger()
    for step in result.steps:
        logger.info("merge %s: %s %s", step.cluster, step.status, step.reason)
    if result.instructions:
        logger.error(result.instructions)
    for v in result.verify:
        logger.info("verify `%s`: %s", v.command, "passed" if v.ok else f"failed (exit {v.exit_code})")
    return result
