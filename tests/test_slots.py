"""Global concurrency slots never leak and waits are never silent (issue 21).

Before the fix a run killed with its temporary Prefect server left its slots taken for good (the
server keeps leases in memory); after about five kills every run waited forever, printing
nothing. Each killed run here is a real process that takes slots and records them as a run does,
then is SIGKILLed, leaving on the server exactly what a dead temporary server leaves: slots
counted as active that no lease will ever free."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import PREFECT_API_URL

from prefect_work_clusters.tasks.agents import limits
from prefect_work_clusters.tasks.proc import interrupt

KILLED_RUN = """
import json, os, sys, time
import psutil
from pathlib import Path
from prefect.client.orchestration import get_client
from prefect_work_clusters.tasks.agents.limits import release_left_slots
record = Path(sys.argv[1])
release_left_slots(record)  # what the run's recovery does first
with get_client(sync_client=True) as client:
    client.increment_concurrency_slots(names=[sys.argv[2]], slots=3, mode="concurrency")
record.write_text(json.dumps({"pid": os.getpid(), "create_time": psutil.Process().create_time(),
                              "api_url": None, "slots": {sys.argv[2]: 3}}))
print("holding", flush=True)
time.sleep(600)
"""


def active(name: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(name).active_slots


def kill_a_run(record: Path, name: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(record), name], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())})
    assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@flow
def take_slots(record: str, wanted: int) -> tuple[list[str], float]:
    started = time.monotonic()
    with limits.run_slots("slot-test", {"slotleak": wanted}, Path(record)) as slots:
        assert json.loads(Path(record).read_text())["slots"] == {"agents-slotleak": wanted}
        return slots.notes, time.monotonic() - started


@flow
def fitted(record: str) -> list[tuple[int, dict[str, int]]]:
    """Slots taken for a whole plan, then fitted to the clusters a resumed run still runs."""
    def held() -> int:
        return active("agents-slotfit") + active("agents-slotgone")

    seen = []
    with limits.run_slots("slot-fit", {"slotfit": 4, "slotgone": 2}, Path(record)) as slots:
        seen.append((held(), json.loads(Path(record).read_text())["slots"]))
        slots.fit({"slotfit": 1})
        seen.append((held(), json.loads(Path(record).read_text())["slots"]))
        slots.fit({"slotfit": 3})  # never more than it took: what it holds is enough
        seen.append((held(), json.loads(Path(record).read_text())["slots"]))
    seen.append((held(), {}))
    return seen


@contextmanager
def held_elsewhere(name: str, slots: int) -> Iterator[None]:
    """``slots`` of the limit ``name`` held meanwhile by someone the run knows nothing of."""
    limits.ensure_limit(name, slots)
    with get_client(sync_client=True) as client:
        client.increment_concurrency_slots(names=[name], slots=slots, mode="concurrency")
    try:
        yield
    finally:
        with get_client(sync_client=True) as client:
            client.release_concurrency_slots(names=[name], slots=slots, occupancy_seconds=1.0)


@flow
def busy(record: str) -> None:
    with limits.run_slots("slot-busy", {"slotbusy": 1}, Path(record)):
        pass


def test_five_killed_runs_leak_nothing_and_the_next_run_starts_at_once(tmp_path: Path, prefect_harness: None) -> None:
    name = limits.limit_name("slotleak")
    limits.ensure_limit(name, 4)
    record = tmp_path / "slots.json"
    for _ in range(5):
        kill_a_run(record, name)
    assert active(name) == 3  # each run released what the one before left; the last one's 3 remain
    notes, waited = take_slots(str(record), 4)
    assert notes == [f"released 3 slot(s) of {name} that an earlier run (pid "
                     f"{notes[0].split('pid ')[1].split(')')[0]}) still held when it was killed"]
    assert waited < 30  # not the forever of before; on an idle machine well under a second
    assert active(name) == 0 and not record.exists()


def test_a_wait_for_slots_is_logged_and_bounded(tmp_path: Path, prefect_harness: None,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    name = limits.limit_name("slotbusy")
    monkeypatch.setattr(limits, "SLOT_WAIT_SECONDS", 2.0)
    with held_elsewhere(name, 2), pytest.raises(limits.SlotsBusy) as caught:
        busy(str(tmp_path / "slots.json"))
    message = str(caught.value)
    assert message.startswith(f"gave up after 2 s waiting for 1 slot(s) of the global concurrency limit {name}")
    assert f"prefect gcl inspect {name}" in message and f"prefect gcl update {name} --active-slots 0" in message
    assert f"waiting for 1 slot(s) of {name}: 2 of 2 taken" in caplog.text


def test_a_run_gives_back_the_slots_its_finished_clusters_do_not_need(tmp_path: Path, prefect_harness: None) -> None:
    record = tmp_path / "slots.json"
    assert fitted(str(record)) == [(6, {"agents-slotfit": 4, "agents-slotgone": 2}),
                                   (1, {"agents-slotfit": 1}),
                                   (1, {"agents-slotfit": 1}),
                                   (0, {})]
    assert not record.exists()


@flow
def hold_a_while(record: str) -> UUID:
    with limits.run_slots("slot-renew", {"slotrenew": 1}, Path(record)) as slots:
        time.sleep(1.5)  # several renewals' worth
        return slots.leases["slotrenew"].lease_id


def test_the_lease_is_renewed_while_held_and_no_more_after(tmp_path: Path, prefect_harness: None,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    renewed: list[UUID] = []
    real = SyncPrefectClient.renew_concurrency_lease

    def counted(self: SyncPrefectClient, lease_id: UUID, lease_duration: float) -> Any:
        renewed.append(lease_id)
        return real(self, lease_id=lease_id, lease_duration=lease_duration)  # the real server answers

    monkeypatch.setattr(SyncPrefectClient, "renew_concurrency_lease", counted)
    monkeypatch.setattr(limits, "RENEW_EVERY", 0.2)
    lease = hold_a_while(str(tmp_path / "slots.json"))
    after = len(renewed)
    time.sleep(0.6)
    assert after >= 3 and set(renewed) == {lease}
    assert len(renewed) == after  # the renewal stopped with the hold
    assert "could not renew" not in caplog.text
    assert active(limits.limit_name("slotrenew")) == 0


@flow
def lose_the_lease(record: str) -> str:
    with limits.run_slots("slot-lost", {"slotlost": 1}, Path(record)) as slots:
        with get_client(sync_client=True) as client:  # as a server restart would lose it
            client.release_concurrency_slots_with_lease(slots.leases["slotlost"].lease_id)
        time.sleep(0.6)
        return "the agents went on"


def test_a_lease_the_server_lost_costs_a_warning_and_the_run_goes_on(tmp_path: Path, prefect_harness: None,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(limits, "RENEW_EVERY", 0.2)
    assert lose_the_lease(str(tmp_path / "slots.json")) == "the agents went on"
    assert "could not renew the agents' slot lease of agents-slotlost" in caplog.text and "410" in caplog.text
    assert active(limits.limit_name("slotlost")) == 0 and not (tmp_path / "slots.json").exists()


def test_an_interrupt_ends_a_wait_for_slots_at_once(tmp_path: Path, prefect_harness: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    name = limits.limit_name("slotbusy")
    monkeypatch.setattr(limits, "SLOT_WAIT_SECONDS", 120.0)
    threading.Timer(1.0, interrupt.request).start()  # Ctrl-C while the run waits
    try:
        with held_elsewhere(name, 2), pytest.raises(limits.SlotsBusy) as caught:
            busy(str(tmp_path / "slots.json"))
    finally:
        interrupt.reset()
    assert str(caught.value) == f"interrupted while waiting for 1 slot(s) of {name}; no agent had started"
