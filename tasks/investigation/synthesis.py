"""The synthesis step of an investigation (role ``synthesis``): every finding in, an action plan out.

The agent is ``integration.agent``, else the plan's agent, run through the one runner in the
integration worktree (at the commit the clusters investigated) with the plan's timeout and
``1 + retries`` attempts. Besides the usual ``WC_*`` it gets ``WC_FINDINGS_DIR`` (every findings
document, and ``findings.json`` with every typed finding) and ``WC_ACTION_PLAN_FILE``, where it
writes the action plan; its prompt (``prompts/synthesis.md.j2``) holds every finding in full.
Like an investigation cluster it must not change tracked files.

Without an agent, or when the agent fails, work-clusters orders the findings itself
(``tasks.investigation.fixes.render_action_plan``) and says so, so the run always leaves an action plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from prefect_work_clusters.tasks.agents.call import Call, integration_backend, invoke, max_attempts
from prefect_work_clusters.tasks.agents.prompts import PROMPTS, contracts_for_prompt
from prefect_work_clusters.tasks.agents.registry import AgentBackend
from prefect_work_clusters.tasks.checks.rows import ClusterCheck
from prefect_work_clusters.tasks.context import ClusterRecord, RunContext, load_record, write_json_atomic
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.investigation.findings import (
    FindingsDoc,
    InvestigationResult,
    Synthesis,
    TypedFinding,
    findings_dir,
    findings_table,
    read_findings,
)
from prefect_work_clusters.tasks.investigation.fixes import render_action_plan

ROLE = "synthesis"
OnLine = Callable[[str], None] | None


def action_plan_file(ctx: RunContext) -> Path:
    """``WC_ACTION_PLAN_FILE``: in ``.runs``, outside every worktree."""
    return ctx.runs_dir / "action-plan.md"


def collect(ctx: RunContext, records: list[ClusterRecord]) -> tuple[list[FindingsDoc], list[TypedFinding]]:
    """Every cluster's findings document, and the typed findings of those that finished."""
    docs: list[FindingsDoc] = []
    findings: list[TypedFinding] = []
    for rec in records:
        doc, found = read_findings(ctx, rec.cluster)
        if rec.status != "succeeded":
            last = rec.attempts[-1].failure if rec.attempts else None
            why = rec.error or last or rec.status
            doc = FindingsDoc(cluster=rec.cluster, file=doc.file, status="not-finished",
                              problems=[f"the agent did not finish ({why}); its findings are left out"])
            found = []
        docs.append(doc)
        findings += found
    return docs, findings


def gather(ctx: RunContext, records: list[ClusterRecord]) -> tuple[list[FindingsDoc], list[TypedFinding]]:
    """``collect``, and every typed finding in ``findings.json`` of the findings folder, for the agent."""
    docs, findings = collect(ctx, records)
    write_json_atomic(findings_dir(ctx) / "findings.json", [f.model_dump(mode="json") for f in findings])
    return docs, findings


def recorded_findings(ctx: RunContext) -> list[TypedFinding]:
    """The typed findings an earlier run of the plan left (of the clusters whose agent finished)."""
    records = [r for r in (load_record(ctx, c.name) for c in ctx.plan.clusters) if r is not None]
    if not records:
        raise WorkClustersError(f"plan {ctx.plan.name} has no recorded run in {ctx.runs_dir}; "
                                "run the investigation first (work-clusters run)")
    return collect(ctx, records)[1]


def _worktree(ctx: RunContext, base_sha: str) -> Path:
    """The integration worktree, exactly at the investigated commit."""
    wt = gitworktrees.ensure_worktree(ctx.repo, ctx.integration_worktree, ctx.integration_branch, base_sha).path
    if gitops.head(wt) != base_sha or githistory.changed_in_worktree(wt, base_sha):
        gitchanges.reset_to(wt, base_sha)
    return wt


def _fence(text: str) -> str:
    """A backtick fence longer than any run of backticks in ``text``."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def render_prompt(ctx: RunContext, docs: list[FindingsDoc], findings: list[TypedFinding], checks: list[ClusterCheck],
                  attempt: int, feedback: str) -> str:
    violations = {c.cluster: c.files_changed for c in checks if c.status == "violation"}
    clusters = [{"spec": ctx.plan.cluster(d.cluster), "doc": d, "fence": _fence(d.text),
                 "violation": violations.get(d.cluster, [])} for d in docs]
    return PROMPTS.get_template("synthesis.md.j2").render(
        plan=ctx.plan, branch=ctx.integration_branch, clusters=clusters, findings=findings,
        findings_dir=str(findings_dir(ctx)), action_plan_file=str(action_plan_file(ctx)),
        contracts=contracts_for_prompt(ctx), feedback=feedback, attempt=attempt)


def _attempt(ctx: RunContext, backend: AgentBackend, wt: Path, base_sha: str, prompt: str, attempt: int,
             feedback: str, on_line: OnLine) -> tuple[str | None, str, float, float | None]:
    """One run of the synthesis agent: (why it failed or None, output tail, seconds, cost)."""
    out = action_plan_file(ctx)
    out.unlink(missing_ok=True)
    call = Call(role=ROLE, name=ROLE, label=ROLE, worktree=wt, branch=ctx.integration_branch, attempt=attempt,
                owned=[], extra_env={"WC_FINDINGS_DIR": str(findings_dir(ctx)), "WC_ACTION_PLAN_FILE": str(out)},
                hint="install it, or set integration.agent / pass --integration-agent")
    timeout = backend.timeout_seconds or ctx.plan.limits.timeout_seconds
    res, usage = invoke(ctx, backend, call, prompt, feedback, timeout, on_line)
    changed = githistory.changed_in_worktree(wt, base_sha)
    failure = (f"the synthesis agent ran past its timeout of {timeout:g} s and was killed" if res.timed_out else
               f"the synthesis agent exited with status {res.exit_code}" if res.exit_code != 0 else
               "the synthesis agent exited 0 but reported an error in its result" if usage and usage.is_error else
               None)
    if not failure and changed:
        failure = f"the synthesis agent changed tracked files ({', '.join(changed[:20])}; undone); it must not"
    if not failure and not (out.is_file() and out.read_text(errors="replace").strip()):
        failure = f"the synthesis agent exited 0 but wrote no action plan to $WC_ACTION_PLAN_FILE ({out})"
    return failure, res.output_tail, res.duration, usage.cost_usd if usage else None


def run_synthesis(ctx: RunContext, base_sha: str, docs: list[FindingsDoc], findings: list[TypedFinding],
                  checks: list[ClusterCheck], on_line: OnLine = None) -> Synthesis:
    """Run the synthesis agent until it writes the action plan or its attempts run out."""
    out = action_plan_file(ctx)
    backend = integration_backend(ctx)
    if backend is None:
        text = _ordered(ctx, findings, "No synthesis agent is set (integration.agent or agent)")
        return Synthesis(agent=None, ok=True, file=str(out), text=text)
    wt = _worktree(ctx, base_sha)
    result = Synthesis(agent=backend.name, ok=False, file=str(out))
    feedback, costs = "", []
    for attempt in range(1, max_attempts(ctx, backend) + 1):
        prompt = render_prompt(ctx, docs, findings, checks, attempt, feedback)
        try:
            failure, tail, seconds, cost = _attempt(ctx, backend, wt, base_sha, prompt, attempt, feedback, on_line)
        except WorkClustersError as exc:  # the agent cannot start: another attempt will not help
            result.attempts, result.failure = attempt, f"the synthesis agent could not start: {exc}"
            break
        if gitops.head(wt) != base_sha or githistory.changed_in_worktree(wt, base_sha):
            gitchanges.reset_to(wt, base_sha)
        costs += [cost] if cost is not None else []
        result.attempts, result.failure = attempt, failure
        result.duration = round(result.duration + seconds, 3)
        result.prompt_file = str(ctx.prompt_file(ROLE, attempt))
        if failure is None:
            result.ok, result.text = True, out.read_text(errors="replace")
            break
        tail = tail[-2000:].strip()
        feedback = f"{failure}\n\nLast output:\n\n```\n{tail}\n```" if tail else failure
    result.cost_usd = sum(costs) if costs else None
    if not result.ok:
        result.text = _ordered(ctx, findings, f"The synthesis agent failed ({result.failure})")
    return result


def _ordered(ctx: RunContext, findings: list[TypedFinding], why: str) -> str:
    """The action plan work-clusters writes itself when no agent wrote one, saying so."""
    text = render_action_plan(findings, f"Action plan: {ctx.plan.name}",
                              f"{why}, so work-clusters ordered the findings itself: fixes grouped by the paths "
                              "they concern, most severe first. No agent has weighed them.", ctx.repo)
    action_plan_file(ctx).write_text(text)
    return text


def publish_investigation(ctx: RunContext, result: InvestigationResult) -> None:
    """The ``action-plan-<plan>`` (markdown) and ``findings-<plan>`` (table) artifacts."""
    create_markdown_artifact(key=f"action-plan-{ctx.plan.name}", markdown=result.action_plan.text,
                             description=f"Action plan of investigation {ctx.plan.name}")
    create_table_artifact(key=f"findings-{ctx.plan.name}", table=findings_table(result.findings),
                          description=f"Typed findings of investigation {ctx.plan.name}, most severe first")


@task(name="synthesize", cache_policy=NO_CACHE)
def synthesize(ctx: RunContext, base_sha: str, records: list[ClusterRecord],
               checks: list[ClusterCheck]) -> InvestigationResult:
    """Gather every cluster's findings, synthesize the action plan, publish both artifacts."""
    logger = get_run_logger()
    docs, findings = gather(ctx, records)
    for doc in docs:
        logger.info("findings of %s: %s, %d typed", doc.cluster, doc.status, doc.count)
    plan = run_synthesis(ctx, base_sha, docs, findings, checks,
                         on_line=lambda line: logger.info("[synthesis] %s", line))
    if not plan.ok:
        logger.error("synthesis: %s", plan.failure)
    result = InvestigationResult(findings=findings, documents=docs, action_plan=plan)
    publish_investigation(ctx, result)
    return result
