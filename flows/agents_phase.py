"""The agents phase of a run: the mapped ``run-agent`` task over the unfinished clusters, under
the global slots of their backends (``tasks.agents.limits``) and the containment watch, shown in
the ``progress-<plan>`` artifact; shared by the ``work-clusters`` flow and a cluster's own flow run
(``flows.cluster``)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future
from contextlib import AbstractContextManager, ExitStack
from typing import Any, cast

from prefect import unmapped
from prefect.exceptions import TerminationSignal
from prefect.futures import as_completed
from prefect.runtime import flow_run as runtime_flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from prefect_work_clusters.tasks.agents.call import agent_for
from prefect_work_clusters.tasks.agents.guard import restore_base, restore_refs
from prefect_work_clusters.tasks.agents.limits import RunSlots, run_slots
from prefect_work_clusters.tasks.agents.progress import ClusterProgress
from prefect_work_clusters.tasks.agents.run_agent import run_agent
from prefect_work_clusters.tasks.checks import containment
from prefect_work_clusters.tasks.checks.user_side import CheckoutState
from prefect_work_clusters.tasks.context import ClusterRecord, RunContext, load_record
from prefect_work_clusters.tasks.proc import interrupt
from prefect_work_clusters.tasks.recovery import stop_agents
from prefect_work_clusters.tasks.worktrees import Prepared


def run_agents(ctx: RunContext, prepared: Prepared, checkout: Future[CheckoutState] | None = None,
               slots: RunSlots | None = None) -> list[ClusterRecord]:
    """Run every unfinished cluster's agent, at most ``limits.concurrency`` at once; take each as it
    finishes (after its retries), so one failing cluster never stops the others, and show it in
    the ``progress-<plan>`` artifact. ``checkout``: your checkout's status, read ahead
    (``user_side.read_checkout``). ``slots``: the agents' global slots, taken ahead
    (``agents_slots``); else taken here."""
    records = {r.cluster: r for r in prepared.records}
    pending = prepared.pending()
    with ExitStack() as stack:
        if slots is None:
            slots = stack.enter_context(agents_slots(ctx, pending))
        slots.fit(_slots_wanted(ctx, pending))  # a resumed run's finished clusters run no agent
        prepared.notes.extend(slots.notes)
        # What no agent may change, taken before the first one starts.
        containment.begin(ctx, fresh=True, checkout=checkout)
        # A cluster's own flow run (flows.cluster) holds that one cluster's record only.
        progress = ClusterProgress(str(runtime_flow_run.id), ctx.plan.name, pending,
                                   [c.name for c in ctx.plan.clusters if c.name not in pending and c.name in records])
        try:
            if pending:
                _map_agents(ctx, pending, records, progress)
        finally:
            progress.close()  # its last picture written, its writer stopped
    restored, notes = restore_refs(ctx, [records[c.name] for c in ctx.plan.clusters if c.name in records])
    prepared.notes.extend(notes + restore_base(ctx, prepared.base_sha, restored))
    return restored


def agents_slots(ctx: RunContext, clusters: list[str]) -> AbstractContextManager[RunSlots]:
    """The global slots of the backends of ``clusters``' agents (``tasks.agents.limits``), held for
    the run's agents phase."""
    return run_slots(str(runtime_flow_run.id), _slots_wanted(ctx, clusters), ctx.runs_dir / "slots.json")


def _slots_wanted(ctx: RunContext, clusters: list[str]) -> dict[str, int]:
    """The global slots the agents of ``clusters`` need at once: per backend, its agents, at most
    the run's own ``limits.concurrency``."""
    workers = min(ctx.plan.limits.concurrency, len(clusters))
    backends = Counter(agent_for(ctx, ctx.plan.cluster(name).agent).name for name in clusters)
    return {b: min(n, workers) for b, n in backends.items() if workers}


def _map_agents(ctx: RunContext, pending: list[str], records: dict[str, ClusterRecord],
                progress: ClusterProgress) -> None:
    """The mapped ``run-agent`` task over ``pending``; ``records`` updated as each one finishes."""
    retries = max(
        (a.retries if a.retries is not None else ctx.plan.limits.retries)
        for a in (agent_for(ctx, ctx.plan.cluster(name).agent) for name in pending)
    )
    agent_task = run_agent.with_options(retries=retries)
    runner: ThreadPoolTaskRunner[Any]
    with interrupt.stopping(lambda: stop_agents(ctx)), \
            ThreadPoolTaskRunner(max_workers=min(ctx.plan.limits.concurrency, len(pending))) as runner:
        # cast: mypy picks the coroutine overload of map() for a sync task. quote(): Prefect would
        # otherwise walk the whole context (the plan, every cluster) looking for futures, per task run.
        futures: list[Any] = runner.map(cast(Any, agent_task), {"ctx": quote(unmapped(ctx)), "cluster": pending})
        names = {id(f): name for name, f in zip(pending, futures, strict=True)}
        try:
            for future in as_completed(futures):  # after its retries; a failure never stops the others
                name = names[id(future)]
                records[name] = _outcome(ctx, name, future, records[name])
                progress.settle(name, records[name].status, records[name].cost_usd)
        except TerminationSignal:
            # Prefect turns a SIGTERM during a flow run into this exception, in this thread; the
            # pool's exit would wait for every agent. Stop them and end as an interrupted run.
            interrupt.request()
    if interrupt.requested():
        records.update({n: load_record(ctx, n) or records[n] for n in pending if records[n].status == "pending"})


def _outcome(ctx: RunContext, name: str, future: Any, before: ClusterRecord) -> ClusterRecord:
    """A cluster's record once its task run is final: the result, else the record it saved."""
    future.wait()  # sets the future's final state; without it ``state`` asks the API, which may lag
    if future.state.is_completed():
        record: ClusterRecord = future.result()
        return record
    record = load_record(ctx, name) or before
    if record.status in ("pending", "succeeded"):
        record = record.model_copy(update={"status": "failed", "error": future.state.message})
    return record
