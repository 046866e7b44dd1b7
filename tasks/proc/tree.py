"""Process trees: wait for a child, find its descendants, stop them all.

Used by the runner for every process it starts, and to stop an agent's process group that a
killed earlier run left behind (``stop_orphan``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import psutil

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.05  # how often we look for a process's exit where we cannot be told of it (cheap: waitid)
_SNAPSHOT_SECONDS = 0.5  # how often we record descendants (reads /proc)


def wait_exit(proc: subprocess.Popen[bytes], known: dict[int, psutil.Process], deadline: float | None) -> bool:
    """Wait for the child to exit (without reaping it) or for the deadline; True if timed out.
    Told of the exit at once where the kernel can (a pidfd): an agent that ends in 5 ms is not
    waited on for a polling interval (50 ms, in every attempt, agent slot and verify command)."""
    next_snapshot = 0.0
    with _exit_signal(proc.pid) as wait:
        while not _has_exited(proc.pid):
            now = time.monotonic()
            if now >= next_snapshot:
                _snapshot(proc.pid, known)
                next_snapshot = now + _SNAPSHOT_SECONDS
            if deadline is not None and now >= deadline:
                return True
            wait(min(next_snapshot, deadline if deadline is not None else next_snapshot) - now)
    return False


@contextlib.contextmanager
def _exit_signal(pid: int) -> Iterator[Callable[[float], None]]:
    """``wait(seconds)``: returns when ``pid`` (our child) has exited, or after ``seconds``; where
    there is no pidfd (Linux before 5.3, another OS), after at most a polling interval."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd here; or the child is gone already
        yield lambda seconds: time.sleep(min(max(seconds, 0.0), _POLL_SECONDS))
        return
    poller = select.poll()
    poller.register(fd, select.POLLIN)  # readable once the process has terminated (not reaped)

    def wait(seconds: float) -> None:
        poller.poll(max(seconds, 0.0) * 1000)

    try:
        yield wait
    finally:
        os.close(fd)


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the child a zombie, so its pid (our process group id) cannot be reused
    # before we have signalled the group.
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped (SIGCHLD ignored by the host process)
        return True


def _snapshot(pid: int, known: dict[int, psutil.Process]) -> None:
    """Record the child's living descendants, including ones that left its process group."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return
    for child in children:
        known.setdefault(child.pid, child)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for pid in psutil.pids():  # not process_iter: its shared cache is not meant for many threads
        try:
            if pid != pgid and os.getpgid(pid) == pgid:
                members.append(psutil.Process(pid))
        except (OSError, psutil.Error):
            continue
    return members


def stop_tree(proc: subprocess.Popen[bytes], known: dict[int, psutil.Process], grace: float) -> None:
    """SIGTERM the group and every recorded descendant, wait ``grace``, SIGKILL, then reap."""
    if not _has_exited(proc.pid):
        _snapshot(proc.pid, known)
    # The child is at most a zombie until proc.wait() below, so its pid is still the group's id.
    found = {p.pid: p for p in [*known.values(), *group_members(proc.pid)]}
    stragglers = [p for p in found.values() if _alive(p)]
    if not stragglers and _has_exited(proc.pid):
        proc.wait()
        return
    signal_group(proc.pid, signal.SIGTERM)
    for p in stragglers:
        _send(p, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if _has_exited(proc.pid) and not any(_alive(p) for p in stragglers):
            break
        time.sleep(_POLL_SECONDS)
    signal_group(proc.pid, signal.SIGKILL)
    for p in stragglers:
        _send(p, signal.SIGKILL)
    proc.wait()
    # Not psutil.wait_procs: a killed orphan stays a zombie until init reaps it, and some inits never do.
    deadline = time.monotonic() + 2.0
    while any(_alive(p) for p in stragglers) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
    left = [p.pid for p in stragglers if _alive(p)]
    if left:
        log.warning("processes %s started by %s survived SIGKILL", left, proc.args)


def _send(proc: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)  # psutil checks the pid still names the same process


def stop_orphan(pid: int, create_time: float, grace: float = 5.0) -> bool:
    """Stop the process group of ``pid`` if that process still runs and is the one recorded
    (same start time, so a reused pid is never signalled). True if something was stopped."""
    try:
        leader = psutil.Process(pid)
        if abs(leader.create_time() - create_time) > 0.01:
            return False
        members = [leader, *leader.children(recursive=True), *group_members(pid)]
    except psutil.Error:
        members = group_members(pid)
    alive = [p for p in {p.pid: p for p in members}.values() if _alive(p)]
    if not alive:
        return False
    signal_group(pid, signal.SIGTERM)
    for p in alive:
        _send(p, signal.SIGTERM)
    _, left = psutil.wait_procs(alive, timeout=grace)
    signal_group(pid, signal.SIGKILL)
    for p in left:
        _send(p, signal.SIGKILL)
    psutil.wait_procs(left, timeout=2.0)
    return True
