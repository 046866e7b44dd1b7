"""The end of a run, shared by the full run and ``integrate``: contract check, integrate, the
check on the integrated tree, publish (push to a remote), a person's turn or approval, land, and
the report. An investigation ends in its synthesis instead (``flows.investigation``)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from prefect import get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Completed

from prefect_work_clusters.flows import person, review
from prefect_work_clusters.flows.investigation import finish_investigation
from prefect_work_clusters.tasks import remote
from prefect_work_clusters.tasks.checks import containment
from prefect_work_clusters.tasks.checks.contract import contract_check, contract_check_integrated, integrated_ok
from prefect_work_clusters.tasks.context import ClusterRecord, RunContext
from prefect_work_clusters.tasks.failures import failed, last_lines
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.integration.integrate import integrate
from prefect_work_clusters.tasks.integration.models import IntegrationResult
from prefect_work_clusters.tasks.integration.tip import foreign_tip
from prefect_work_clusters.tasks.report import build_report, continue_command, publish_report
from prefect_work_clusters.tasks.worktrees import Prepared


def finish(ctx: RunContext, prepared: Prepared, records: list[ClusterRecord], phases: dict[str, float],
            started: datetime) -> State[Any]:
    """Contract check → integrate → land → report, shared by the full run and ``integrate``.
    An investigation is never merged: its findings are synthesized into an action plan."""
    if ctx.plan.investigates:
        prepared.notes.extend(containment.finish(ctx))
        return finish_investigation(ctx, prepared, records, phases, started)
    logger = get_run_logger()
    t = time.monotonic()
    checks = contract_check(ctx, records)
    phases["check"] = time.monotonic() - t
    foreign = foreign_tip(ctx)
    if foreign:  # never merge onto, or land, an integration branch we did not make
        logger.error(foreign)
        report = build_report(ctx, prepared, records, phases, started, False, [*prepared.notes, foreign],
                              checks=checks, integration=None, refused=foreign)
        path = publish_report(ctx, report)
        return failed(f"{foreign}; report at {path}")

    # Worktrees the run removes go while it integrates (which never reads them), after a last look.
    removal = None
    if not ctx.keep_worktrees:
        removal = gitworktrees.begin_removal(ctx.repo, [rec.worktree for rec in records], background=True,
                                             first=containment.let_go(ctx, [rec.cluster for rec in records]))
    # Our merges move the integration branch; its agent and verify commands are watched in here.
    with containment.window(ctx, containment.INTEGRATION) as watched:
        state = integrate(ctx, prepared.base_sha, checks, return_state=True)
    value = state.result(raise_on_failure=False)  # Failed when not done; the result is in it all the same
    if not isinstance(value, IntegrationResult):  # our own bug: keep its traceback
        raise value if isinstance(value, BaseException) else TypeError(f"integrate returned {value!r}")
    result = value
    prepared.notes.extend(person.resolved(ctx, result))  # after a person's turn, their resolution is a decision
    prepared.notes.extend(f"the integration (its agent or verify commands) changed the shared git dir (restored): {t}"
                          for t in watched.tampering)
    phases["integrate"], phases["verify"] = result.merge_seconds, result.verify_seconds

    t = time.monotonic()
    tree_checks = contract_check_integrated(ctx, checks, None if result.instructions else result.worktree,
                                            "the integration stopped on a conflict")
    phases["check"] += time.monotonic() - t
    contract_ok = integrated_ok(ctx, tree_checks)
    prepared.notes.extend(containment.finish(ctx))  # before landing, which changes your checkout itself

    refused = None
    if ctx.remote:  # published before anyone is asked to look at it, or it lands
        pushed = remote.push(ctx, [ctx.integration_branch])
        prepared.notes.extend(pushed)
        refused = pushed[0] if pushed and "refused" in pushed[0] else None
    if removal is not None:  # their registrations go after the watch's last look at the shared git dir
        prepared.notes.extend(removal.finish())

    report = build_report(ctx, prepared, records, phases, started, result.ok and contract_ok and refused is None,
                          prepared.notes, checks=checks, tree_checks=tree_checks, integration=result)
    if result.instructions:
        person.ask(ctx, result, report)  # on a server, suspends for a person's turn; else fails as below
    if report.ok and ctx.approve:  # landing waits for a person (flows.review)
        return review.ask(ctx, report)
    if ctx.land and contract_ok and refused is None:
        report = review.land(ctx, report)
    path = publish_report(ctx, report)
    logger.info("merge report: %s", path)
    if report.ok:
        return Completed(message=f"integrated and verified; report at {path}", data=report)
    landed = report.land
    unfinished = [c for c in report.clusters if c.status != "succeeded"]
    kept = [c.cluster for c in checks if not c.mergeable and c.status == "violation"]
    why = ("clusters not finished: " + "; ".join(
               f"{c.cluster} ({c.status}: {c.failure or 'no reason recorded'}"
               + (f"; {printed})" if (printed := last_lines(c.last_output)) else ")") for c in unfinished)
           if unfinished else
           f"contract check kept out: {', '.join(kept)}" if kept else
           result.failure if not result.ok else
           "the integrated tree broke the contract" if not contract_ok else
           landed.message if landed and not landed.landed else refused or "not every cluster merged")
    # No data: a worker's engine turns a failed state's data into the exception it raises.
    return failed(f"{why}; report at {path}; next: {continue_command(report)}")
