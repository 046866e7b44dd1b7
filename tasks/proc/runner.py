"""The one way to run a subprocess: argv only, own session, our timeout, nothing left behind.

``run_process`` starts the child in its own session (so its process group is ours to signal),
drains stdout and stderr together through one pipe so a full pipe can never block the child,
and enforces the timeout itself: SIGTERM to the group, ``grace`` seconds, then SIGKILL. While
the child runs, its descendants are recorded with psutil, so a descendant that left the group
with ``setsid`` is stopped as well. When the child ends, on time or not, whatever it left
running is stopped the same way.

On Linux the child runs under ``tasks/proc/reaper.py`` (``tasks.proc.launch``), a launcher that is a child subreaper:
a descendant that detaches (double fork + ``setsid``) is re-parented to it rather than to init,
so it is still found, killed and reaped when the command ends, also when it exits 0; its
command line comes back in ``ProcessResult.leftovers``.

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
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.proc import tree as proctree
from prefect_work_clusters.tasks.proc.launch import leftovers, under_launcher
from prefect_work_clusters.tasks.proc.output import OutputSink, drain
from prefect_work_clusters.tasks.proc.sandbox import Sandbox


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
    leftovers: tuple[str, ...] = ()  # command lines of descendants still running when it ended, killed

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
    sandbox: Sandbox | None = None,
) -> ProcessResult:
    """Run ``argv`` in ``cwd`` with exactly ``env``; stop it and its descendants after ``timeout``.

    Every byte of output (stdout and stderr, in order of arrival) is appended to ``log_path`` as
    it comes; ``on_line`` gets a bounded, cleaned share of it in batches of lines from a thread
    of its own (``tasks.proc.output``), so a slow callback never slows the child. ``hint``
    finishes the missing-executable message.
    ``on_start`` gets the child's pid (also its process group id) as soon as it runs, so a caller
    can record it and a later run can stop what a killed run left behind. With ``sandbox`` the
    command runs under bubblewrap (``tasks.proc.sandbox``), with a private temp dir of its own.
    Safe to call from many threads at once.
    """
    if not argv:
        raise ValueError("argv is empty")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout}")
    executable = find_executable(argv[0], env, cwd=cwd, hint=hint)
    if not cwd.is_dir():
        raise CannotStart(f"cannot run {argv[0]!r}: working directory {cwd} does not exist")
    tmp: Path | None = None
    if sandbox is not None:
        tmp = Path(tempfile.mkdtemp(prefix="wc-sandbox-"))
        argv = sandbox.argv(executable, argv, cwd, tmp)
        executable = find_executable(argv[0], env, hint="install bubblewrap or run without the sandbox")
        env = Sandbox.env(env, tmp)
    try:
        return _run(argv, executable, cwd, env, timeout, log_path, on_line, grace, stdin_devnull, on_start)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _run(argv: Sequence[str], executable: str, cwd: Path, env: Mapping[str, str], timeout: float | None,
         log_path: Path | None, on_line: Callable[[str], None] | None, grace: float, stdin_devnull: bool,
         on_start: Callable[[int], None] | None) -> ProcessResult:
    sink = OutputSink(log_path, on_line)
    launch, program, report = under_launcher(argv, executable, grace)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            launch,
            executable=program,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL if stdin_devnull else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        sink.close()
        leftovers(report)
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
        leftovers=leftovers(report),
    )


def _start_error(name: str, exc: OSError) -> CannotStart:
    if exc.errno == errno.E2BIG:
        return CannotStart(
            f"cannot run {name!r}: its command line is too long (one argument may hold at most "
            "128 KiB on Linux); pass long text through a file instead"
        )
    return CannotStart(f"cannot run {name!r}: {exc.strerror or exc}")
