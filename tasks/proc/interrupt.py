"""A run's interrupt: the first SIGINT or SIGTERM stops every agent at once; a second exits at once.

Measured before: Ctrl-C while agents ran waited for a sleeping agent (~55 s; with the default
timeout up to 30 minutes) and then died with exit 130 and no report, because the signal became a
``KeyboardInterrupt`` in the main thread while the agents' threads went on waiting for their
processes. Now the signal only sets a flag and runs the registered stoppers (each stops a set of
process trees: TERM, a short grace, KILL) on threads of their own; the agents' attempts return,
each cluster is recorded as interrupted, and the run writes its report and ends with exit 130.

This module imports nothing of ours.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

EXIT_CODE = 130

_requested = threading.Event()
_lock = threading.Lock()
_stoppers: dict[int, Callable[[], None]] = {}
_workers: list[threading.Thread] = []


def requested() -> bool:
    """True once an interrupt was asked for in this process."""
    return _requested.is_set()


def sleep(seconds: float) -> bool:
    """Wait ``seconds``, or less when an interrupt comes; whether one did."""
    return _requested.wait(seconds)


def request() -> None:
    """Ask the run to stop: every registered stopper runs at once, each on its own thread."""
    with _lock:
        if _requested.is_set():
            return
        _requested.set()
        stoppers = list(_stoppers.values())
    for stop in stoppers:
        _start(stop)


def _start(stop: Callable[[], None]) -> None:
    worker = threading.Thread(target=stop, name="interrupt-stop", daemon=True)
    _workers.append(worker)
    worker.start()


def wait_stopped(timeout: float) -> None:
    """Wait until the stoppers started so far have finished (at most ``timeout`` seconds each)."""
    for worker in list(_workers):
        worker.join(timeout)


@contextmanager
def stopping(stop: Callable[[], None]) -> Iterator[None]:
    """While the body runs, an interrupt calls ``stop``; called at once if one came already."""
    key = id(stop)
    with _lock:
        _stoppers[key] = stop
        already = _requested.is_set()
    if already:
        _start(stop)
    try:
        yield
    finally:
        with _lock:
            _stoppers.pop(key, None)


def install(say: Callable[[str], None]) -> None:
    """Handle SIGINT and SIGTERM in this (main) thread's process: the first interrupts the run and
    tells the user with ``say``, the second ends the process at once with ``EXIT_CODE``."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if _requested.is_set():
            sys.stderr.write("interrupted again: exiting now; the next run resumes from the branches\n")
            sys.stderr.flush()
            os._exit(EXIT_CODE)  # noqa: SLF001 - the user asked twice: no clean-up may hold us
        say(f"{signal.Signals(signum).name}: stopping every agent, then writing the report "
            f"(press Ctrl-C again to exit at once)")
        request()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def reset() -> None:
    """Forget an interrupt (for tests that run several flows in one process)."""
    with _lock:
        _requested.clear()
        _workers.clear()
