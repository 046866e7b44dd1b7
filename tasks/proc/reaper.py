"""A launcher that outlives nothing it starts: ``python -I -S reaper.py REPORT GRACE EXE ARGV0 ARGS...``.

It makes itself a child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux), starts the command,
and waits for it. A descendant that double-forks and calls ``setsid`` leaves the process group and
loses its parent, but an orphan is re-parented to the nearest subreaper: to us, not to init. So
once the command has exited, every process still below us is one it left behind: each is sent
SIGTERM, then SIGKILL after ``GRACE`` seconds, and reaped (no zombie is left). Their command lines
go to ``REPORT`` (NUL-separated), and we exit as the command did (same status, or the same signal).

SIGTERM, SIGINT or SIGHUP sent to us (the runner's timeout) is passed to every descendant.

Started with ``-I -S`` and importing only ``os``, ``signal``, ``sys``, ``time`` and ``ctypes``
(no json, re or typing: each costs milliseconds per agent start), never the user's or our own
packages; the runner imports it by folder (``LAUNCH``) so its bytecode is cached.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _children(pid: int) -> list[int]:
    """``pid``'s children, from ``/proc/<pid>/task/*/children`` (cheap: no scan of every process)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] != b"Z"  # a zombie is dead already: only reaping is left


def descendants(root: int) -> list[int]:
    """Every living process below ``root`` (parents before their children)."""
    found, todo = [], _children(root)
    while todo:
        pid = todo.pop(0)
        if _alive(pid):
            found.append(pid)
        todo += _children(pid)
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip() or f"pid {pid}"
    except OSError:
        return f"pid {pid}"


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


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
    if not left:
        while _reap(block=False):
            pass
        return []
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

    def forward(sig: int, _frame: object) -> None:
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
        f.write("\0".join(leftovers))
    if os.WIFSIGNALED(status):  # die of the same signal, so the runner sees what the command saw
        died_of = os.WTERMSIG(status)
        try:
            signal.signal(died_of, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL and SIGSTOP cannot be set
            pass
        os.kill(os.getpid(), died_of)
        return 128 + died_of  # only if the signal cannot kill us
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
