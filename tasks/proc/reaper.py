"""A launcher that outlives nothing it starts: ``python -I -S reaper.py REPORT GRACE EXE ARGV0 ARGS...``.

It makes itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux), starts the command,
and waits for it. A descendant that double-forks and calls ``setsid`` leaves the process group and
loses its parent, but an orphan is re-parented to the nearest subreaper: to us, not to init. So
once the command has exited, every process still below us is one it left behind: each is sent
SIGTERM, then SIGKILL after ``GRACE`` seconds, and reaped (no zombie is left). Their command lines
go to ``REPORT`` as JSON, and we exit as the command did (same status, or the same signal).

SIGTERM, SIGINT or SIGHUP sent to us (the runner's timeout) is passed to every descendant.

Run by path with ``-I -S`` and the standard library only, so it starts in milliseconds and never
imports the user's or our own packages.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import time
from types import FrameType

PR_SET_CHILD_SUBREAPER = 36
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def descendants(root: int) -> list[int]:
    """Every living process below ``root``, read from ``/proc`` (parents before their children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # the name may hold spaces and parentheses
        if fields[0] != b"Z":  # a zombie is dead already: only reaping is left
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip() or f"pid {pid}"
    except OSError:
        return f"pid {pid}"


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap(block: bool) -> bool:
    """Reap one child; False when there is none left (or, not blocking, none finished)."""
    try:
        pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return False
    return pid != 0


def stop_leftovers(grace: float) -> list[str]:
    """SIGTERM what is still below us, SIGKILL it after ``grace``, reap it all; its command lines."""
    me = os.getpid()
    left = descendants(me)
    names = [_cmdline(pid) for pid in left]
    _signal_all(left, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while descendants(me) and time.monotonic() < deadline:
        while _reap(block=False):
            pass
        time.sleep(0.02)
    deadline = time.monotonic() + 5.0
    while (left := descendants(me)) and time.monotonic() < deadline:
        _signal_all(left, signal.SIGKILL)
        while _reap(block=False):
            pass
        time.sleep(0.02)
    while _reap(block=False):
        pass
    return names


def main(argv: list[str]) -> int:
    report, grace, exe, *args = argv
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"work-clusters reaper: prctl failed ({os.strerror(ctypes.get_errno())}); "
              "orphans of this process are not collected", file=sys.stderr)

    def forward(sig: int, _frame: FrameType | None) -> None:
        _signal_all(descendants(os.getpid()), sig)

    for sig in _FORWARDED:
        signal.signal(sig, forward)
    child = os.fork()
    if child == 0:
        for sig in _FORWARDED:
            signal.signal(sig, signal.SIG_DFL)
        try:
            os.execv(exe, args)
        except OSError as exc:
            print(f"cannot run {args[0]!r}: {exc.strerror}", file=sys.stderr)
        os._exit(127)
    status = 0
    while True:
        pid, st = os.waitpid(-1, 0)  # reaps re-parented orphans as they die, too
        if pid == child:
            status = st
            break
    leftovers = stop_leftovers(float(grace))
    with open(report, "w") as f:
        json.dump({"leftovers": leftovers}, f)
    if os.WIFSIGNALED(status):  # die of the same signal, so the runner sees what the command saw
        died_of = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP cannot be set
            signal.signal(died_of, signal.SIG_DFL)
        os.kill(os.getpid(), died_of)
        return 128 + died_of  # only if the signal cannot kill us
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
