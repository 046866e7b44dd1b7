"""The one way to run a subprocess: argv only, own session, our timeout, nothing left behind.

``run_process`` starts the child in its own session (so its process group is ours to signal),
drains stdout and stderr together through one pipe so a full pipe can never block the child,
and enforces the timeout itself: SIGTERM to the group, ``grace`` seconds, then SIGKILL. While
the child runs, its descendants are recorded with psutil, so a descendant that left the group
with ``setsid`` is stopped as well. When the child ends, on time or not, whatever it left
running is stopped the same way. Limit: a descendant that detaches with setsid *and* loses its
parent between two snapshots (about half a second apart) cannot be found without cgroups.

Example::

    result = run_process(["pytest", "-q"], cwd=worktree, env=dict(os.environ), timeout=600,
                         log_path=runs / "logs" / "backend.log", on_line=print)
    if not result.ok:
        ...
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.proc import tree as proctree
from prefect_work_clusters.tasks.proc.output import OutputSink, drain


class MissingExecutable(WorkClustersError):
    """The program to run is not installed, not on PATH, or not executable."""

    def __init__(self, name: str, hint: str) -> None:
        self.name = name
        where = "is not an executable file" if "/" in name else "not found on PATH"
        super().__init__(f"executable {name!r} {where}; {hint}")


class CannotStart(WorkClustersError):
    """The operating system refused to start the program."""


@dataclass(frozen=True)
class ProcessResult:
    """How a process ended.

    ``exit_code`` is None when the process did not exit by itself (it timed out and was killed);
    a negative code means it died of that signal.
    """

    exit_code: int | None
    timed_out: bool
    duration: float
    output_tail: str
    pid: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def find_executable(
    name: str,
    env: Mapping[str, str] | None = None,
    *,
    cwd: Path | None = None,
    hint: str = "install it or give its full path",
) -> str:
    """Return the path that ``name`` runs as under ``env``'s PATH, or raise MissingExecutable.

    A name with a slash is a path (relative to ``cwd``) and must be an executable file.
    """
    if "/" in name:
        path = Path(name) if cwd is None else cwd / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
        raise MissingExecutable(name, hint)
    # os.get_exec_path gives the search path exactly as exec would use it (PATH, or the default).
    found = shutil.which(name, path=os.pathsep.join(os.get_exec_path(env)))
    if found is None:
        raise MissingExecutable(name, hint)
    return found


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float | None,
    log_path: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    grace: float = 5.0,
    stdin_devnull: bool = True,
    hint: str = "install it or give its full path",
    on_start: Callable[[int], None] | None = None,
) -> ProcessResult:
    """Run ``argv`` in ``cwd`` with exactly ``env``; stop it and its descendants after ``timeout``.

    Every byte of output (stdout and stderr, in order of arrival) is appended to ``log_path`` as
    it comes; ``on_line`` gets a bounded, cleaned share of it in batches of lines from a thread
    of its own (``tasks.proc.output``), so a slow callback never slows the child. ``hint``
    finishes the missing-executable message.
    ``on_start`` gets the child's pid (also its process group id) as soon as it runs, so a caller
    can record it and a later run can stop what a killed run left behind.
    Safe to call from many threads at once.
    """
    if not argv:
        raise ValueError("argv is empty")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout}")
    executable = find_executable(argv[0], env, cwd=cwd, hint=hint)
    if not cwd.is_dir():
        raise CannotStart(f"cannot run {argv[0]!r}: working directory {cwd} does not exist")
    sink = OutputSink(log_path, on_line)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            list(argv),
            executable=executable,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL if stdin_devnull else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        sink.close()
        raise _start_error(argv[0], exc) from exc
    assert proc.stdout is not None
    if on_start is not None:
        on_start(proc.pid)
    stop_reading = threading.Event()
    reader = threading.Thread(target=drain, args=(proc.stdout, stop_reading, sink), daemon=True)
    reader.start()
    known: dict[int, psutil.Process] = {}
    timed_out = False
    duration = 0.0
    try:
        timed_out = proctree.wait_exit(proc, known, None if timeout is None else start + timeout)
        duration = time.monotonic() - start
    finally:
        # Also on KeyboardInterrupt or a cancellation raised in this thread: nothing survives us.
        proctree.stop_tree(proc, known, grace)
        stop_reading.set()  # the writers are gone: the reader takes what is left, then stops
        reader.join()
        proc.stdout.close()
        sink.close()
    return ProcessResult(
        exit_code=None if timed_out else proc.returncode,
        timed_out=timed_out,
        duration=duration,
        output_tail=sink.tail(),
        pid=proc.pid,
    )


def _start_error(name: str, exc: OSError) -> CannotStart:
    if exc.errno == errno.E2BIG:
        return CannotStart(
            f"cannot run {name!r}: its command line is too long (one argument may hold at most "
            "128 KiB on Linux); pass long text through a file instead"
        )
    return CannotStart(f"cannot run {name!r}: {exc.strerror or exc}")
