"""Prefect's temporary server on a busy machine (issue 21): a longer start-up wait unless the user
set one, and one line with what to do (exit 3) when it still does not start. Before the fix a
slow start was `internal error: RuntimeError: Timed out while attempting to connect to
ephemeral Prefect API server`, with a traceback file and "please report it"."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_SERVER_API_PORT,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

from prefect_work_clusters.flows.startup import PATIENT_SECONDS, patient_server, server_line
from tests.conftest import cli
from tests.loop_helpers import shop_repo

pytestmark = pytest.mark.local_mode  # the temporary server's start-up


def test_the_wait_is_raised_only_when_the_user_left_it_alone() -> None:
    assert PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() == 20  # Prefect's default
    with patient_server():
        assert PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() == PATIENT_SECONDS
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 7}), patient_server():
        assert PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() == 7


def left_running(home: Path) -> list[str]:
    """Processes still running with ``home`` as their PREFECT_HOME: a temporary server not stopped."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.environ().get("PREFECT_HOME") == str(home):
                found.append(f"{proc.pid}: {' '.join(proc.info['cmdline'] or [])}")
        except psutil.Error:
            continue
    return found


def test_a_server_that_cannot_start_is_one_line_and_exit_3(tmp_path: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    # The user's own setting wins; 0 s makes the start fail at once, as a loaded machine would.
    res = cli("run", str(plan), "--repo", str(repo), "--agent-cmd", "true", cwd=tmp_path,
              env={"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0"})
    assert res.returncode == 3, res.stdout + res.stderr
    [line] = [x for x in res.stderr.splitlines() if x.startswith("error:")]
    assert "Prefect's temporary server did not start within 0 s" in line
    assert "prefect server start" in line and "PREFECT_API_URL" in line
    assert "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS" in line
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert not (tmp_path / "repo.clusters" / "shop" / ".runs" / "report.json").exists()
    # The CLI started that server itself, before the flow's imports: it is stopped on the way out.
    assert not left_running(tmp_path / ".prefect-home")


def _health_server() -> tuple[ThreadingHTTPServer, int]:
    """Something answering Prefect's health check on a free port, as `prefect server start` would."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the handler's name is http.server's)
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_a_running_server_is_named_with_how_to_use_it_and_never_used_unasked() -> None:
    server, port = _health_server()
    try:
        with temporary_settings(updates={PREFECT_SERVER_API_PORT: port}, restore_defaults={PREFECT_API_URL}):
            assert PREFECT_API_URL.value() is None
            said: list[str] = []
            with patient_server(say=said.append):
                assert PREFECT_API_URL.value() is None  # opt-in only: the run still uses its own
            url = f"http://127.0.0.1:{port}/api"
            assert said == [server_line()] and f"export PREFECT_API_URL={url}" in said[0]
    finally:
        server.shutdown()
        server.server_close()
    with temporary_settings(updates={PREFECT_SERVER_API_PORT: port}, restore_defaults={PREFECT_API_URL}):
        assert server_line() is None  # nobody answers there any more: nothing to say
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:1/api"}):
        assert server_line() == "Prefect: using the server at http://127.0.0.1:1/api (PREFECT_API_URL)"
