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
from prefect.settings import PREFECT_UI_URL
from prefect.states import Cancelling

from prefect_work_clusters.flows import crashes
from prefect_work_clusters.tasks import remote
from prefect_work_clusters.tasks.context import ClusterRecord, RunContext, save_record
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
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
    """Each unfinished cluster as a flow run of ``ctx.dispatch``, at most ``limits.concurrency`` at
    once, linked under this one in the UI and tagged with the plan and cluster; once all are final,
    their branches are fetched and each cluster is judged by what its branch holds (a finished
    agent commit), as a resumed run is. A run that crashed (its worker died: ``flows.crashes``) is
    started again as a new flow run, at most ``limits.retries`` times per cluster."""
    if crashes.ensure_crash_detection():
        prepared.notes.append(f"created the automation '{crashes.AUTOMATION}' (Prefect's zombie-flow detection)")
    pending = prepared.pending()
    runs = _run_all(ctx, pending, ctx.plan.limits.concurrency)
    prepared.notes.extend(remote.catch_up(ctx))
    records = []
    for rec in prepared.records:
        if rec.cluster not in pending:  # finished in an earlier run
            records.append(rec)
            continue
        tried = runs.get(rec.cluster, [])
        prepared.notes.extend(f"cluster {rec.cluster}: {link(r)} crashed ({_message(r)}); started again"
                              for r in tried[:-1])
        run = tried[-1] if tried else None
        tip = gitops.resolve_ref(ctx.repo, f"refs/heads/{rec.branch}")
        finished = tip is not None and githistory.finished_commit(ctx.repo, rec.base_sha, rec.branch)
        state = run.state if run else None
        said = f"{link(run)}: {state.type.value if state else 'unknown'}" if run else "no flow run (interrupted)"
        prepared.notes.append(f"cluster {rec.cluster} ran as {said}" if run else f"cluster {rec.cluster}: {said}")
        update: dict[str, Any] = {"head_sha": tip, "status": "succeeded" if finished else
                                  "interrupted" if interrupt.requested() else "failed",
                                  "error": None if finished else f"{said}: {_message(run)}"}
        record = rec.model_copy(update=update)
        save_record(ctx, record)
        records.append(record)
    return records


def _message(run: FlowRun | None) -> str:
    return (run.state.message or "") if run and run.state else ""


def _start(ctx: RunContext, name: str, attempt: int) -> FlowRun:
    assert ctx.dispatch is not None
    started = cast(FlowRun, run_deployment(  # called from sync code: the FlowRun, not a coroutine
        ctx.dispatch, parameters=_parameters(ctx, name), timeout=0, as_subflow=True,
        flow_run_name=f"{ctx.plan.name}-{name}" + (f"-{attempt}" if attempt > 1 else ""),
        tags=["work-clusters", f"plan:{ctx.plan.name}", f"cluster:{name}"]))
    get_run_logger().info("cluster %s: %s", name, link(started))
    return started


def _run_all(ctx: RunContext, names: list[str], limit: int) -> dict[str, list[FlowRun]]:
    """Start the clusters' flow runs, ``limit`` at a time, and return each cluster's runs once its
    last is final: a crashed one is followed by a new one while the plan's retries last. When the
    parent is interrupted, the unfinished ones are cancelled (their workers stop their agents),
    the ones not started never start, and the parent stops waiting."""
    waiting, running, runs = list(names), dict[str, UUID](), dict[str, list[FlowRun]]()
    with get_client(sync_client=True) as client:
        while waiting or running:
            while waiting and len(running) < limit and not interrupt.requested():
                name = waiting.pop(0)
                running[name] = _start(ctx, name, len(runs.get(name, [])) + 1).id
            time.sleep(POLL_SECONDS)
            for name, rid in list(running.items()):
                run = client.read_flow_run(rid)
                if run.state is not None and run.state.is_final():
                    running.pop(name)
                    runs.setdefault(name, []).append(run)
                    if run.state.is_crashed() and len(runs[name]) <= ctx.plan.limits.retries:
                        get_run_logger().warning("cluster %s: %s crashed (%s); starting it again",
                                                 name, link(run), _message(run))
                        waiting.insert(0, name)
            if interrupt.requested():
                for name, rid in running.items():
                    client.set_flow_run_state(rid, Cancelling(message="its parent run was interrupted"), force=True)
                    runs.setdefault(name, []).append(client.read_flow_run(rid))
                return runs
    return runs


def link(run: FlowRun) -> str:
    """How the report names a cluster's flow run: its name and id, and its page when the UI is known."""
    ui = PREFECT_UI_URL.value()
    return f"flow run {run.name} ({ui}/runs/flow-run/{run.id})" if ui else f"flow run {run.name} ({run.id})"
