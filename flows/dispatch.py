"""The parent's side of clusters as flow runs: one flow run of the ``dispatch`` deployment per
cluster (``flows.cluster``), linked under the parent in the UI, awaited; then the branches they
pushed are fetched and judged as a resumed run's are."""

from __future__ import annotations

import time
from typing import Any, cast
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment

from prefect_work_clusters.tasks import remote
from prefect_work_clusters.tasks.context import ClusterRecord, RunContext, save_record
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.proc import interrupt
from prefect_work_clusters.tasks.worktrees import Prepared, plan_path_in_repo

# The options a cluster's flow run takes from its parent's (the rest are the parent's business).
FORWARDED = ("agent", "agent_cmd", "timeout", "retries", "sandbox", "credentials", "rerun")
POLL_SECONDS = 2.0


def _parameters(ctx: RunContext, cluster: str) -> dict[str, Any]:
    given = ctx.options.model_dump(exclude_defaults=True)
    return {"repo": ctx.remote, "plan": plan_path_in_repo(ctx), "cluster": cluster, "base_branch": ctx.base_branch,
            **{k: v for k, v in given.items() if k in FORWARDED}}


def run_dispatched(ctx: RunContext, prepared: Prepared) -> list[ClusterRecord]:
    """Each unfinished cluster as a flow run of ``ctx.dispatch``, linked under this one in the UI
    and tagged with the plan and cluster; once all are final, their branches are fetched and each
    cluster is judged by what its branch holds (a finished agent commit), as a resumed run is."""
    logger = get_run_logger()
    assert ctx.dispatch is not None
    runs: dict[str, UUID] = {}
    for name in prepared.pending():
        started = cast(FlowRun, run_deployment(  # called from sync code: the FlowRun, not a coroutine
            ctx.dispatch, parameters=_parameters(ctx, name), timeout=0, as_subflow=True,
            flow_run_name=f"{ctx.plan.name}-{name}",
            tags=["work-clusters", f"plan:{ctx.plan.name}", f"cluster:{name}"]))
        runs[name] = started.id
        logger.info("cluster %s: flow run %s (%s)", name, started.name, started.id)
    final = _wait(runs)
    prepared.notes.extend(remote.catch_up(ctx))
    records = []
    for rec in prepared.records:
        run = final.get(rec.cluster)
        if run is None:  # finished in an earlier run
            records.append(rec)
            continue
        tip = gitops.resolve_ref(ctx.repo, f"refs/heads/{rec.branch}")
        finished = tip is not None and gitops.finished_commit(ctx.repo, rec.base_sha, rec.branch)
        state = run.state
        said = f"flow run {run.name} ({run.id}): {state.type.value if state else 'unknown'}"
        prepared.notes.append(f"cluster {rec.cluster} ran as {said}")
        update: dict[str, Any] = {"head_sha": tip, "status": "succeeded" if finished else
                                  "interrupted" if interrupt.requested() else "failed",
                                  "error": None if finished else f"{said}: {state.message if state else ''}"}
        record = rec.model_copy(update=update)
        save_record(ctx, record)
        records.append(record)
    return records


def _wait(runs: dict[str, UUID]) -> dict[str, FlowRun]:
    """The flow runs once every one is final (or the parent is interrupted)."""
    with get_client(sync_client=True) as client:
        while True:
            seen = {name: client.read_flow_run(rid) for name, rid in runs.items()}
            if all(r.state is not None and r.state.is_final() for r in seen.values()) or interrupt.requested():
                return seen
            time.sleep(POLL_SECONDS)
