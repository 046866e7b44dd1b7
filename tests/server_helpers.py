"""A real Prefect server and its workers for tests: every process in its own session, stopped by
PID at the end (on failure too); flow runs awaited through the client; headless Chromium."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import psutil
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.settings import PREFECT_API_URL, temporary_settings

ROOT = Path(__file__).resolve().parent.parent
PREFECT = str(Path(sys.executable).with_name("prefect"))
GRACE_SECONDS = 10.0
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=20000"]


class Stack:
    """The processes of one test, all in their own sessions, all stopped by PID in ``stop``."""

    def __init__(self, tmp: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.tmp, self.api = tmp, f"http://127.0.0.1:{self.port}/api"
        self.env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect-home"), "PREFECT_API_URL": self.api,
                    "PREFECT_UI_API_URL": self.api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                    "PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_WORKER_QUERY_SECONDS": "1",
                    # a waiting agent asks again within a second rather than after up to 30 s
                    "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "1"}
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.cwd = ROOT

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def finish(self, name: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> str:
        assert proc.wait(timeout=timeout) == 0, f"{name} failed:\n{self.log(name)[-4000:]}"
        return self.log(name)

    def serve_project(self, folder: Path) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
        """A user's own Prefect project in ``folder`` (its own flows/, tasks.py, blocks/) holding our
        prefect.yaml, its server, the process pool ``work-clusters``, one worker on it and ``prefect
        deploy --all``: the worker and the deploy are returned (``finish`` it before triggering)."""
        from tests.conftest import user_project

        self.cwd = user_project(folder)
        shutil.copy(ROOT / "prefect.yaml", self.cwd / "prefect.yaml")
        self.wait_healthy(self.start("server", PREFECT, "server", "start", "--host", "127.0.0.1",
                                     "--port", str(self.port)))
        with get_client(sync_client=True) as client:
            client.create_work_pool(WorkPoolCreate(name="work-clusters", type="process"))
        worker = self.start("worker", PREFECT, "worker", "start", "--pool", "work-clusters")
        return worker, self.start("deploy", PREFECT, "--no-prompt", "deploy", "--all")

    def wait_healthy(self, server: subprocess.Popen[bytes], timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert server.poll() is None, f"server exited:\n{self.log('server')[-4000:]}"
            try:
                with urllib.request.urlopen(f"{self.api}/health", timeout=2) as res:  # noqa: S310 - loopback
                    if res.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"server not healthy after {timeout} s:\n{self.log('server')[-4000:]}")

    def kill(self, proc: subprocess.Popen[bytes]) -> list[int]:
        """SIGKILL ``proc`` and every process under it at once (a machine dying): the PIDs killed."""
        family = _family(proc)
        _signal(family, signal.SIGKILL)
        proc.wait(timeout=10)
        return family

    def stop(self) -> None:
        """SIGINT to all (the worker ignores SIGTERM for long), one grace period for all, then
        SIGKILL; children too."""
        families = []
        for _name, proc in reversed(self.procs):
            family = _family(proc)
            _signal(family, signal.SIGINT)
            families.append((proc, family))
        deadline = time.monotonic() + GRACE_SECONDS
        for proc, family in families:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal(family, signal.SIGKILL)
            proc.wait(timeout=10)


def _family(proc: subprocess.Popen[bytes]) -> list[int]:
    """``proc`` and every process under it."""
    try:
        return [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return [proc.pid]


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@pytest.fixture(name="stack")
def stack_fixture(tmp_path: Path) -> Iterator[Stack]:
    """A ``Stack`` with the client pointed at its server; import ``stack_fixture`` to use it."""
    s = Stack(tmp_path)
    try:
        with temporary_settings(updates={PREFECT_API_URL: s.api}):
            yield s
    finally:
        s.stop()


def wait_final(run_ids: list[UUID], timeout: float = 120) -> dict[UUID, object]:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = {rid: client.read_flow_run(rid) for rid in run_ids}
            if all(r.state and r.state.is_final() for r in runs.values()):
                return dict(runs)
            time.sleep(0.5)
    raise AssertionError(f"flow runs not final after {timeout} s: {[r.state for r in runs.values()]}")


def chromium(stack: Stack, url: str) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]] | None:
    """Headless Chromium dumping the page's DOM (to dom.log) and taking a screenshot, at once;
    None when it is not installed here (never in CI)."""
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        assert not os.environ.get("CI"), "chromium is missing in CI"
        return None
    flags = [exe, *CHROMIUM_FLAGS]
    return (stack.start("dom", *flags, f"--user-data-dir={stack.tmp}/chrome-dom", "--dump-dom", url),
            stack.start("shot", *flags, f"--user-data-dir={stack.tmp}/chrome-shot", "--window-size=1280,1400",
                        f"--screenshot={stack.tmp}/merge-report.png", url))
