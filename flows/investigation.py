"""The end of an investigation run: check → synthesize → report. Nothing is merged or landed.

``flows.work_clusters`` runs the same identify → worktrees → agents steps for every plan, then
hands a plan of ``kind: investigation`` clusters to ``finish_investigation`` instead of the
integration. The run is Completed when every cluster wrote usable findings without changing a
tracked file (unless ``contract.on_violation: warn``) and the synthesis agent wrote the action plan.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from prefect import get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Completed

from prefect_work_clusters.tasks.context import ClusterRecord, RunContext
from prefect_work_clusters.tasks.failures import failed
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.investigation.check import blocking, check_investigations
from prefect_work_clusters.tasks.investigation.synthesis import synthesize
from prefect_work_clusters.tasks.report import build_report, publish_report
from prefect_work_clusters.tasks.worktrees import Prepared


def finish_investigation(ctx: RunContext, prepared: Prepared, records: list[ClusterRecord],
                         phases: dict[str, float], started: datetime) -> State[Any]:
    """Check every investigation branch, synthesize the findings into an action plan, report."""
    logger = get_run_logger()
    t = time.monotonic()
    checks = check_investigations(ctx, records)
    phases["check"] = time.monotonic() - t

    t = time.monotonic()
    result = synthesize(ctx, prepared.base_sha, records, checks)
    phases["synthesis"] = time.monotonic() - t

    if not ctx.keep_worktrees:
        gitworktrees.remove_worktrees(ctx.repo, [rec.worktree for rec in records])
    notes = list(prepared.notes)
    if ctx.land:
        notes.append("land was asked for, but an investigation changes nothing: there is nothing to land")
    unfinished = [r.cluster for r in records if r.status != "succeeded"]
    violated = blocking(ctx, checks)
    unusable = [d.cluster for d in result.documents if d.status in ("missing", "invalid")]  # e.g. a resumed run's
    ok = not unfinished and not violated and not unusable and result.action_plan.ok
    report = build_report(ctx, prepared, records, phases, started, ok, notes, extra_costs=[result.action_plan.cost_usd],
                          checks=checks, integration=None, investigation=result)
    path = publish_report(ctx, report)
    logger.info("investigation report: %s; action plan: %s", path, result.action_plan.file)
    count = f"{len(result.findings)} typed finding(s) from {len(records) - len(unfinished)} cluster(s)"
    if ok:
        return Completed(message=f"{count} synthesized into an action plan ({result.action_plan.file}); "
                                 f"report at {path}", data=report)
    why = (f"clusters not finished: {', '.join(unfinished)}" if unfinished else
           f"investigation clusters changed tracked files: {', '.join(violated)}" if violated else
           f"findings missing or invalid: {', '.join(unusable)}" if unusable else
           f"synthesis failed: {result.action_plan.failure}")
    # No data on a failed state: run by a worker, the engine would try to raise it as an exception.
    return failed(f"{why}; {count}; action plan at {result.action_plan.file}; report at {path}")
