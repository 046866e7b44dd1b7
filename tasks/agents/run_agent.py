"""Step 3, the run-agent task: one cluster's agent attempt (``attempt.run_attempt``) as a mapped
Prefect task, whose retries are the agent's further attempts, holding a slot of its backend's
global concurrency limit and shown in the run's progress artifact."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import TaskRunContext
from prefect.runtime import flow_run as runtime_flow_run
from prefect.runtime import task_run as runtime_task_run

from prefect_work_clusters.tasks.agents import progress
from prefect_work_clusters.tasks.agents.attempt import AgentFailed, run_attempt
from prefect_work_clusters.tasks.agents.call import agent_for
from prefect_work_clusters.tasks.agents.limits import agent_slot, with_cost_cap
from prefect_work_clusters.tasks.context import ClusterRecord, RunContext
from prefect_work_clusters.tasks.failures import failed


def _retry_allowed(task: Any, task_run: Any, state: Any) -> bool:
    if isinstance(state.data, AgentFailed):  # returned by run_agent, before Prefect wraps the data
        return state.data.retryable
    try:
        state.result()
    except AgentFailed as exc:
        return exc.retryable
    except Exception:  # noqa: BLE001 - an unexpected error may be transient; let Prefect retry it
        return True
    return False


@task(name="run-agent", task_run_name="agent-{cluster}", cache_policy=NO_CACHE,
      retry_condition_fn=_retry_allowed, retry_delay_seconds=0)
def run_agent(ctx: RunContext, cluster: str) -> ClusterRecord | State[Any]:
    """Run one cluster's agent in its worktree; a failed attempt is retried by Prefect.

    A failed attempt is an expected failure: the task returns a Failed state whose message says
    why in one line, with the last lines the agent printed (``tasks.failures``), rather than
    raising into a traceback. Prefect retries a returned Failed state as it would an exception.

    Each attempt holds a slot of its backend's global concurrency limit (``tasks.agents.limits``), so
    runs together never start more agents of one backend than that limit allows.
    """
    logger = get_run_logger()
    attempt = max(1, int(runtime_task_run.run_count or 1))
    backend = agent_for(ctx, ctx.plan.cluster(cluster).agent)
    ctx = with_cost_cap(ctx, getattr(backend, "max_cost_usd", None))  # a saved agent block's cost limit
    live = progress.of_run(str(runtime_flow_run.id))
    with agent_slot(str(runtime_flow_run.id), backend.name):
        if live:
            live.started(cluster, attempt)
        try:
            record = run_attempt(ctx, cluster, attempt, on_line=lambda line: logger.info("[%s] %s", cluster, line))
        except AgentFailed as exc:
            if live:
                task = TaskRunContext.get()
                retrying = exc.retryable and task is not None and attempt <= task.task.retries
                live.ended(cluster, exc.record.status, attempt, exc.record.cost_usd, retrying)
            return failed(str(exc), data=exc)
        if live:
            live.ended(cluster, record.status, attempt, record.cost_usd, retrying=False)
        return record
