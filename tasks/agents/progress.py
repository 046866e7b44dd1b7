"""Live progress of a run: the ``progress-<plan>`` artifact, updated when each attempt starts and
ends, and the same rows for whoever watches in this process (the CLI's live view).

The artifact's value is the share of clusters done (after their last attempt, succeeded or not);
its description says how many run, retry, failed and succeeded, then one row per cluster with its
attempt, elapsed time and cost. A run with a failed cluster never reads as a plain "100 %": the
headline leads with the failures. Only names, statuses and numbers go in: never output, which
could hold anything an agent printed.

The artifact is written by a thread of its own, the latest picture at most every ``INTERVAL``
seconds: an agent's thread never waits on the API (each update is an HTTP call; 100 instant
agents made 200 of them, one after another, while their agents waited), and an API that fails
costs a warning, never an agent. Watchers in this process see every change at once.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

INTERVAL = 0.5  # seconds between two updates of the artifact
ACTIVE = ("pending", "running", "retrying")
MARKS = {"succeeded": "✅", "failed": "❌", "timed_out": "❌", "cost_exceeded": "❌", "interrupted": "⚠️",
         "running": "⏳", "retrying": "🔁", "pending": "…"}


@dataclass(frozen=True)
class Row:
    """Where one cluster is: ``state`` is a cluster status, or running / retrying / pending."""

    cluster: str
    state: str
    attempt: int = 0
    elapsed: float | None = None
    cost_usd: float | None = None
    earlier: bool = False  # finished in an earlier run of the plan
    since: float | None = None  # time.monotonic() of its first attempt's start: elapsed ticks while active

    def cells(self) -> list[str]:
        """Table cells; what does not apply is left empty."""
        state = f"{MARKS.get(self.state, '')} {self.state.replace('_', ' ')}".strip()
        ticking = self.since is not None and self.state in ACTIVE
        elapsed = time.monotonic() - self.since if ticking and self.since is not None else self.elapsed
        return [self.cluster, state + (" (earlier run)" if self.earlier else ""),
                str(self.attempt) if self.attempt else "",
                f"{elapsed:.0f} s" if elapsed is not None else "",
                f"${self.cost_usd:.2f}" if self.cost_usd is not None else ""]


Watcher = Callable[[list[Row]], None]
_watchers: list[Watcher] = []
_runs: dict[str, ClusterProgress] = {}  # flow run id -> its progress, for the attempts in its threads


def watch(watcher: Watcher) -> Callable[[], None]:
    """Call ``watcher`` with every cluster's row whenever a run in this process moves; returns
    the function that stops it."""
    _watchers.append(watcher)
    return lambda: _watchers.remove(watcher)


def headline(rows: list[Row]) -> str:
    """What the run is doing, failures first.

    >>> headline([Row("a", "failed", 2), Row("b", "succeeded", 1), Row("c", "running", 1)])
    '2 of 3 clusters done: ❌ 1 failed · ✅ 1 succeeded · ⏳ 1 running'
    """
    count = {s: sum(1 for r in rows if _group(r.state) == s) for s in ("failed", "succeeded", "running",
                                                                         "retrying", "pending")}
    done = count["failed"] + count["succeeded"]
    parts = [f"{MARKS[s]} {n} {s}" for s, n in count.items() if n]
    return f"{done} of {len(rows)} clusters done: " + " · ".join(parts)


def _group(state: str) -> str:
    return state if state in (*ACTIVE, "succeeded") else "failed"


def describe(rows: list[Row]) -> str:
    """The artifact's description: the headline, then a row per cluster."""
    table = ["| cluster | state | attempt | elapsed | cost |", "|---|---|---|---|---|"]
    table += ["| " + " | ".join(r.cells()) + " |" for r in rows]
    stamp = time.strftime("%H:%M:%S", time.gmtime())
    return "\n".join([f"**{headline(rows)}**", "", *table, "", f"Updated {stamp} UTC."])


class ClusterProgress:
    """The progress of one run: safe to update from the agents' threads."""

    def __init__(self, flow_run: str, plan: str, pending: list[str], earlier: list[str]) -> None:
        """Publish the artifact: ``pending`` clusters will run, ``earlier`` ones finished before."""
        self.flow_run = flow_run
        self._lock, self._publishing = threading.Lock(), threading.Lock()
        # ``_changed`` counts pictures, ``_written`` the last one the artifact shows; ``_hurry``
        # counts the flushes waiting, for which the writer waits out no interval.
        self._wake, self._changed, self._written, self._closing = threading.Condition(), 0, 0, False
        self._hurry = 0
        self._rows = {n: Row(n, "succeeded", earlier=True) for n in earlier} | {n: Row(n, "pending") for n in pending}
        self._started: dict[str, float] = {}
        # cast: the sync/async dispatching decorator types the result as either
        self.artifact_id = cast(UUID, create_progress_artifact(
            progress=self.percent(), key=f"progress-{plan}", description=describe(self.rows())))
        _runs[flow_run] = self
        self._notify(self.rows())
        # The writer runs in this context: the flow run's client settings, as the first write had.
        self._writer = threading.Thread(target=contextvars.copy_context().run, args=(self._write_loop,),
                                        name=f"progress-{plan}", daemon=True)
        self._writer.start()

    def rows(self) -> list[Row]:
        return list(self._rows.values())

    def percent(self) -> float:
        rows = self.rows()
        done = sum(1 for r in rows if r.state not in ACTIVE)
        return round(100.0 * done / len(rows), 1) if rows else 100.0

    def started(self, cluster: str, attempt: int) -> None:
        """An attempt of ``cluster`` starts."""
        with self._lock:
            first = self._started.setdefault(cluster, time.monotonic())
            self._rows[cluster] = replace(self._rows[cluster], state="running", attempt=attempt,
                                          elapsed=time.monotonic() - first, since=first)
        self._publish()

    def ended(self, cluster: str, status: str, attempt: int, cost_usd: float | None, retrying: bool) -> None:
        """An attempt of ``cluster`` ended with ``status``; ``retrying`` when another one follows."""
        with self._lock:
            first = self._started.get(cluster, time.monotonic())
            self._rows[cluster] = replace(self._rows[cluster], state="retrying" if retrying else status,
                                          attempt=attempt, elapsed=time.monotonic() - first, cost_usd=cost_usd)
        self._publish()

    def settle(self, cluster: str, status: str, cost_usd: float | None) -> None:
        """The cluster's final status, as the flow took it (after its last attempt, or without one)."""
        with self._lock:
            row = self._rows[cluster]
            if row.state == status and row.cost_usd == cost_usd:
                return
            self._rows[cluster] = replace(row, state=status, cost_usd=cost_usd)
        self._publish()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the artifact shows the latest picture; False when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._wake:
            # No waiting out the interval, whether the writer waits now or is writing (a notify alone
            # is lost then, and the flush waited the whole interval: 0.5 s at the end of half the runs).
            self._hurry += 1
            self._wake.notify_all()
            try:
                while self._written < self._changed and self._writer.is_alive():
                    if not self._wake.wait(max(0.0, deadline - time.monotonic())):
                        return False
            finally:
                self._hurry -= 1
        return True

    def close(self) -> None:
        """The last picture written, the writer stopped."""
        _runs.pop(self.flow_run, None)
        self.flush()
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        self._writer.join(timeout=5)

    def _publish(self) -> None:
        with self._publishing:  # in order: an older picture never reaches a watcher after a newer one
            self._notify(self.rows())
        with self._wake:
            self._changed += 1
            self._wake.notify_all()

    def _write_loop(self) -> None:
        warned = False
        while True:
            with self._wake:
                while self._written == self._changed and not self._closing:
                    self._wake.wait()
                if self._written == self._changed:
                    return
                picture = self._changed
            try:  # rows read after the count: the artifact shows at least that picture
                update_progress_artifact(self.artifact_id, progress=self.percent(), description=describe(self.rows()))
            except Exception as exc:  # the API is down or refused: the run goes on without its artifact
                if not warned:
                    logging.getLogger(__name__).warning("the progress artifact could not be updated: %s", exc)
                    warned = True
            with self._wake:
                self._written = picture
                self._wake.notify_all()
                # later changes wait out the interval, unless flushed
                self._wake.wait_for(lambda: self._closing or self._hurry > 0, INTERVAL)

    @staticmethod
    def _notify(rows: list[Row]) -> None:
        for watcher in list(_watchers):
            watcher(rows)


def of_run(flow_run: str) -> ClusterProgress | None:
    """The progress of the flow run ``flow_run`` in this process (None for a task run on its own)."""
    return _runs.get(flow_run)
