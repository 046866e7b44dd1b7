"""Limits that span flow runs: one Prefect global concurrency limit per agent backend.

``limits.concurrency`` caps the agents of one run. Several runs at once (a schedule firing while
someone triggers a plan from the UI) would still add up, so every agent attempt also holds a
slot of ``agents-<backend>`` (``agents-claude``, ``agents-command``, ...). The limit is created
the first time a backend runs, with ``DEFAULT_SLOTS`` slots or the run's ``limits.concurrency`` if
that is higher (a limit made by the first run must not throttle that very run: an agent waiting
for a slot polls the server, which costs seconds); change it with
``prefect gcl update agents-claude --limit 8``, or create it beforehand with your own value.

A run takes the slots its agents need for its whole agents phase, at once (``run_slots``), and
shares them among its agents. A slot is a lease the server renews; a real server expires the
lease of a killed run, Prefect's temporary server (which dies with the run) cannot, so the run
records what it holds and the next run releases it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from prefect import get_run_logger
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.responses import ConcurrencyLimitWithLeaseResponse, GlobalConcurrencyLimitResponse

# Prefect's own events of a concurrency limit's slots taken and given back, as its ``concurrency`` emits them.
from prefect.concurrency._events import emit_concurrency_acquisition_events, emit_concurrency_release_events
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.logging import get_logger
from prefect.settings import PREFECT_API_URL

from prefect_work_clusters.tasks import busy_api
from prefect_work_clusters.tasks.context import RunContext, write_json_atomic
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.proc import interrupt
from prefect_work_clusters.tasks.recovery import read_json

DEFAULT_SLOTS = 16
SLOT_WAIT_SECONDS = 600.0  # then one line saying how to free them, rather than waiting for good
# Prefect renews a lease at 3/4 of it; a run whose machine died frees its slots once the lease
# runs out (and the server's repossessor, every 15 s, sees it): 60 s rather than Prefect's 300 s,
# so that the crashed cluster's next flow run does not wait five minutes for its own slot.
LEASE_SECONDS = 60.0
RENEW_EVERY = LEASE_SECONDS * 0.75  # Prefect's own fraction
_creating = threading.Lock()
_shares: dict[tuple[str, str], threading.BoundedSemaphore] = {}  # (flow run, backend) -> the run's slots
# The API of the temporary server the CLI started itself (flows/startup.py): like Prefect's own, it
# dies with the run, so a killed run's slots there are the next run's to release.
temporary_api_urls: set[str] = set()


def limit_name(backend: str) -> str:
    """The global concurrency limit of a backend: ``limit_name("claude") == "agents-claude"``."""
    return f"agents-{backend}"


def ensure_limit(name: str, slots: int = DEFAULT_SLOTS) -> GlobalConcurrencyLimitResponse:
    """Create the limit ``name`` with ``slots`` slots unless it exists; an existing one is kept
    as it is (its value is the user's to tune). Returns it as the server has it now."""
    # One run's agents start together: without the lock each would try to create the limit, and
    # the server logs every refused duplicate as an error.
    with _creating, get_client(sync_client=True) as client:
        try:
            return client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
            except ObjectAlreadyExists:
                pass  # another run created it meanwhile
            return client.read_global_concurrency_limit_by_name(name)


class SlotsBusy(WorkClustersError):
    """A run waited ``SLOT_WAIT_SECONDS`` for its agents' slots and gave up."""


@contextmanager
def run_slots(flow_run: str, wanted: dict[str, int], record: Path | None = None) -> Iterator[RunSlots]:
    """Hold, for one run's agents, slots of each backend's global limit: ``wanted`` maps a
    backend to the agents of it the run would run at once (``RunSlots.fit`` gives back what it
    turns out not to need). Asked for once per run, not per agent: on the local SQLite server
    concurrent acquisitions collide and each retry costs seconds. The run gets at most the
    limit's size; its agents share what it got through ``agent_slot``.

    ``record`` (the run's ``slots.json``) says what the run holds while it holds it, so that the
    next run can release what a killed one left (``release_left_slots``, done here first); the
    body gets the notes of that. A wait is logged, and given up after ``SLOT_WAIT_SECONDS``."""
    notes = release_left_slots(record) if record is not None else []
    logger = get_run_logger()
    for note in notes:
        logger.warning(note)
    with get_client(sync_client=True) as client:  # the flow run's own, connected already
        slots = RunSlots(flow_run, client, record, notes)
        try:
            slots.take(wanted)
            yield slots
        finally:
            for backend in list(slots.leases):
                slots.give_back(backend)
    if record is not None:
        record.unlink(missing_ok=True)


@dataclass
class RunSlots:
    """The global slots one run holds for its agents (``run_slots``), a lease per backend."""

    flow_run: str
    client: SyncPrefectClient
    record: Path | None
    notes: list[str]
    leases: dict[str, _Lease] = field(default_factory=dict)

    def take(self, wanted: dict[str, int]) -> None:
        logger = get_run_logger()
        for backend, count in sorted(wanted.items()):
            name = limit_name(backend)
            limit = ensure_limit(name, max(DEFAULT_SLOTS, count))
            take = max(1, min(count, limit.limit))
            started = time.monotonic()
            if limit.active_slots + take > limit.limit:
                logger.warning("waiting for %d slot(s) of %s: %d of %d taken by other runs (or by killed runs on a "
                               "server this run cannot clean); giving up after %.0f s", take, name,
                               limit.active_slots, limit.limit, SLOT_WAIT_SECONDS)
            self.leases[backend] = _Lease(self.client, name, take)
            self._write_record()
            waited = time.monotonic() - started
            if waited > 1 or take < count:
                logger.info("%s: %d slot(s) for %d agent(s), after %.1f s", name, take, count, waited)
            _shares[(self.flow_run, backend)] = threading.BoundedSemaphore(take)

    def fit(self, wanted: dict[str, int]) -> None:
        """Before any agent starts: give back the slots the run turns out not to need (a resumed
        run whose finished clusters run no agent), and take the fewer it does need."""
        for backend in list(self.leases):
            need = wanted.get(backend, 0)
            if need < self.leases[backend].take:
                self.give_back(backend)
                if need:
                    self.take({backend: need})

    def give_back(self, backend: str) -> None:
        _shares.pop((self.flow_run, backend), None)
        self.leases.pop(backend).release()
        self._write_record()

    def _write_record(self) -> None:
        if self.record is not None:
            write_json_atomic(self.record, {"pid": os.getpid(), "create_time": psutil.Process().create_time(),
                                            "api_url": _lasting_api_url(),
                                            "slots": {lease.name: lease.take for lease in self.leases.values()}})


class _Lease:
    """``take`` slots of the limit ``name``, on a lease renewed at 3/4 of its length, as Prefect's
    ``concurrency`` holds them (with its events), but through the run's own client: ``concurrency``
    makes a client of its own for the acquisition and another for the release (a TLS context each,
    even for an http API), measured 0.2-0.6 s and 0.08 s in a flow against 0.02 s each here. A wait
    follows the server's Retry-After; after ``SLOT_WAIT_SECONDS`` it ends in ``SlotsBusy``. A
    renewal that fails (a server restart) is logged, and the agents go on."""

    def __init__(self, client: SyncPrefectClient, name: str, take: int) -> None:
        self.client, self.name, self.take = client, name, take
        deadline = time.monotonic() + SLOT_WAIT_SECONDS
        body = {"names": [name], "slots": take, "mode": "concurrency", "lease_duration": LEASE_SECONDS}
        while True:
            response = busy_api.post(client, "/v2/concurrency_limits/increment-with-lease", body)
            if response.status_code != 423:  # 423 Locked: no free slots yet
                response.raise_for_status()
                break
            pause = float(response.headers.get("Retry-After", 1.0))
            if time.monotonic() + pause > deadline:
                raise SlotsBusy(_busy_message(name, take))
            if interrupt.sleep(pause):  # the user stopped the run while it waited: no agent has started
                raise SlotsBusy(f"interrupted while waiting for {take} slot(s) of {name}; no agent had started")
        granted = ConcurrencyLimitWithLeaseResponse.model_validate(response.json())
        if not granted.limits:  # deleted since ensure_limit made sure of it
            raise WorkClustersError(f"the global concurrency limit {name} was deleted while the run took its slots; "
                                    "run the plan again (it creates the limit anew)")
        self.lease_id, self.limits = granted.lease_id, granted.limits
        self.events = emit_concurrency_acquisition_events(granted.limits, take)
        self.stop = threading.Event()
        threading.Thread(target=self._renew, name=f"wc-lease-{name}", daemon=True).start()

    def _renew(self) -> None:
        while not self.stop.wait(RENEW_EVERY):
            try:
                self.client.renew_concurrency_lease(lease_id=self.lease_id, lease_duration=LEASE_SECONDS)
            except Exception as exc:  # noqa: BLE001 - the server's trouble (a restart lost the lease: 410)
                get_logger("work-clusters").warning("could not renew the agents' slot lease of %s (%s); the next "
                                                    "try is in %.0f s", self.name, exc, RENEW_EVERY)

    def release(self) -> None:
        self.stop.set()
        busy_api.post(self.client, "/v2/concurrency_limits/decrement-with-lease", {"lease_id": str(self.lease_id)})
        emit_concurrency_release_events(self.limits, self.take, self.events)


def _lasting_api_url() -> str | None:
    """The API this run uses when it outlives the run (a server's leases expire by themselves)."""
    url = PREFECT_API_URL.value()
    return url if url and url not in temporary_api_urls else None


def release_left_slots(record: Path) -> list[str]:
    """Release the slots a killed earlier run recorded in ``record``, and say so.

    Prefect's temporary server keeps slot leases in memory: the slots of a run killed with its
    server are counted as taken for good (measured: one killed 3-cluster run left 3 of 16 taken,
    five left none). On a real server their lease expires by itself, so they are left to it."""
    data = read_json(record)
    if not data:
        return []
    pid, slots = data.get("pid"), data.get("slots")
    if _alive(pid, data.get("create_time")) or not isinstance(slots, dict):
        return []
    notes: list[str] = []
    if data.get("api_url"):
        notes.append(f"an earlier run (pid {pid}) was killed holding slots {slots} on {data['api_url']}; "
                     f"that server frees them when their lease expires (at most {LEASE_SECONDS:.0f} s)")
    else:
        with get_client(sync_client=True) as client:
            for name, count in slots.items():
                client.release_concurrency_slots(names=[name], slots=int(count), occupancy_seconds=1.0)
                notes.append(f"released {count} slot(s) of {name} that an earlier run (pid {pid}) still held "
                             "when it was killed")
    record.unlink(missing_ok=True)
    return notes


def _busy_message(name: str, take: int) -> str:
    return (f"gave up after {SLOT_WAIT_SECONDS:.0f} s waiting for {take} slot(s) of the global concurrency limit "
            f"{name}; see who holds them with 'prefect gcl inspect {name}'; if no run is using them, free them "
            f"with 'prefect gcl update {name} --active-slots 0', or raise the limit with "
            f"'prefect gcl update {name} --limit N'")


def _alive(pid: object, create_time: object) -> bool:
    if not isinstance(pid, int) or not isinstance(create_time, float):
        return False
    try:
        return abs(psutil.Process(pid).create_time() - create_time) < 0.01
    except psutil.Error:
        return False


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
