"""Integration: preflight, merge every mergeable cluster branch through the conflict ladder,
then verify and account for every change (with the integration agent fixing what fails).

Each cluster is merged as the exact commit the contract check passed, never by branch name: a
branch that moved since (an agent's leftover process, a person) is reported, its move not merged.
The integration branch is created by us from the recorded base and kept when it grew from it (a
person's committed resolution survives, and commits already merged are skipped), so merges land
on the base the clusters started from; its tip is recorded after every commit we make on it, and
a tip we did not record is refused (``tip.foreign_tip``). A conflict no resolver settles stops
the integration with the worktree left mid-merge and exact instructions.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State

from prefect_work_clusters.tasks.agents.call import base_env, integration_backend, max_attempts, sandbox_for
from prefect_work_clusters.tasks.checks.rows import ClusterCheck
from prefect_work_clusters.tasks.context import CommandResult, RunContext
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.failures import failed
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import merge as gitmerge
from prefect_work_clusters.tasks.integration.accounting import Accounting, account
from prefect_work_clusters.tasks.integration.agent import (
    decisions_dir,
    discard_decisions,
    run_integration_agent,
)
from prefect_work_clusters.tasks.integration.decisions import AgentDecision, load_decisions
from prefect_work_clusters.tasks.integration.ladder import Ladder, merge_message
from prefect_work_clusters.tasks.integration.merging import merge_clusters
from prefect_work_clusters.tasks.integration.models import Decision, IntegrationResult, MergeStep, VerifyRound
from prefect_work_clusters.tasks.integration.preflight import predict
from prefect_work_clusters.tasks.integration.tip import foreign_tip, record_tip
from prefect_work_clusters.tasks.integration.worktree import WorktreeFiles, start_integration
from prefect_work_clusters.tasks.proc.commands import run_commands

__all__ = ["IntegrationResult", "MergeStep", "integrate", "integrate_branches"]

OnLine = Callable[[str], None] | None


def conflict_instructions(ctx: RunContext, step: MergeStep) -> str:
    wt = shlex.quote(str(ctx.integration_worktree))
    again = f"  work-clusters integrate {shlex.quote(str(ctx.plan_file))} --repo {shlex.quote(str(ctx.repo))}\n"
    if not step.files:
        return (f"Merging {step.branch} into {ctx.integration_branch} did not start: {step.reason}.\n"
                f"The integration worktree {wt} is unchanged. Fix what git names (an untracked file in the\n"
                f"way: move it out of the worktree), then:\n{again}")
    left = [f for f in step.files if f.resolved_by is None]
    files = " ".join(shlex.quote(f.path) for f in left)
    listed = "\n".join(
        f"  {f.path}  (ours: {', '.join(f.ours) or 'the base'}; theirs: {f.theirs}; tried: "
        + ", ".join(f"{a.tier} {a.outcome}" for a in f.attempts if a.tier != "person") + ")" for f in left)
    done = [f"{f.path} ({f.resolved_by})" for f in step.files if f.resolved_by]
    person = decisions_dir(ctx) / "person.md"
    return (
        f"Merging {step.branch} into {ctx.integration_branch} stopped on conflicts no resolver settled:\n{listed}\n"
        + (f"Resolved automatically and staged: {', '.join(done)}\n" if done else "")
        + f"\nThe integration worktree is left mid-merge for a person. To finish:\n"
        f"  cd {wt}\n"
        f"  # edit each file above and remove every conflict marker, then:\n"
        f"  git add -A -- {files}\n  git commit --no-edit\n{again}"
        f"    (merges the remaining branches on top of your resolution, then verifies)\n"
        f"If you drop a cluster's line on purpose, say why in {shlex.quote(str(person))} (a `## <file>` heading,\n"
        f"the reason under it); otherwise the change accounting fails the run.\n"
        f"To give up on this merge instead:\n  git -C {wt} merge --abort\n"
    )


def _failure_text(result: CommandResult) -> str:
    verdict = "timed out" if result.timed_out else f"failed (exit {result.exit_code})"
    tail = result.output_tail[-3000:].strip()
    return f"`{result.command}` {verdict}.\n\nOutput (last part):\n\n```\n{tail}\n```"


def _accounting(ctx: RunContext, result: IntegrationResult) -> Accounting:
    """The change accounting of the worktree's head, with every decision written so far."""
    t0 = time.monotonic()
    merged = [(s.cluster, s.checked or s.branch) for s in result.steps if s.status == "merged"]
    found = account(ctx.repo, result.base_sha, gitops.head(ctx.integration_worktree), merged,
                    load_decisions(decisions_dir(ctx)))
    result.accounting_seconds = round(result.accounting_seconds + time.monotonic() - t0, 3)
    return found


def verify_and_fix(ctx: RunContext, ladder: Ladder, result: IntegrationResult, on_line: OnLine) -> None:
    """Run the integration verify and the change accounting; while either fails, give the agent
    the failure (the verify output, or the unexplained lines), ``1 + retries`` times. A fix that
    leaves a marker, rewinds the branch or exits non-zero is dropped whole."""
    wt, t0 = ctx.integration_worktree, time.monotonic()
    env, log = base_env(ctx, wt), ctx.log_file("integration-verify")

    def verify(after: str) -> list[CommandResult]:
        results = run_commands(ctx.plan.integration.verify, wt, env, ctx.plan.limits.timeout_seconds, log, on_line,
                               sandbox_for(ctx, wt))
        result.verify_rounds.append(VerifyRound(round=len(result.verify_rounds) + 1, after=after,
                                                head=gitops.head(wt), results=results))
        return results

    results, accounted = verify("the merges"), _accounting(ctx, result)
    backend, note = ladder.backend, ""
    # A partial tree (a cluster failed or was kept out) is verified for inspection, never "fixed".
    attempts = max_attempts(ctx, backend) if backend and not result.partial else 0
    for attempt in range(1, attempts + 1):
        if (all(r.ok for r in results) and accounted.ok) or backend is None:
            break
        failed = [r for r in results if not r.ok]
        pre, keep = gitops.head(wt), gitchanges.untracked(wt)
        call = run_integration_agent(ctx, backend, purpose="verification", label="verify", attempt=attempt,
                                     merged=[s.cluster for s in result.steps if s.status == "merged"],
                                     feedback=note + (_failure_text(failed[-1]) if failed else accounted.feedback()),
                                     on_line=on_line)
        ladder.calls.append(call)
        markers = gitmerge.marker_lines(wt, pre)
        if not call.failure and markers:
            call.failure = f"left conflict markers in {', '.join(sorted(markers))}"
        if not call.failure and not gitops.is_ancestor(ctx.repo, pre, gitops.head(wt)):
            call.failure = "rewound the integration branch"
        if call.failure:
            gitchanges.reset_to(wt, pre, keep)
            discard_decisions(call)
            note = f"Your attempt {attempt} was dropped: {call.failure}.\n\n"
            continue
        note = ""
        gitchanges.stage_all(wt, backend.scratch_globs(), keep)  # not what verify left behind
        what = "verification" if failed else "the change accounting"
        gitchanges.commit_staged(wt, f"work-clusters: integration fix for {what}, attempt {attempt}")
        record_tip(ctx)
        results = verify(f"integration agent fix, attempt {attempt}") if ctx.plan.integration.verify else results
        accounted = _accounting(ctx, result)
    result.verify, result.accounting = results, accounted
    result.final_sha = gitops.head(wt)
    result.verify_seconds = round(time.monotonic() - t0 - result.accounting_seconds, 3)


def _evidence(result: IntegrationResult) -> str:
    if result.instructions:
        return "not run: the integration stopped on a conflict"
    if not result.verify:
        return f"no integration verify commands; merged tree at {(result.final_sha or '-')[:12]}"
    at = (result.final_sha or "-")[:12]
    failed = [v for v in result.verify if not v.ok]
    if failed:
        return f"FAILED at {at}: `{failed[0].command}` exit {failed[0].exit_code}"
    return f"passed at {at}: {len(result.verify)} verify command(s)"


def _quoted(d: AgentDecision) -> str:
    """The text taken as the reason, and where it was found: free-form text is read loosely."""
    return f"\"{d.reason}\" (from a {d.form} in {d.source or 'the decisions file'})"


def build_decisions(result: IntegrationResult) -> list[Decision]:
    """One decision per conflict hunk (per file where git showed no hunks), plus what the agent
    said about its verification fixes, each with the verification evidence."""
    evidence, out = _evidence(result), []
    for step in result.steps:
        said = [d for c in result.agent_calls if c.label == f"merge-{step.cluster}" for d in c.decisions]
        for f in step.files:
            tier = f.resolved_by or "person"
            done = next((a.detail for a in f.attempts if a.tier == tier and a.outcome == "resolved"), "")
            hunks: list[int | None] = [h.index for h in f.hunks] or [None]
            for hunk in hunks:
                if tier == "agent":
                    why = [_quoted(d) for d in said if d.file == f.path and d.hunk in (None, hunk)]
                    reason = "; ".join(why) or "(the agent wrote no reason for this file)"
                elif tier == "person":
                    reason = "left for a person; tried " + ", ".join(
                        f"{a.tier} ({a.outcome})" for a in f.attempts if a.tier != "person")
                else:
                    reason = done
                out.append(Decision(file=f.path, hunk=hunk, ours=f.ours, theirs=f.theirs, tier=tier, reason=reason,
                                    verification=evidence))
    for call in result.agent_calls:
        if call.purpose == "verification" and call.ok:
            out += [Decision(file=d.file, hunk=d.hunk, ours=[], theirs="", tier="agent",
                             reason=f"verification fix (attempt {call.attempt}): {_quoted(d)}",
                             verification=evidence) for d in call.decisions]
    return out


def integrate_branches(ctx: RunContext, base_sha: str, checks: list[ClusterCheck],
                       on_line: OnLine = None, on_step: OnLine = None) -> IntegrationResult:
    """Preflight, then merge in ``depends_on`` order, then plan order; stop at the first conflict
    no resolver settles; otherwise verify, account for every change, and fix."""
    foreign = foreign_tip(ctx)
    if foreign:  # the flow says so before it gets here; this guards every other caller
        raise WorkClustersError(foreign)
    touched = {c.cluster: c.files_changed for c in checks}
    order = ctx.plan.merge_order()
    checked = {c.cluster: c.head_sha for c in checks if c.mergeable and c.head_sha}
    mergeable = [(c.name, ctx.branch(c.name)) for c in order if c.name in checked]
    files = WorktreeFiles(ctx)
    start_integration(ctx, base_sha, files)
    wt = ctx.integration_worktree
    # Predicted in the integration worktree (its attributes) with the merges' own messages: each
    # clean predicted merge is the very commit the merge below takes instead of merging again.
    with ThreadPoolExecutor(max_workers=max(1, min(4, len(checked)))) as pool:
        # Every branch's diffstat on the side (a git process each) while the preflight's chain runs.
        stats = {name: pool.submit(githistory.diffstat, ctx.repo, base_sha, sha) for name, sha in checked.items()}
        preflight = predict(wt, gitops.head(wt), mergeable, touched, commits=checked,
                            message=lambda cluster, branch, commit: merge_message(ctx, cluster, branch, commit))
    if on_step:  # said as it happens, before any verify output
        on_step(f"preflight: {preflight.conflict_count} conflict(s) predicted in {preflight.seconds:.2f} s")
    ladder = Ladder(ctx, integration_backend(ctx), on_line)
    t0 = time.monotonic()
    steps, stopped = merge_clusters(ctx, base_sha, checks, ladder, files, preflight,
                                    {name: found.result() for name, found in stats.items()})
    if on_step:  # before any verify output
        for step in steps:
            on_step(f"merge {step.cluster}: {step.status} {step.reason}".rstrip())
    result = IntegrationResult(branch=ctx.integration_branch, worktree=str(wt), base_sha=base_sha, steps=steps,
                               merge_seconds=round(time.monotonic() - t0, 3), preflight=preflight,
                               checkout_seconds=round(files.seconds, 3))
    if stopped:
        decisions_dir(ctx).mkdir(parents=True, exist_ok=True)  # where the instructions ask a person to write
        result.instructions = conflict_instructions(ctx, stopped)
    else:
        verify_and_fix(ctx, ladder, result, on_line)
    result.agent_calls = ladder.calls
    result.decisions = build_decisions(result)
    return result


@task(name="integrate", cache_policy=NO_CACHE)
def integrate(ctx: RunContext, base_sha: str, checks: list[ClusterCheck]) -> IntegrationResult | State[Any]:
    """Merge the cluster branches into the integration branch, verify, and account for every change.

    Ends Failed (its result still in the state) when the integration is not done, so the task's
    state in the UI says what the report says."""
    logger = get_run_logger()
    result = integrate_branches(ctx, base_sha, checks, on_line=lambda line: logger.info("[integration] %s", line),
                                on_step=logger.info)
    for line in result.moved:
        logger.warning(line)
    if result.instructions:
        logger.error(result.instructions)
    for v in result.verify:
        logger.info("verify `%s`: %s", v.command, "passed" if v.ok else f"failed (exit {v.exit_code})")
    if result.accounting and not result.accounting.ok:
        logger.error("change accounting: %s", result.accounting.summary())
    why = result.failure
    return failed(why, data=result) if why else result
