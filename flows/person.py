"""A person's turn: a conflict no tier resolved, on a server, suspends the run with a form.

The form shows the conflicted files, the worktree and the commands (today's instructions). The
person resolves and commits in the worktree, then resumes the run (the UI's Resume, or any
client); Prefect starts the flow again from the top, finished clusters are kept, and the
integration goes on from the person's commit. Their resolution is recorded as a decision. A run
not resumed within ``integration.person_timeout_seconds`` is failed by Prefect; its published
report holds the instructions, and ``work-clusters integrate`` still resumes. A local run (no
deployment: Prefect cannot suspend it) fails with the instructions, as it always did.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prefect.context import FlowRunContext
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput
from pydantic import BaseModel, Field

from prefect_work_clusters.tasks.context import RunContext, write_json_atomic
from prefect_work_clusters.tasks.integration.models import Decision, IntegrationResult
from prefect_work_clusters.tasks.report import RunReport, publish_report


class PersonTurn(RunInput):
    """The form of a person's turn."""

    resolved: bool = Field(default=True, description="I resolved and committed the merge in the worktree.")
    comment: str = Field(default="", description="How; kept with the decision in the merge report.")
    resolved_by: str = Field(default="", description="Who resolved it (Prefect does not tell us).")


class Turn(BaseModel):
    """A person's turn asked for, kept in ``.runs/person.json``."""

    key: str
    flow_run_id: str
    cluster: str
    files: list[tuple[str, list[str], str]] = Field(description="(path, ours, theirs) of each conflicted file")
    asked_at: datetime


def _file(ctx: RunContext) -> Path:
    return ctx.runs_dir / "person.json"


def asked(ctx: RunContext) -> str | None:
    """What ``status`` says of a person's turn the last run asked for and nobody has taken yet."""
    path = _file(ctx)
    if not path.exists():
        return None
    turn = Turn.model_validate_json(path.read_text())
    return (f"a person's turn asked {turn.asked_at:%Y-%m-%d %H:%M} UTC (flow run {turn.flow_run_id}): "
            f"conflicts merging {turn.cluster} in {', '.join(f[0] for f in turn.files)}")


def _run() -> Any:
    context = FlowRunContext.get()
    run = context.flow_run if context else None
    return run if run is not None and run.deployment_id is not None else None


def ask(ctx: RunContext, result: IntegrationResult, report: RunReport) -> None:
    """Suspend for a person (raises Prefect's ``Pause``) when the integration stopped on a conflict
    in a run of a deployment. Returns where it cannot (a local run) or must not (resumed without the
    conflict resolved): the caller fails with the instructions, as without a server."""
    run = _run()
    stopped = next((s for s in result.steps if s.status == "conflict" and s.files), None)
    if run is None or stopped is None:
        return
    key = f"person-{stopped.cluster}-{(stopped.checked or '')[:12]}"
    if key in (run.empirical_policy.pause_keys or set()):
        return  # this very conflict was handed to a person already, and is still there
    left = [f for f in stopped.files if f.resolved_by is None]
    turn = Turn(key=key, flow_run_id=str(run.id), cluster=stopped.cluster, asked_at=datetime.now(timezone.utc),
                files=[(f.path, f.ours, f.theirs) for f in left])
    write_json_atomic(_file(ctx), turn.model_dump(mode="json"))
    publish_report(ctx, report)
    text = (f"**A person's turn: merging {stopped.cluster} stopped on conflicts no tier resolved.** "
            f"Resolve them in the integration worktree `{ctx.integration_worktree}`, commit, then resume "
            "this run.\n\n```\n" + result.instructions + "```\n")
    form = PersonTurn.with_initial_data(description=text, resolved=True)
    timeout = int(ctx.plan.integration.person_timeout_seconds)
    suspend_flow_run(wait_for_input=form, timeout=timeout, key=key)  # raises Pause: the run suspends here


def resolved(ctx: RunContext, result: IntegrationResult) -> list[str]:
    """Once the integration got past a person's turn: in the run that was resumed after it, the
    person's resolution as decisions on ``result`` and notes for the report. The turn is then
    over, whichever run got past it (``status`` stops telling of it)."""
    path = _file(ctx)
    if not path.exists():
        return []
    turn = Turn.model_validate_json(path.read_text())
    if any(s.cluster == turn.cluster and s.status == "conflict" for s in result.steps):
        return []  # still unresolved: ask() declines to ask again, the run fails with the instructions
    path.unlink()
    run = _run()
    if run is None or turn.flow_run_id != str(run.id) or turn.key not in (run.empirical_policy.pause_keys or set()):
        return []
    # The key has fired, so this returns the person's answer at once instead of suspending.
    answer = suspend_flow_run(wait_for_input=PersonTurn, key=turn.key)
    who = f" by {answer.resolved_by}" if answer.resolved_by else ""
    said = f": {answer.comment}" if answer.comment else ""
    evidence = "; ".join(f"`{v.command}` {'passed' if v.ok else 'failed'}" for v in result.verify) or "not run"
    result.decisions += [Decision(file=p, hunk=None, ours=ours, theirs=theirs, tier="person", verification=evidence,
                                  reason=f"resolved{who} in the integration worktree during the run's person's "
                                         f"turn{said}") for p, ours, theirs in turn.files]
    return [f"a person{who} resolved {len(turn.files)} conflicted file(s) merging {turn.cluster} "
            f"(asked {turn.asked_at:%Y-%m-%d %H:%M} UTC){said}"]
