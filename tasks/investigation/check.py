"""Investigation clusters (``kind: investigation``): read-only analysis in a worktree of their own.

An investigation agent reads code and runs tools; it must not change a tracked file. Its output
is a findings document at ``$WC_FINDINGS_FILE`` (``tasks.investigation.findings``), outside the worktree, so
nothing of it is committed. After each attempt (``settle_attempt``, called by ``tasks.agents.attempt``) a
tracked change, committed or not, is a violation: under ``contract.on_violation: retry`` the
attempt fails and is undone, so the next one starts clean; under ``fail`` or ``warn`` it is
committed on the cluster's branch as evidence and the contract check reports it. Investigation
branches are never merged: after the agents comes the synthesis (``tasks.investigation.synthesis``).

A plan is either all build clusters or all investigation clusters (``tasks.plan.rules``); an
investigation's proposed fixes become the next wave's build plan (``tasks.investigation.fixes``).
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from prefect_work_clusters.tasks.checks.rows import VERDICT, CheckRow, CheckStatus, ClusterCheck, publish
from prefect_work_clusters.tasks.context import ClusterRecord, RunContext
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.investigation.findings import findings_file, findings_problem

MAX_LISTED = 20


def start_attempt(ctx: RunContext, cluster: str) -> Path:
    """The attempt's ``WC_FINDINGS_FILE``, emptied: a file left by an earlier attempt must not
    count for this one."""
    path = findings_file(ctx, cluster)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    return path


def _listed(paths: list[str]) -> str:
    more = f" (+{len(paths) - MAX_LISTED} more)" if len(paths) > MAX_LISTED else ""
    return ", ".join(paths[:MAX_LISTED]) + more


def settle_attempt(ctx: RunContext, record: ClusterRecord, attempt: int, head_before: str) -> str | None:
    """After an investigation attempt: why it failed for changing tracked files, or None.

    Under policy ``retry`` the changes are undone (the branch back where the attempt started) and
    the attempt fails; otherwise they are committed on the branch, where the check reports them.
    """
    wt = record.worktree
    changed = githistory.changed_in_worktree(wt, head_before)
    if not changed:
        return None
    if ctx.plan.contract.on_violation == "retry":
        gitchanges.reset_to(wt, head_before)
        return (f"an investigation must not change tracked files, and this attempt changed {_listed(changed)} "
                "(undone); write only to $WC_FINDINGS_FILE, and keep tools from rewriting files "
                "(no --fix, no formatters, no snapshot updates)")
    gitops.run(wt, "add", "-u", "--", ".")
    if gitops.run(wt, "diff", "--cached", "--quiet", check=False).status != 0:
        gitops.run(wt, "commit", "--no-verify", "-q", "-m",
                   f"work-clusters: {record.cluster} attempt {attempt} changed tracked files (an investigation "
                   "violation, kept as evidence; never merged)", env=gitops.identity_env(wt))
    return None


def attempt_problem(ctx: RunContext, cluster: str) -> tuple[str, str] | None:
    """``(summary, feedback)`` when a finished attempt's findings cannot be used."""
    problem = findings_problem(ctx, cluster)
    if problem is None:
        return None
    lines = problem.splitlines()
    more = f" (and {len(lines) - 2} more)" if len(lines) > 2 else ""
    return " ".join(lines[:2]).replace(": - ", ": ")[:400] + more, problem


def check_investigation(ctx: RunContext, record: ClusterRecord) -> ClusterCheck:
    """The contract check of an investigation branch: it must change no tracked file. Whatever
    the result, the branch is not merged."""
    name = record.cluster
    tip = gitops.resolve_ref(ctx.repo, f"refs/heads/{record.branch}")
    changed = githistory.changed_files(ctx.repo, record.base_sha, tip) if tip else []
    touched = [p for p in changed if p in ctx.plan.contracts]
    status: CheckStatus
    if record.status != "succeeded":
        last = record.attempts[-1].failure if record.attempts else None
        status, note = "agent-failed", record.error or last or "the agent did not finish"
    elif changed:
        status = "violation"
        note = f"an investigation changed {len(changed)} tracked file(s); policy {ctx.plan.contract.on_violation}"
    else:
        status, note = "ok", ""
    scope = (CheckRow(cluster=name, check="scope", status="violation", evidence=changed,
                      note="an investigation cluster must change no tracked file") if changed else
             CheckRow(cluster=name, check="scope", status="ok", note="no tracked file changed"))
    verdict = CheckRow(cluster=name, check="verdict", status=VERDICT[status],
                       evidence=["findings only: an investigation branch is never merged"], note=note)
    verify = ("none" if not record.verify else
              "passed" if all(v.ok for v in record.verify) else f"failed: {record.verify[-1].command}")
    return ClusterCheck(cluster=name, status=status, mergeable=False, files_changed=changed, outside_scope=changed,
                        contracts_touched=touched, verify=verify, note=note,
                        rows=[scope, verdict] if tip else [verdict])


def blocking(ctx: RunContext, checks: list[ClusterCheck]) -> list[str]:
    """The clusters whose tracked changes fail the run (all of them, unless the policy is warn)."""
    if ctx.plan.contract.on_violation == "warn":
        return []
    return [c.cluster for c in checks if c.status == "violation"]


@task(name="check-investigations", cache_policy=NO_CACHE)
def check_investigations(ctx: RunContext, records: list[ClusterRecord]) -> list[ClusterCheck]:
    """Check every investigation branch and publish the ``contract-check-<plan>`` artifact."""
    checks = [check_investigation(ctx, r) for r in records]
    publish(ctx, checks)
    return checks


def restart(ctx: RunContext) -> list[str]:
    """For ``rerun``: drop each investigation cluster's worktree and branch, so it investigates the
    current base rather than the one an earlier run started from. Returns notes for the report."""
    notes = []
    listed = {wt.path.resolve() for wt in gitworktrees.worktrees(ctx.repo)}
    for cluster in ctx.plan.clusters:
        wt, branch = ctx.worktree(cluster.name), ctx.branch(cluster.name)
        if wt.resolve() in listed:
            gitworktrees.remove_worktree(ctx.repo, wt, force=True)
        if gitops.branch_exists(ctx.repo, branch):
            githistory.delete_branch(ctx.repo, branch)
            notes.append(f"rerun: {branch} started again from the current base")
    return notes
