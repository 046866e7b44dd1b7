"""The progress artifact's writer (``tasks.agents.progress``): a flush never waits out the
interval between two updates, even when it comes while the writer is writing."""

from __future__ import annotations

import threading
from typing import Any
from uuid import uuid4

import pytest

from prefect_work_clusters.tasks.agents import progress as progress_module
from prefect_work_clusters.tasks.agents.progress import ClusterProgress


def test_a_flush_while_the_writer_writes_does_not_wait_out_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    writing, go_on = threading.Event(), threading.Event()
    written: list[str] = []

    def update(_artifact: Any, progress: float, description: str) -> None:
        writing.set()
        assert go_on.wait(30)
        written.append(description)

    monkeypatch.setattr(progress_module, "INTERVAL", 60.0)  # the old flush waited for it: longer than its timeout
    monkeypatch.setattr(progress_module, "create_progress_artifact", lambda **_: uuid4())
    monkeypatch.setattr(progress_module, "update_progress_artifact", update)
    progress = ClusterProgress("run-flush", "flush", ["ui", "db"], [])
    progress.started("ui", 1)
    assert writing.wait(30)  # the writer is in the middle of an update
    progress.ended("ui", "succeeded", 1, None, retrying=False)  # a newer picture, for after it
    flushed: list[bool] = []
    flusher = threading.Thread(target=lambda: flushed.append(progress.flush(timeout=20)))
    flusher.start()
    go_on.set()  # the update returns; the flush's wake-up came while nobody waited
    flusher.join(30)
    progress.close()
    assert flushed == [True]  # before: False, the writer waiting out its 60 s interval
    assert "1 of 2 clusters done" in written[-1]
