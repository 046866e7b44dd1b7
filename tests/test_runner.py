"""The subprocess runner against real child processes (small Python scripts), no mocks."""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from prefect_work_clusters.tasks.proc import tree as proctree
from prefect_work_clusters.tasks.proc.runner import (
    CannotStart,
    MissingExecutable,
    ProcessResult,
    find_executable,
    run_process,
)

PY = sys.executable


def script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def run(argv: list[str], tmp_path: Path, **kwargs: object) -> ProcessResult:
    return run_process(argv, cwd=tmp_path, env=dict(os.environ), **kwargs)  # type: ignore[arg-type]


def gone(pid: int) -> bool:
    """True when no process with this pid is running (a zombie left for init counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# A grandchild that ignores SIGTERM; with "setsid" it also leaves the process group.
GRANDCHILD = """
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.argv[2] == "setsid":
        os.setsid()
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(60)
"""

PARENT = """
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pids, grandchild = sys.argv[1], sys.argv[2]
    with open(pids, "a") as f:
        f.write(f"{os.getpid()}\\n")
    subprocess.Popen([sys.executable, grandchild, pids, "same-group"])
    subprocess.Popen([sys.executable, grandchild, pids, "setsid"])
    print("started", flush=True)
    time.sleep(60)
"""


def test_timeout_kills_the_whole_tree_including_setsid_escapees(tmp_path: Path) -> None:
    grandchild = script(tmp_path, "grandchild.py", GRANDCHILD)
    parent = script(tmp_path, "parent.py", PARENT)
    pids_file = tmp_path / "pids"

    result = run([PY, str(parent), str(pids_file), str(grandchild)], tmp_path, timeout=1.0, grace=0.5)

    assert result.timed_out
    assert result.exit_code is None
    assert not result.ok
    assert 1.0 <= result.duration < 3.0
    assert "started" in result.output_tail
    pids = [int(line) for line in pids_file.read_text().split()]
    assert len(pids) == 3  # result.pid is the group's leader: the subreaper launcher above the parent
    deadline = time.monotonic() + 2
    while not all(gone(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in pids if not gone(pid)] == []


def test_a_child_that_honours_sigterm_stops_within_the_grace(tmp_path: Path) -> None:
    child = script(tmp_path, "child.py", "import time\nprint('working', flush=True)\ntime.sleep(60)\n")
    started = time.monotonic()

    result = run([PY, str(child)], tmp_path, timeout=1.0, grace=5.0)

    assert result.timed_out and result.exit_code is None
    assert time.monotonic() - started < 4.5  # SIGTERM ended it; the 5 s grace was not spent
    assert gone(result.pid)


def test_background_process_left_in_the_group_is_stopped_after_a_normal_exit(tmp_path: Path) -> None:
    child = script(
        tmp_path,
        "child.py",
        """
        import subprocess, sys
        leftover = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print(leftover.pid, flush=True)
        """,
    )
    started = time.monotonic()

    result = run([PY, str(child)], tmp_path, timeout=30, grace=0.5)

    assert result.ok and not result.timed_out
    assert time.monotonic() - started < 5.0  # the leftover held the pipe; it did not hold us
    leftover = int(result.output_tail.split()[0])
    assert gone(leftover)


@pytest.mark.parametrize("code", [0, 3, 42])
def test_exit_codes_are_passed_through(tmp_path: Path, code: int) -> None:
    result = run([PY, "-c", f"import sys; sys.exit({code})"], tmp_path, timeout=10)

    assert result.exit_code == code
    assert result.ok is (code == 0)
    assert not result.timed_out


def test_an_exit_is_noticed_when_it_happens_not_at_the_next_look(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Looks for the exit and for descendants 60 s apart: a runner that polls would return a
    # minute after the child's exit; one told of it by the kernel (a pidfd) returns at once.
    monkeypatch.setattr(proctree, "_POLL_SECONDS", 60.0)
    monkeypatch.setattr(proctree, "_SNAPSHOT_SECONDS", 60.0)
    started = time.monotonic()
    result = run([PY, "-c", "import time; time.sleep(0.3)"], tmp_path, timeout=120)
    assert result.exit_code == 0 and not result.timed_out
    assert time.monotonic() - started < 30


def test_death_by_signal_is_a_negative_exit_code(tmp_path: Path) -> None:
    result = run([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], tmp_path, timeout=10)

    assert result.exit_code == -9


def test_large_output_on_both_streams_does_not_deadlock_and_keeps_arrival_order(tmp_path: Path) -> None:
    # 5 MB on stdout and 5 MB on stderr, alternating line by line: any reader that drains the
    # two streams separately blocks the child on a full pipe.
    child = script(
        tmp_path,
        "loud.py",
        """
        import sys
        pad = "x" * 1000
        for i in range(10_000):
            stream = sys.stdout if i % 2 == 0 else sys.stderr
            stream.write(f"{i:06d} {pad}\\n")
            stream.flush()
        """,
    )
    log_path = tmp_path / "logs" / "loud.log"
    seen: list[str] = []

    result = run([PY, str(child)], tmp_path, timeout=60, log_path=log_path, on_line=seen.append)

    assert result.ok
    lines = log_path.read_text().splitlines()
    assert [int(line[:6]) for line in lines] == list(range(10_000))
    assert log_path.stat().st_size == 10_000 * 1008
    shown = "\n".join(seen).replace("\n    ", "\n").splitlines()
    head = shown[:shown.index(next(x for x in shown if x.startswith("[... ")))]
    assert head == lines[:len(head)] and 60 <= len(head) <= 70  # the first 64 KB, then only the end
    assert shown[-5:] == lines[-5:]  # and the last 8 KB
    assert len(result.output_tail) == 4000 and result.output_tail.endswith("x\n")


def test_on_line_gets_the_lines_in_batches_and_the_log_is_appended(tmp_path: Path) -> None:
    log_path = tmp_path / "agent.log"
    log_path.write_text("earlier attempt\n")
    seen: list[str] = []
    code = "import sys; print('one', flush=True); print('two', file=sys.stderr, flush=True); sys.stdout.write('three')"

    result = run([PY, "-c", code], tmp_path, timeout=10, log_path=log_path, on_line=seen.append)

    assert result.ok
    assert "\n".join(seen) == "one\n    two\n    three"  # one batch; lines after the first indented
    assert log_path.read_text() == "earlier attempt\none\ntwo\nthree"
    assert result.output_tail == "one\ntwo\nthree"


def test_a_failing_callback_does_not_stop_the_draining(tmp_path: Path) -> None:
    def broken(line: str) -> None:
        raise RuntimeError("bug in callback")

    result = run([PY, "-c", "print('a\\n' * 100_000)"], tmp_path, timeout=30, on_line=broken)

    assert result.ok


def test_stdin_is_empty(tmp_path: Path) -> None:
    result = run([PY, "-c", "import sys; print(repr(sys.stdin.read()))"], tmp_path, timeout=10)

    assert result.output_tail == "''\n"


def test_missing_executable_raises_before_anything_starts(tmp_path: Path) -> None:
    log_path = tmp_path / "never.log"

    with pytest.raises(MissingExecutable, match="'no-such-cli' not found on PATH; install it or pass --agent-cmd"):
        run(["no-such-cli", "-p", "x"], tmp_path, timeout=10, log_path=log_path, hint="install it or pass --agent-cmd")
    assert not log_path.exists()


def test_find_executable_uses_the_given_path_and_checks_paths_with_a_slash(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "mytool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    plain = tmp_path / "plain.sh"
    plain.write_text("#!/bin/sh\n")

    assert find_executable("mytool", {"PATH": str(bin_dir)}) == str(tool)
    with pytest.raises(MissingExecutable):
        find_executable("mytool", {"PATH": str(tmp_path)})
    assert find_executable("bin/mytool", {}, cwd=tmp_path) == str(tool)
    with pytest.raises(MissingExecutable, match="is not an executable file"):
        find_executable("./plain.sh", {}, cwd=tmp_path)


def test_bad_working_directory_or_oversized_argument_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CannotStart, match="does not exist"):
        run_process([PY, "-c", "pass"], cwd=tmp_path / "nope", env=dict(os.environ), timeout=10)
    with pytest.raises(CannotStart, match="too long"):
        run([PY, "-c", "pass", "x" * 300_000], tmp_path, timeout=10)


def test_many_threads_at_once(tmp_path: Path) -> None:
    child = script(
        tmp_path,
        "worker.py",
        """
        import sys, time
        for n in range(200):
            print(f"{sys.argv[1]}:{n}")
        time.sleep(0.2)
        sys.exit(int(sys.argv[1]))
        """,
    )
    results: dict[int, ProcessResult] = {}

    def work(i: int) -> None:
        results[i] = run([PY, str(child), str(i)], tmp_path, timeout=30, log_path=tmp_path / f"{i}.log")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == list(range(8))
    for i, result in results.items():
        assert result.exit_code == i
        assert (tmp_path / f"{i}.log").read_text().splitlines() == [f"{i}:{n}" for n in range(200)]
