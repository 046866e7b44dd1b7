"""Landing: fast-forward the base branch to the integrated result, and only that.

The user's branch moves only the way ``git merge --ff-only`` would move it: if it is checked
out, git itself refuses when an uncommitted or untracked file would be overwritten.
"""

from __future__ import annotations

from pydantic import BaseModel

from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.integration.models import IntegrationResult


class LandResult(BaseModel):
    landed: bool
    branch: str | None = None
    message: str


def refusals(result: IntegrationResult) -> list[str]:
    """Every reason the integrated result may not land; empty when it is all green."""
    reasons: list[str] = []
    unmerged = [f"{s.cluster} ({s.status})" for s in result.steps if s.status != "merged"]
    if unmerged:
        reasons.append(f"not every cluster merged: {', '.join(unmerged)}")
    failed = [v.command for v in result.verify if not v.ok]
    if failed:
        reasons.append(f"integration verification failed: `{failed[0]}`")
    if result.accounting and not result.accounting.ok:
        reasons.append(f"changes not accounted for: {result.accounting.summary()}")
    if result.final_sha is None and not unmerged:
        reasons.append("no integrated commit")
    return reasons


def land(ctx: RunContext, result: IntegrationResult) -> LandResult:
    """Fast-forward the plan's base branch to the integration head when everything is green:
    every cluster merged, verification passed, every change accounted for. Otherwise refuse, saying why."""
    reasons = refusals(result)
    if reasons or result.final_sha is None:
        return LandResult(landed=False, message="not landed: " + "; ".join(reasons or ["no integrated commit"]))
    branch = ctx.plan.base or gitops.current_branch(ctx.repo)
    if branch is None or not gitops.branch_exists(ctx.repo, branch.removeprefix("refs/heads/")):
        return LandResult(landed=False, message=f"not landed: base {branch or 'HEAD'} is not a local branch")
    branch = branch.removeprefix("refs/heads/")
    tip = gitops.resolve_ref(ctx.repo, f"refs/heads/{branch}")
    if tip is None or not gitops.is_ancestor(ctx.repo, tip, result.final_sha):
        return LandResult(landed=False, branch=branch,
                          message=f"not landed: {branch} moved since the run and is not an ancestor of the "
                                  "integrated result; run again to integrate onto it")
    checked_out = [wt.path for wt in gitworktrees.worktrees(ctx.repo) if wt.branch == branch]
    if checked_out:
        res = gitops.run(checked_out[0], "merge", "--ff-only", "--quiet", result.final_sha, check=False)
        if res.status != 0:
            reason = (res.stderr or res.stdout).strip().splitlines()[:3]
            return LandResult(landed=False, branch=branch,
                              message=f"not landed: git refused to fast-forward {branch} in {checked_out[0]}: "
                                      + " ".join(reason))
    else:
        gitops.run(ctx.repo, "update-ref", "-m", f"work-clusters: land {ctx.plan.name}",
                   f"refs/heads/{branch}", result.final_sha, tip)
    return LandResult(landed=True, branch=branch,
                      message=f"landed: {branch} fast-forwarded {tip[:12]} -> {result.final_sha[:12]}")
