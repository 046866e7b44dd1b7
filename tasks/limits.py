"""Limits that span flow runs: one Prefect global concurrency limit per agent backend.

``limits.concurrency`` caps the agents of one run. Several runs at once (a schedule firing while
someone triggers a plan from the UI) would still add up, so every agent attempt also holds a
slot of ``agents-<backend>`` (``agents-claude``, ``agents-command``, ...). The limit is created
with ``DEFAULT_SLOTS`` slots the first time a backend runs; change it with
``prefect gcl update agents-claude --limit 8``, or create it beforehand with your own value.

A slot is a lease the server renews while the agent runs; a killed run frees its slots when the
lease expires.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

from tasks.context import RunContext

DEFAULT_SLOTS = 4
_creating = threading.Lock()


def limit_name(backend: str) -> str:
    """The global concurrency limit of a backend: ``limit_name("claude") == "agents-claude"``."""
    return f"agents-{backend}"


def ensure_limit(name: str, slots: int = DEFAULT_SLOTS) -> None:
    """Create the limit ``name`` with ``slots`` slots unless it exists; an existing one is kept
    as it is (its value is the user's to tune)."""
    # One run's agents start together: without the lock each would try to create the limit, and
    # the server logs every refused duplicate as an error.
    with _creating, get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
            except ObjectAlreadyExists:
                pass  # another run created it meanwhile


@contextmanager
def agent_slot(backend: str) -> Iterator[None]:
    """Hold one slot of the backend's global limit for the duration of the block; wait for one
    when all are taken."""
    name = limit_name(backend)
    ensure_limit(name)
    started = time.monotonic()
    # Renewal failing once (a server restart) must not kill an agent half-way through its work.
    with concurrency(name, occupy=1, strict=True, raise_on_lease_renewal_failure=False):
        waited = time.monotonic() - started
        if waited > 1:
            get_run_logger().info("waited %.1f s for a slot of the %s limit", waited, name)
        yield


def with_cost_cap(ctx: RunContext, cap: float | None) -> RunContext:
    """The run with ``limits.max_cost_usd`` lowered to ``cap`` (an agent block's cost limit)."""
    plan_cap = ctx.plan.limits.max_cost_usd
    if cap is None or (plan_cap is not None and plan_cap <= cap):
        return ctx
    limits = ctx.plan.limits.model_copy(update={"max_cost_usd": cap})
    return ctx.model_copy(update={"plan": ctx.plan.model_copy(update={"limits": limits})})
