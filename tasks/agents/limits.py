"""Limits that span flow runs: one Prefect global concurrency limit per agent backend.

``limits.concurrency`` caps the agents of one run. Several runs at once (a schedule firing while
someone triggers a plan from the UI) would still add up, so every agent attempt also holds a
slot of ``agents-<backend>`` (``agents-claude``, ``agents-command``, ...). The limit is created
the first time a backend runs, with ``DEFAULT_SLOTS`` slots or the run's ``limits.concurrency`` if
that is higher (a limit made by the first run must not throttle that very run: an agent waiting
for a slot polls the server, which costs seconds); change it with
``prefect gcl update agents-claude --limit 8``, or create it beforehand with your own value.

A run takes the slots its agents need for its whole agents phase, at once (``run_slots``), and
shares them among its agents; a slot is a lease the server renews, and a killed run frees its
slots when the lease expires.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from prefect_work_clusters.tasks.context import RunContext

DEFAULT_SLOTS = 16
_creating = threading.Lock()
_shares: dict[tuple[str, str], threading.BoundedSemaphore] = {}  # (flow run, backend) -> the run's slots


def limit_name(backend: str) -> str:
    """The global concurrency limit of a backend: ``limit_name("claude") == "agents-claude"``."""
    return f"agents-{backend}"


def ensure_limit(name: str, slots: int = DEFAULT_SLOTS) -> int:
    """Create the limit ``name`` with ``slots`` slots unless it exists; an existing one is kept
    as it is (its value is the user's to tune). Returns its size."""
    # One run's agents start together: without the lock each would try to create the limit, and
    # the server logs every refused duplicate as an error.
    with _creating, get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name).limit
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
            except ObjectAlreadyExists:
                pass  # another run created it meanwhile
            return client.read_global_concurrency_limit_by_name(name).limit


@contextmanager
def run_slots(flow_run: str, wanted: dict[str, int]) -> Iterator[None]:
    """Hold, for one run's agents phase, slots of each backend's global limit: ``wanted`` maps a
    backend to the agents of it the run would run at once. Asked for once per run, not per agent:
    on the local SQLite server concurrent acquisitions collide and each retry costs seconds. The
    run gets at most the limit's size; its agents share what it got through ``agent_slot``."""
    with ExitStack() as stack:
        for backend, count in sorted(wanted.items()):
            name = limit_name(backend)
            size = ensure_limit(name, max(DEFAULT_SLOTS, count))
            take = max(1, min(count, size))
            started = time.monotonic()
            # Renewal failing once (a server restart) must not kill the agents half-way through.
            stack.enter_context(concurrency(name, occupy=take, strict=True, raise_on_lease_renewal_failure=False))
            waited = time.monotonic() - started
            if waited > 1 or take < count:
                get_run_logger().info("%s: %d slot(s) for %d agent(s), after %.1f s", name, take, count, waited)
            _shares[(flow_run, backend)] = threading.BoundedSemaphore(take)
        try:
            yield
        finally:
            for backend in wanted:
                _shares.pop((flow_run, backend), None)


@contextmanager
def agent_slot(flow_run: str, backend: str) -> Iterator[None]:
    """One of the slots ``run_slots`` holds for this run's agents of ``backend``, for one attempt.
    Outside such a run (a task called on its own) there is nothing to share, and no limit."""
    share = _shares.get((flow_run, backend))
    if share is None:
        yield
        return
    with share:
        yield


def with_cost_cap(ctx: RunContext, cap: float | None) -> RunContext:
    """The run with ``limits.max_cost_usd`` lowered to ``cap`` (an agent block's cost limit)."""
    plan_cap = ctx.plan.limits.max_cost_usd
    if cap is None or (plan_cap is not None and plan_cap <= cap):
        return ctx
    limits = ctx.plan.limits.model_copy(update={"max_cost_usd": cap})
    return ctx.model_copy(update={"plan": ctx.plan.model_copy(update={"limits": limits})})
