"""Landing: fast-forward the base branch to the integrated result, and only that; or, with
``land: pull_request``, push the integration branch and open its pull request.

The user's branch moves only the way ``git merge --ff-only`` would move it: if it is checked
out, git itself refuses when an uncommitted or untracked file would be overwritten.
"""

from __future__ import annotations

from pydantic import BaseModel

from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.integration import pull_request as pr
from prefect_work_clusters.tasks.integration.models import IntegrationResult
from prefect_work_clusters.tasks.plan.models import PullRequestOptions


class LandResult(BaseModel):
    landed: bool
    branch: str | None = None
    message: str
    url: str | None = None  # the pull request's, when landing opened or updated one


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


def land(ctx: RunContext, result: IntegrationResult, report: str = "", artifact_url: str | None = None) -> LandResult:
    """Land the integration head when everything is green: every cluster merged, verification
    passed, every change accounted for. Otherwise refuse, saying why. ``report`` (markdown) is a
    pull request's body."""
    reasons = refusals(result)
    if reasons or result.final_sha is None:
        return LandResult(landed=False, message="not landed: " + "; ".join(reasons or ["no integrated commit"]))
    if ctx.plan.integration.land == "pull_request" and ctx.plan.integration.pull_request:
        return _pull_request(ctx, ctx.plan.integration.pull_request, result.final_sha, report, artifact_url)
    return _fast_forward(ctx, result.final_sha)


def _pull_request(ctx: RunContext, options: PullRequestOptions, sha: str, report: str,
                  artifact_url: str | None) -> LandResult:
    base = (options.base or ctx.plan.base or gitops.current_branch(ctx.repo) or "main").removeprefix("refs/heads/")
    try:
        token = pr.github_token(options.credentials)
        pr.push(ctx, options, sha, token)
        opened = pr.open_or_update(options, ctx.integration_branch, base, ctx.plan.goal or f"work-clusters: "
                                   f"{ctx.plan.name}", pr.trimmed_body(report, artifact_url), token)
    except pr.PullRequestError as exc:
        return LandResult(landed=False, branch=base, message=f"pull request not opened: {exc}")
    verb = "opened" if opened.created else "updated"
    return LandResult(landed=True, branch=base, url=opened.url,
                      message=f"pull request #{opened.number} {verb}: {opened.url} "
                              f"({ctx.integration_branch} -> {base}, {sha[:12]})")


def _fast_forward(ctx: RunContext, result_sha: str) -> LandResult:
    branch = ctx.plan.base or gitops.current_branch(ctx.repo)
    if branch is None or not gitops.branch_exists(ctx.repo, branch.removeprefix("refs/heads/")):
        return LandResult(landed=False, message=f"not landed: base {branch or 'HEAD'} is not a local branch")
    branch = branch.removeprefix("refs/heads/")
    tip = gitops.resolve_ref(ctx.repo, f"refs/heads/{branch}")
    if tip is None or not gitops.is_ancestor(ctx.repo, tip, result_sha):
        return LandResult(landed=False, branch=branch,
                          message=f"not landed: {branch} moved since the run and is not an ancestor of the "
                                  "integrated result; run again to integrate onto it")
    checked_out = [wt.path for wt in gitworktrees.worktrees(ctx.repo) if wt.branch == branch]
    if checked_out:
        res = gitops.run(checked_out[0], "merge", "--ff-only", "--quiet", result_sha, check=False)
        if res.status != 0:
            reason = (res.stderr or res.stdout).strip().splitlines()[:3]
            return LandResult(landed=False, branch=branch,
                              message=f"not landed: git refused to fast-forward {branch} in {checked_out[0]}: "
                                      + " ".join(reason))
    else:
        gitops.run(ctx.repo, "update-ref", "-m", f"work-clusters: land {ctx.plan.name}",
                   f"refs/heads/{branch}", result_sha, tip)
    return LandResult(landed=True, branch=branch,
                      message=f"landed: {branch} fast-forwarded {tip[:12]} -> {result_sha[:12]}")
