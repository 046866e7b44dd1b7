"""One agent attempt per call: prompt, environment, the process, leftovers committed, verify.

``run_attempt`` is plain Python (tested without Prefect); ``tasks.agents.run_agent`` is the mapped
Prefect task around it, whose retries are the agent's further attempts (``WC_ATTEMPT`` is Prefect's
run count). Each attempt rewrites the cluster's record in ``.runs/clusters/`` so the next attempt's
prompt can say why the last one failed, and a killed run can be reported and resumed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NoReturn

from prefect_work_clusters.tasks import recovery
from prefect_work_clusters.tasks.agents import guard
from prefect_work_clusters.tasks.agents.call import (
    Call,
    agent_for,
    base_env,
    invoke,
    log_segment,
    max_attempts,
    sandbox_for,
)
from prefect_work_clusters.tasks.agents.prompts import PROMPTS, contracts_for_prompt
from prefect_work_clusters.tasks.checks import containment
from prefect_work_clusters.tasks.checks.contract import attempt_violation
from prefect_work_clusters.tasks.context import (
    Attempt,
    ClusterRecord,
    ClusterStatus,
    RunContext,
    load_record,
    save_record,
)
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.failures import last_lines
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import refs as gitrefs
from prefect_work_clusters.tasks.investigation import check as investigate
from prefect_work_clusters.tasks.plan.refs import provided_by
from prefect_work_clusters.tasks.proc import interrupt
from prefect_work_clusters.tasks.proc.commands import run_commands
from prefect_work_clusters.tasks.proc.sandbox import refused_writes

INTERRUPTED = "interrupted (SIGINT or SIGTERM): the agent was stopped; the next run of the plan resumes this cluster"


class AgentFailed(WorkClustersError):
    """An attempt failed; ``retryable`` says whether another attempt may fix it."""

    def __init__(self, record: ClusterRecord, retryable: bool) -> None:
        self.record, self.retryable = record, retryable
        last = record.attempts[-1] if record.attempts else None
        why = (last.failure if last and last.failure else record.error) or record.status
        printed = last_lines(last.output_tail) if last and last.failure else ""
        super().__init__(f"cluster {record.cluster}: {why}" + (f"; {printed}" if printed else ""))

    def __reduce__(self) -> tuple[Any, ...]:  # Prefect may pickle a failed state's data
        return (AgentFailed, (self.record, self.retryable))


def _feedback(record: ClusterRecord) -> str:
    if not record.attempts:
        return ""
    last = record.attempts[-1]
    tail = last.output_tail[-2000:].strip()
    return f"{last.failure}\n\nLast output:\n\n```\n{tail}\n```" if tail else str(last.failure)


def _empty(record: ClusterRecord, changed: list[str]) -> str | None:
    """Why a build cluster's branch counts as empty: no file differs from where it started
    (``changed``: the files its tip changed since its base).

    The whole branch, not this attempt: an attempt after a failed verification may rightly add
    nothing to what the last one committed. An agent that exits 0 without doing anything (aider
    does on an API error) would otherwise "succeed" with an empty merge.
    """
    if changed:
        return None
    denied = record.attempts[-1].denials if record.attempts else []
    return ("the agent exited 0 but changed no file: nothing of the cluster's tasks was done"
            + (f" (its tool refused: {'; '.join(denied[:3])})" if denied else ""))


def run_attempt(ctx: RunContext, cluster: str, attempt: int,
                on_line: Callable[[str], None] | None = None) -> ClusterRecord:
    """Run the cluster's agent once; return its updated record, or raise AgentFailed."""
    spec = ctx.plan.cluster(cluster)
    record = load_record(ctx, cluster)
    if record is None:
        raise WorkClustersError(f"cluster {cluster} has no worktree record; run the worktrees step first")
    if interrupt.requested():  # an interrupt came before this attempt started: start nothing
        _give_up(ctx, record, INTERRUPTED, "interrupted")
    if attempt == 1 and record.attempts and not record.resumed:
        record = record.model_copy(update={"attempts": []})  # a new run starts its count again
    agent = agent_for(ctx, spec.agent)
    timeout = agent.timeout_seconds or ctx.plan.limits.timeout_seconds
    wt, log = record.worktree, ctx.log_file(cluster)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = base_env(ctx, wt)

    # Setup, the agent, our commit of its leftovers and verify are one window of containment.
    with containment.window(ctx, cluster, wt) as win:
        retryable = _attempt(ctx, record, attempt, win, env, timeout, on_line)
        containment.remember_worktree(ctx, cluster, wt)
    if record.attempts:  # found when the window closed (after our last commit): recorded, restored already
        entry = record.attempts[-1]
        entry.tampering += [t for t in win.tampering if t not in entry.tampering]
    record.head_sha = gitrefs.head(ctx.repo, record.worktree)
    save_record(ctx, record)
    if record.status != "succeeded":
        raise AgentFailed(record, retryable)
    return record


def _give_up(ctx: RunContext, record: ClusterRecord, error: str, status: ClusterStatus = "failed") -> NoReturn:
    """End the cluster's attempts here: ``error`` recorded, no further attempt."""
    record.status, record.error = status, error
    save_record(ctx, record)
    raise AgentFailed(record, retryable=False)


def _planted(ctx: RunContext, entry: Attempt, found: list[str]) -> str | None:
    """Record what the attempt changed in the shared git dir (restored already); the failure,
    unless the plan's ``contract.on_violation`` is ``warn``."""
    entry.tampering += found
    if not found or ctx.plan.contract.on_violation == "warn":
        return None
    return ("the attempt changed the shared git dir (restored; agents must change nothing but their own "
            "branch and worktree): " + "; ".join(found))


def _attempt(ctx: RunContext, record: ClusterRecord, attempt: int, win: containment.Window, env: dict[str, str],
             timeout: float, on_line: Callable[[str], None] | None) -> bool:
    """The attempt inside its containment window; whether another attempt may follow."""
    cluster, wt, log = record.cluster, record.worktree, ctx.log_file(record.cluster)
    box = sandbox_for(ctx, wt)
    spec, agent, limits = ctx.plan.cluster(cluster), agent_for(ctx, ctx.plan.cluster(cluster).agent), ctx.plan.limits
    if not record.setup_done and ctx.plan.worktree.setup:
        setup = run_commands(ctx.plan.worktree.setup, wt, env, timeout, log, on_line, box)
        if not all(r.ok for r in setup):
            printed = last_lines(setup[-1].output_tail)
            _give_up(ctx, record, f"worktree setup failed: `{setup[-1].command}`" + (f"; {printed}" if printed else ""))
        record.setup_done = True

    feedback = _feedback(record) if attempt > 1 else ""
    # An investigation writes findings outside its worktree and changes no tracked file.
    findings = investigate.start_attempt(ctx, cluster) if spec.kind == "investigation" else None
    prompt = PROMPTS.get_template("cluster.md.j2").render(
        plan=ctx.plan, cluster=spec, branch=record.branch, contracts=contracts_for_prompt(ctx),
        feedback=feedback, attempt=attempt, findings_file=str(findings or ""),
        provides={str(impl): str(proto) for impl, proto in provided_by(ctx.plan, cluster)})
    call = Call(role="cluster", name=cluster, label=cluster, worktree=wt, branch=record.branch, attempt=attempt,
                owned=spec.paths, extra_env={"WC_FINDINGS_FILE": str(findings)} if findings else {},
                hint="install it, or pass --agent / --agent-cmd")
    link_before, head_before = guard.git_link(wt), gitrefs.head(ctx.repo, record.worktree)
    log_offset = log.stat().st_size if log.exists() else 0
    if box:  # refs are read-only in the sandbox: the agent commits on a detached HEAD
        gitops.detach(wt, head_before)
    try:
        res, usage = invoke(ctx, agent, call, prompt, feedback, timeout, on_line,
                            on_start=lambda pid: _started(ctx, cluster, pid))
    finally:
        recovery.note_agent_ended(ctx, cluster)
        if box:
            guard.attach_after_sandbox(ctx, record)
    if not wt.is_dir():
        # Deleted by the agent or by hand: nothing to check or commit, and another attempt here
        # could not start. The next run of the plan makes the worktree again from the branch.
        _give_up(ctx, record, f"the worktree {wt} was deleted during the attempt (by the agent or by hand); its branch "
                              "keeps what was committed; run the plan again to recreate it and rerun this cluster")
    entry = Attempt(attempt=attempt, exit_code=res.exit_code, timed_out=res.timed_out, duration=res.duration,
                    output_tail=res.output_tail, leftovers=list(res.leftovers),
                    refused_writes=refused_writes(log_segment(log, log_offset)) if box else [],
                    cost_usd=usage.cost_usd if usage else None,
                    input_tokens=usage.input_tokens if usage else None,
                    output_tokens=usage.output_tokens if usage else None,
                    total_tokens=usage.total_tokens if usage else None,
                    denials=list(usage.denials) if usage else [])
    # Restored before our own commit; planted filters never run in it anyway (tasks.git.drivers).
    planted = _planted(ctx, entry, containment.check_now(ctx, win))
    tampered, committable = guard.check_attempt(ctx, record, link_before, head_before)
    changed = investigate.settle_attempt(ctx, record, attempt, head_before) if findings and committable else None
    if committable and not findings:
        # Files copied in by worktree.copy (a .env) are the user's, never committed.
        gitchanges.commit_all(wt, f"work-clusters: {cluster} attempt {attempt} (left uncommitted by the agent)",
                          exclude=agent.scratch_globs(), keep=ctx.plan.worktree.copy_files,
                          ignores=containment.trusted_ignores(ctx))
    tip = gitrefs.head(ctx.repo, record.worktree)  # the branch as verify and the checks see it
    files: list[str] | None = None  # the files ``tip`` changed since the base, once asked
    record.attempts.append(entry)
    retryable = attempt < max_attempts(ctx, agent) and not (planted and ctx.plan.contract.on_violation == "fail")
    spent = record.cost_usd
    said = f": {usage.error}" if usage is not None and usage.error else ""
    if interrupt.requested():  # stopped, or would verify while the user waits for the exit
        entry.failure, record.status, retryable = INTERRUPTED, "interrupted", False
    elif tampered or changed or planted:
        entry.failure, record.status = "; ".join(r for r in (planted, tampered, changed) if r), "failed"
    elif res.timed_out:
        entry.failure, record.status = f"the agent ran past its timeout of {timeout:g} s and was killed", "timed_out"
    elif res.exit_code != 0:
        entry.failure, record.status = f"the agent exited with status {res.exit_code}{said}", "failed"
    elif usage is not None and usage.is_error:
        entry.failure, record.status = f"the agent exited 0 but reported an error in its result{said}", "failed"
    elif limits.max_cost_usd is not None and spent is not None and spent > limits.max_cost_usd:
        entry.failure = f"cost ${spent:.2f} is past the limit of ${limits.max_cost_usd:.2f}"
        record.status, retryable = "cost_exceeded", False
    elif (empty := None if findings else _empty(record, files := githistory.changed_files(
            ctx.repo, record.base_sha, tip))) and ctx.plan.contract.on_empty == "retry":
        entry.failure, record.status = empty + said, "failed"
    else:
        entry.warning = empty + said if empty else None
        if entry.warning and on_line:
            on_line(f"warning (contract.on_empty: warn): {entry.warning}")
        entry.verify = run_commands(spec.verify, wt, env, timeout, log, on_line, box)
        failed = [v for v in entry.verify if not v.ok]
        # Policy retry: a broken contract fails the attempt, its report the next prompt's feedback.
        violation = (None if failed else investigate.attempt_problem(ctx, cluster) if findings
                     else _violation(ctx, record, tip, files))
        planted = _planted(ctx, entry, containment.check_now(ctx, win, last=True))  # by a verify command
        if planted:
            entry.failure, record.status = planted, "failed"
            retryable = retryable and ctx.plan.contract.on_violation != "fail"
        elif failed:
            entry.failure = f"verify command `{failed[0].command}` failed (exit {failed[0].exit_code})"
            entry.output_tail = failed[0].output_tail
            record.status = "failed"
        elif violation:
            entry.failure, entry.output_tail = violation
            record.status = "failed"
        else:
            gitchanges.commit_empty(wt, f"work-clusters: {cluster} finished (attempt {attempt})\n\n"
                                    f"{gitops.FINISHED_TRAILER}: {cluster} attempt {attempt}")
            record.status, record.error = "succeeded", None
    if limits.max_cost_usd is not None and spent is not None and spent > limits.max_cost_usd:
        retryable = False
    return retryable


def _violation(ctx: RunContext, record: ClusterRecord, tip: str,
               changed: list[str] | None) -> tuple[str, str] | None:
    """The contract check of the attempt's branch after verify; the files changed are asked of git
    again only when a verify command moved the branch since ``tip``."""
    now = gitrefs.head(ctx.repo, record.worktree)
    return attempt_violation(ctx, record, now, changed if now == tip else None)


def _started(ctx: RunContext, cluster: str, pid: int) -> None:
    recovery.note_agent_started(ctx, cluster, pid)
    if interrupt.requested():  # the interrupt's stopper ran before this agent was recorded
        threading.Thread(target=recovery.stop_agents, args=(ctx,), daemon=True).start()
