"""The run's report: ``report.json`` and ``merge-report.md`` in ``.runs/``, and the artifact."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from prefect_work_clusters.tasks.checks.rows import CheckRow, ClusterCheck, check_markdown
from prefect_work_clusters.tasks.context import ClusterRecord, RunContext, write_json_atomic
from prefect_work_clusters.tasks.integration.approval import Review
from prefect_work_clusters.tasks.integration.integrate import IntegrationResult
from prefect_work_clusters.tasks.integration.land import LandResult
from prefect_work_clusters.tasks.integration.report import integration_markdown
from prefect_work_clusters.tasks.investigation.findings import InvestigationResult, investigation_markdown
from prefect_work_clusters.tasks.worktrees import Prepared

STATUS_MARK = {"succeeded": "✅", "interrupted": "⚠️", "pending": ""}
PHASES = ("identify", "worktrees", "agents", "check", "integrate", "verify")


class AttemptSummary(BaseModel):
    """What one attempt's agent reported: usage where it prints it, what its tools refused."""

    attempt: int
    exit_code: int | None
    cost_usd: float | None
    input_tokens: int | None
    output_tokens: int | None
    total_tokens: int | None
    denials: list[str]
    warning: str | None
    failure: str | None

    def line(self) -> str:
        """One markdown line; the parts the agent did not report are left out."""
        parts = [f"exit {self.exit_code if self.exit_code is not None else '-'}"]
        if self.cost_usd is not None:
            parts.append(f"${self.cost_usd:.4f}")
        if self.input_tokens is not None or self.output_tokens is not None:
            parts.append(f"{self.input_tokens or 0} tokens in, {self.output_tokens or 0} out")
        elif self.total_tokens is not None:
            parts.append(f"{self.total_tokens} tokens")
        if self.denials:
            parts.append("refused: " + "; ".join(f"`{d}`" for d in self.denials))
        if self.warning:
            parts.append(f"warning: {self.warning}")
        return f"attempt {self.attempt}: " + ", ".join(parts)


def _tail_lines(text: str, count: int = 12) -> str:
    return "\n".join(text.rstrip().splitlines()[-count:])


class ClusterSummary(BaseModel):
    cluster: str
    status: str
    resumed: bool
    attempts: int
    exit_code: int | None
    duration: float
    cost_usd: float | None
    input_tokens: int | None
    output_tokens: int | None
    branch: str
    worktree: str
    base_sha: str
    head_sha: str | None
    log: str
    failure: str | None = None
    total_tokens: int | None = None
    per_attempt: list[AttemptSummary] = Field(default_factory=list)
    last_output: str = Field(default="", description="the last lines of a failed cluster's last attempt")

    @classmethod
    def of(cls, ctx: RunContext, rec: ClusterRecord) -> ClusterSummary:
        def total(field: str) -> int | None:
            values = [getattr(a, field) for a in rec.attempts if getattr(a, field) is not None]
            return sum(values) if values else None

        last = rec.attempts[-1] if rec.attempts else None
        return cls(cluster=rec.cluster, status=rec.status, resumed=rec.resumed, attempts=len(rec.attempts),
                   exit_code=rec.exit_code, duration=round(rec.duration, 3), cost_usd=rec.cost_usd,
                   input_tokens=total("input_tokens"), output_tokens=total("output_tokens"),
                   branch=rec.branch, worktree=str(rec.worktree), base_sha=rec.base_sha, head_sha=rec.head_sha,
                   log=str(ctx.log_file(rec.cluster)), failure=rec.error or (last.failure if last else None),
                   total_tokens=total("total_tokens"),
                   per_attempt=[AttemptSummary(attempt=a.attempt, exit_code=a.exit_code, cost_usd=a.cost_usd,
                                               input_tokens=a.input_tokens, output_tokens=a.output_tokens,
                                               total_tokens=a.total_tokens, denials=a.denials, warning=a.warning,
                                               failure=a.failure) for a in rec.attempts],
                   last_output=_tail_lines(last.output_tail) if last and rec.status != "succeeded" else "")


class RunReport(BaseModel):
    plan: str
    goal: str
    repo: str
    workspace: str
    base_ref: str
    base_ref_sha: str
    base_sha: str
    started_at: datetime
    finished_at: datetime
    ok: bool
    phases: dict[str, float]
    clusters: list[ClusterSummary]
    checks: list[ClusterCheck]
    tree_checks: list[CheckRow] = Field(default_factory=list, description="contract checks of the integrated tree")
    integration: IntegrationResult | None
    investigation: InvestigationResult | None = Field(
        default=None, description="an investigation's findings and action plan (no integration)")
    land: LandResult | None = None
    review: Review | None = Field(default=None, description="a person's approval, asked and answered")
    refused: str = Field(default="", description="why the run refused to integrate (a foreign integration branch)")
    notes: list[str] = Field(default_factory=list)
    total_cost_usd: float | None = None
    plan_file: str = ""


def continue_command(report: RunReport) -> str:
    """The one command that continues a run that did not integrate (the first next step)."""
    repo, plan = shlex.quote(report.repo), shlex.quote(report.plan_file or f"<plan of {report.plan}>")
    if report.integration and report.integration.instructions:
        return (f"finish the merge by hand in {report.workspace}/integration, then "
                f"work-clusters integrate {plan} --repo {repo}")
    return f"work-clusters run {plan} --repo {repo} (resumes: finished clusters are kept)"


def next_steps(report: RunReport) -> list[str]:
    """The exact commands that continue from here: inspect, land, resume, clean."""
    repo, plan = shlex.quote(report.repo), shlex.quote(report.plan_file or f"<plan of {report.plan}>")
    base, integration = f"clusters/{report.plan}/base", f"clusters/{report.plan}/integration"
    if report.investigation:
        steps = [f"- Read the action plan: `{report.investigation.action_plan.file}`",
                 f"- Turn the proposed fixes into a build plan: `work-clusters emit-plan {plan} fixes.yaml "
                 f"--repo {repo}`"]
    else:
        steps = [f"- Inspect: `git -C {repo} log --oneline {base}..{integration}` and "
                 f"`git -C {repo} diff {base} {integration}`"]
        landed = report.land is not None and report.land.landed
        if report.review and report.review.status == "awaiting":
            steps.append(f"- Approve (lands it): `work-clusters approve {plan} --repo {repo}`; or "
                         f"`work-clusters approve {plan} --repo {repo} --reject --comment TEXT`")
        elif report.ok and not landed and not report.review:
            steps.append(f"- Land (fast-forward `{report.base_ref}`): `work-clusters integrate {plan} --repo {repo} "
                         "--land`")
        if not report.ok:
            steps.append(f"- Resume: `work-clusters run {plan} --repo {repo}` (finished clusters are kept; the "
                         "others run again, then the integration)")
            if report.integration and report.integration.instructions:
                steps.append(f"- Or finish the merge by hand in `{report.workspace}/integration`, then "
                             f"`work-clusters integrate {plan} --repo {repo}`")
    steps.append(f"- Clean up: `work-clusters clean {plan} --repo {repo}` (worktrees; `--branches` also deletes "
                 "the branches)")
    return steps


def render_markdown(report: RunReport) -> str:
    integ = report.integration
    inv = report.investigation
    verdict = ("integrated and verified" if report.ok else "NOT integrated") if not inv else (
        "findings synthesized into an action plan" if report.ok else "NOT complete")
    title = "Investigation report" if inv else "Merge report"
    lines = [f"# {title}: {report.plan}", "", f"**{verdict}**", "", f"Goal: {report.goal or '-'}", "",
             f"- Base: `{report.base_ref}` at `{report.base_ref_sha[:12]}`; clusters started from "
             f"`{report.base_sha[:12]}` (`clusters/{report.plan}/base`)",
             f"- Final commit: `{integ.final_sha if integ and integ.final_sha else '-'}` on "
             f"`clusters/{report.plan}/integration`" if not inv else
             f"- Investigated: `{report.base_sha[:12]}`; nothing is merged (investigation branches never are)"]
    if report.total_cost_usd is not None:
        lines.append(f"- Agent cost: ${report.total_cost_usd:.4f}")
    if report.review:
        lines.append(f"- Review: {report.review.line()}")
    if report.land:
        lines.append(f"- Land: {report.land.message}")
    if report.refused:
        lines.append(f"- Refused to integrate: {report.refused}")
    lines += ["", "## Clusters", "", "| cluster | status | attempts | exit | duration (s) | cost (USD) | base | head |",
              "|---|---|---|---|---|---|---|---|"]
    for c in report.clusters:
        status = f"{STATUS_MARK.get(c.status, '❌')} {c.status}" + (" (resumed)" if c.resumed else "")
        cost = f"{c.cost_usd:.4f}" if c.cost_usd is not None else ""
        head = f"`{c.head_sha[:12]}`" if c.head_sha else ""
        lines.append(f"| {c.cluster} | {status} | {c.attempts} | {c.exit_code if c.exit_code is not None else ''} "
                     f"| {c.duration:.1f} | {cost} | `{c.base_sha[:12]}` | {head} |")
    failures = [c for c in report.clusters if c.failure]
    for c in failures:
        lines += ["", f"- **{c.cluster}**: {c.failure} (log: `{c.log}`)"]
        if c.last_output.strip():
            lines += ["", "  The agent's last output:", "", "  ```", *[f"  {x}" for x in c.last_output.splitlines()],
                      "  ```"]
    usage = [(c.cluster, a) for c in report.clusters for a in c.per_attempt]
    if usage:
        lines += ["", "## Agent usage", "", *[f"- **{name}** {a.line()}" for name, a in usage]]
    if integ:
        lines += integration_markdown(integ)
    if inv:
        lines += ["", *investigation_markdown(inv)]
    lines += ["", "## Contract check", "", *check_markdown(report.checks, report.tree_checks), "",
              f"Every check: the `contract-check-{report.plan}` artifact"
              + (f" and `contract-check-integrated-{report.plan}`" if report.tree_checks else "")
              + ", and `report.json`."]
    shown = [p for p in PHASES if p in report.phases or not inv] + [p for p in report.phases if p not in PHASES]
    lines += ["", "## Phases", "", " · ".join(f"{p} {report.phases.get(p, 0.0):.2f} s" for p in shown)]
    if report.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in report.notes]]
    lines += ["", "## Next steps", "", *next_steps(report)]
    return "\n".join(lines) + "\n"


def write_report(ctx: RunContext, report: RunReport) -> Path:
    """Write ``report.json`` and ``merge-report.md``; return the markdown's path."""
    ctx.runs_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(ctx.runs_dir / "report.json", report.model_dump(mode="json"))
    md = ctx.runs_dir / "merge-report.md"
    md.write_text(render_markdown(report))
    return md


@task(name="merge-report", cache_policy=NO_CACHE)
def publish_report(ctx: RunContext, report: RunReport) -> str:
    """Write the report files and the ``merge-report-<plan>`` artifact (an investigation's:
    ``investigation-report-<plan>``); return the markdown path."""
    path = write_report(ctx, report)
    kind = "investigation" if report.investigation else "merge"
    create_markdown_artifact(key=f"{kind}-report-{ctx.plan.name}", markdown=path.read_text(),
                             description=f"{kind.capitalize()} report of plan {ctx.plan.name}")
    return str(path)


def attempt_notes(records: list[ClusterRecord]) -> list[str]:
    """What the agents' attempts did beyond their worktree: processes left running (killed) and
    writes the sandbox refused."""
    notes: list[str] = []
    for r in records:
        for a in r.attempts:
            if a.leftovers:
                notes.append(f"{r.cluster} attempt {a.attempt}: killed {len(a.leftovers)} process(es) the agent left "
                             "running: " + "; ".join(f"`{c[:120]}`" for c in a.leftovers[:5]))
            if a.refused_writes:
                notes.append(f"{r.cluster} attempt {a.attempt}: the sandbox refused {len(a.refused_writes)} write(s) "
                             "outside its worktree: " + "; ".join(f"`{w[:160]}`" for w in a.refused_writes[:5]))
    return notes


def build_report(ctx: RunContext, prepared: Prepared, records: list[ClusterRecord], phases: dict[str, float],
                 started: datetime, ok: bool, notes: list[str], extra_costs: Sequence[float | None] = (),
                 **parts: Any) -> RunReport:
    """The report of a run: what every kind of run has, plus its own ``parts`` (checks, integration,
    investigation, land). Costs add up every cluster's and ``extra_costs`` (e.g. the synthesis)."""
    costs = [c for c in [*(r.cost_usd for r in records), *extra_costs] if c is not None]
    return RunReport(
        plan=ctx.plan.name, goal=ctx.plan.goal, repo=str(ctx.repo), workspace=str(ctx.workspace),
        base_ref=ctx.plan.base or "HEAD", base_ref_sha=prepared.base_ref_sha, base_sha=prepared.base_sha,
        started_at=started, finished_at=datetime.now(timezone.utc), ok=ok,
        phases={k: round(v, 3) for k, v in phases.items()},
        clusters=[ClusterSummary.of(ctx, r) for r in records], notes=[*notes, *attempt_notes(records)],
        plan_file=str(ctx.plan_file),
        total_cost_usd=sum(costs) if costs else None, **parts)
