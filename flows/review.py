"""Review before landing: a run with ``approve`` waits for a person, then lands or not.

On a server (a flow run of a deployment) the run suspends with an ``Approval`` form, holding no
worker; when it is resumed Prefect starts the flow again from the top, and :func:`resumed` takes
it straight back to the decision. A local run cannot suspend (Prefect refuses a flow run without a
deployment), so it ends with the approval recorded as awaited in ``.runs/review.json``, and
``work-clusters approve`` lands it later. Either way one function, :func:`decide`, lands.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from prefect.client.schemas.objects import State
from prefect.context import FlowRunContext
from prefect.flow_runs import suspend_flow_run
from prefect.settings import PREFECT_UI_URL
from prefect.states import Completed, Failed

from prefect_work_clusters.tasks import remote
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.integration import approval
from prefect_work_clusters.tasks.integration import land as landing
from prefect_work_clusters.tasks.integration.approval import Approval, Review
from prefect_work_clusters.tasks.report import RunReport, publish_report, render_markdown, write_report


def artifact_url(plan: str) -> str | None:
    """The merge report artifact's page in the UI, when there is a UI to link to."""
    ui = PREFECT_UI_URL.value()
    return f"{ui.rstrip('/')}/artifacts/key/merge-report-{plan}" if ui else None


def land(ctx: RunContext, report: RunReport) -> RunReport:
    """The report once the integrated result landed (or was refused), the report itself as a
    pull request's body."""
    if report.integration is None:
        return report
    landed = landing.land(ctx, report.integration, render_markdown(report), artifact_url(ctx.plan.name))
    landed = remote.push_landed(ctx, landed)  # a remote run landed in our clone: the remote's base follows
    return report.model_copy(update={"land": landed, "ok": report.ok and landed.landed})


def _flow_run() -> Any:
    context = FlowRunContext.get()
    return context.flow_run if context else None


def ask(ctx: RunContext, report: RunReport) -> State[Any]:
    """Ask a person: record the question, publish the report, then suspend (on a server) or end
    saying how to answer (local)."""
    run = _flow_run()
    suspends = run is not None and run.deployment_id is not None
    assert report.integration is not None and report.integration.final_sha is not None  # only a green run asks
    review = Review(status="awaiting", final_sha=report.integration.final_sha, requested_at=datetime.now(timezone.utc),
                    flow_run_id=str(run.id) if suspends else None)
    approval.save_review(ctx, review)
    report = report.model_copy(update={"review": review})
    path = publish_report(ctx, report)
    if not suspends:
        return Completed(message=f"integrated and verified; awaiting approval: work-clusters approve {ctx.plan_file} "
                                 f"--repo {ctx.repo} (or --reject); report at {path}", data=report)
    return _wait(ctx, review, report)


def _wait(ctx: RunContext, review: Review, report: RunReport) -> State[Any]:
    # The first call raises Pause (the run suspends, its process ends); the resumed run's call
    # with the same key returns the person's answer.
    form = Approval.with_initial_data(description=approval.description(ctx.plan.name, render_markdown(report)),
                                      approve=False)
    answer = suspend_flow_run(wait_for_input=form, timeout=approval.TIMEOUT_SECONDS, key=approval.PAUSE_KEY)
    decided = decide(ctx, review, report, answer, via="Prefect (UI or API)")
    path = publish_report(ctx, decided)
    return _state(decided, path)


def resumed(ctx: RunContext) -> State[Any] | None:
    """The state of a resumed suspended run, once its decision is applied; None for any other run."""
    run = _flow_run()
    if run is None or approval.PAUSE_KEY not in (run.empirical_policy.pause_keys or set()):
        return None
    review = approval.load_review(ctx)
    report_file = ctx.runs_dir / "report.json"
    if review is None or review.status != "awaiting" or review.flow_run_id != str(run.id) or not report_file.exists():
        return Failed(message="a later run of the plan replaced this one's request for approval; nothing landed "
                              "(approve the later run)")
    return _wait(ctx, review, RunReport.model_validate_json(report_file.read_text()))


def decide(ctx: RunContext, review: Review, report: RunReport, answer: Approval, via: str) -> RunReport:
    """Apply a person's answer: land what they saw (and only that), or record the rejection."""
    review = review.decided(answer, via)
    tip = gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.integration_branch}")
    if not answer.approve:
        report = report.model_copy(update={"land": landing.LandResult(
            landed=False, message=f"not landed: rejected{f' ({answer.comment})' if answer.comment else ''}")})
    elif tip != review.final_sha:
        report = report.model_copy(update={"ok": False, "land": landing.LandResult(
            landed=False, message=f"not landed: {ctx.integration_branch} moved since approval was asked "
                                  f"({review.final_sha[:12]} -> {(tip or 'deleted')[:12]}); run the plan again")})
    else:
        report = land(ctx, report)
    approval.save_review(ctx, review)
    return report.model_copy(update={"review": review, "finished_at": datetime.now(timezone.utc)})


def _state(report: RunReport, path: str) -> State[Any]:
    landed = report.land.message if report.land else "not landed"
    if report.ok:
        return Completed(message=f"integrated and verified; {landed}; report at {path}", data=report)
    return Failed(message=f"{landed}; report at {path}")


def approve_run(ctx: RunContext, answer: Approval) -> list[str]:
    """``work-clusters approve``: resume the suspended flow run on its server, or land a local
    run here. Returns what to tell the person."""
    review = approval.load_review(ctx)
    if review is None or review.status != "awaiting":
        last = f" (its last decision: {review.line()})" if review else ""
        raise WorkClustersError(f"plan {ctx.plan.name} has no run awaiting approval{last}; "
                                "runs ask with integration.approve: true or run --approve")
    if review.flow_run_id:
        return [_resume(UUID(review.flow_run_id), answer)]
    report = RunReport.model_validate_json((ctx.runs_dir / "report.json").read_text())
    decided = decide(ctx, review, report, answer, via="work-clusters approve")
    path = write_report(ctx, decided)
    return [approval_line(decided), *([decided.land.message] if decided.land else []), f"report: {path}"]


def approval_line(report: RunReport) -> str:
    return f"review: {report.review.line()}" if report.review else ""


def _resume(run_id: UUID, answer: Approval) -> str:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(run_id)
        except ObjectNotFound:
            raise WorkClustersError(f"flow run {run_id} is not on the Prefect API at {PREFECT_API_URL.value() or '-'}; "
                                    "set PREFECT_API_URL to the server that ran it") from None
        if run.state is None or not run.state.is_paused():
            raise WorkClustersError(f"flow run {run_id} is {run.state.name if run.state else 'without state'}, "
                                    "not waiting for approval")
        result = client.resume_flow_run(run_id, run_input=answer.model_dump())
    if result.status.value != "ACCEPT":
        raise WorkClustersError(f"Prefect refused to resume flow run {run_id}: {result.details}")
    verb = "approved" if answer.approve else "rejected"
    return f"{verb}: flow run {run_id} resumed; its worker {'lands it' if answer.approve else 'ends it'}"

