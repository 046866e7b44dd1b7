"""Prefect's temporary server on a busy machine (issue 21): a longer start-up wait unless the user
set one, and one line with what to do (exit 3) when it still does not start. Before the fix a
slow start was `internal error: RuntimeError: Timed out while attempting to connect to
ephemeral Prefect API server`, with a traceback file and "please report it"."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_HOME,
    PREFECT_SERVER_API_PORT,
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    temporary_settings,
)

from prefect_work_clusters.flows.server_process import BOOT_MODULE, TemporaryServer
from prefect_work_clusters.flows.startup import PATIENT_SECONDS, _point_process_at, patient_server, server_line
from tests.conftest import cli, migrated_home
from tests.loop_helpers import made_before_the_flow, shop_repo

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


# The temporary server booted ahead (issue 16): spawned as `run` starts, importing Prefect's server
# package while the CLI checks its input; it serves only once told its port.

def _booted_servers(home: Path) -> str:
    """An agent that writes its cluster's file and records the processes serving Prefect with
    ``home`` as their PREFECT_HOME while it runs."""
    return f"""import os, pathlib, psutil
cluster = os.environ["WC_CLUSTER"]
pathlib.Path(cluster, "impl.py").write_text("NAME = 1\\n")
seen = []
for proc in psutil.process_iter(["cmdline"]):
    try:
        line = " ".join(proc.info["cmdline"] or [])
        if proc.environ().get("PREFECT_HOME") == {str(home)!r} and ("uvicorn" in line or "server_boot" in line):
            seen.append(line)
    except psutil.Error:
        pass
pathlib.Path({str(home.parent)!r}, cluster + "-servers.txt").write_text("\\n".join(seen))
"""


def test_a_run_in_local_mode_is_served_by_the_server_it_booted_ahead(tmp_path: Path, migrated_db: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    home = migrated_home(tmp_path / ".prefect-home", migrated_db)  # where cli() points PREFECT_HOME
    agent = tmp_path / "agent.py"
    agent.write_text(_booted_servers(home))
    res = cli("run", str(plan), "--repo", str(repo), "--agent-cmd", f"{sys.executable} {agent}", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    # Every agent ran while the server booted ahead served the run, and no other server with our
    # home was running: the run did not start a second one, and Prefect did not start its own.
    for cluster in ("api", "ui", "db"):
        [serving] = (tmp_path / f"{cluster}-servers.txt").read_text().splitlines()
        assert serving.endswith(f"-m {BOOT_MODULE}"), serving
    assert not left_running(home)
    # Its worktrees were made while that server started, before the flow run began, and adopted.
    assert made_before_the_flow(repo) == {"api": True, "ui": True, "db": True}


def test_bad_input_stops_the_server_booted_ahead_before_it_touched_anything(tmp_path: Path) -> None:
    repo, _ = shop_repo(tmp_path)
    home = tmp_path / ".prefect-home"
    (tmp_path / "bad.yaml").write_text("name: shop\nclusters: []\n")
    res = cli("run", "bad.yaml", "--repo", str(repo), "--agent-cmd", "true", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    assert not left_running(home)
    assert not home.exists() or not list(home.rglob("*.db")), "no Prefect database was made for bad input"


def test_a_server_booted_ahead_and_given_no_port_exits_having_touched_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", BOOT_MODULE], stdin=subprocess.PIPE,
                            env={**os.environ, "PREFECT_HOME": str(home)})
    assert proc.stdin is not None
    proc.stdin.close()  # the CLI that booted it exited, or died
    assert proc.wait(timeout=300) == 0
    assert not home.exists() or list(home.rglob("*")) == []


def test_a_server_booted_ahead_is_stopped_when_the_environment_changed_since(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    server = TemporaryServer.booted()
    process = server.process
    assert process is not None
    # What it read its settings from changed: it could serve another database, or log elsewhere.
    monkeypatch.setenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    assert not server.serve()
    assert process.poll() is not None and server.process is None
    assert not (tmp_path / "home").exists() or list((tmp_path / "home").rglob("*")) == []


def test_a_server_spawned_once_the_settings_are_read_serves(tmp_path: Path, migrated_db: Path) -> None:
    # The same command as the booted-ahead one, given its port at once (a changed environment,
    # a port taken under a booted server, or no boot ahead), with this process's settings.
    home = migrated_home(tmp_path / "home", migrated_db)
    server = TemporaryServer()
    try:
        with temporary_settings(updates={PREFECT_HOME: home}):
            server.spawn()
        assert server.process is not None and server.process.args[-1] == BOOT_MODULE
        server.wait(PATIENT_SECONDS)  # its health check answers, or this raises
        assert (home / "memo_store.toml").exists()  # it served the database of the settings' home
    finally:
        server.stop()
    assert server.process is None


def test_a_server_booted_ahead_serves_once_given_its_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          migrated_db: Path) -> None:
    home = migrated_home(tmp_path / "home", migrated_db)
    monkeypatch.setenv("PREFECT_HOME", str(home))
    server = TemporaryServer.booted()
    try:
        assert server.serve()
        server.wait(PATIENT_SECONDS)  # its health check answers, or this raises
        # Its settings are the environment's: it registered Prefect's block types in that home's
        # database before it answered, and wrote down that it did, there.
        assert (home / "memo_store.toml").exists()
    finally:
        server.stop()
    assert server.process is None


def test_a_flow_on_the_temporary_server_sends_no_heartbeats_unless_the_user_set_them() -> None:
    """Heartbeats tell a server its flow run lives on; the temporary server dies with the run, and
    Prefect joins the heartbeat thread as the flow ends (up to 1 s)."""
    import prefect.context

    from prefect_work_clusters.tasks.agents import limits

    saved = prefect.context.GLOBAL_SETTINGS_CONTEXT
    server = TemporaryServer()
    server.port = 1
    try:
        assert prefect.context.get_settings_context().settings.flows.heartbeat_frequency == 180  # Prefect's
        assert _point_process_at(server)["flows.heartbeat_frequency"] is None
        assert prefect.context.GLOBAL_SETTINGS_CONTEXT.settings.flows.heartbeat_frequency is None
        with temporary_settings(updates={"flows.heartbeat_frequency": 60}):
            assert "flows.heartbeat_frequency" not in _point_process_at(server)
    finally:
        prefect.context.GLOBAL_SETTINGS_CONTEXT = saved
        limits.temporary_api_urls.discard(server.api_url)


def test_what_the_server_says_while_it_stops_does_not_follow_the_runs_last_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    # A process that speaks as it starts and again as TERM stops it, as Prefect's server does
    # (seen: a database connection reset, with its traceback, after the run's last line).
    speaker = ("import signal, sys, time\n"
               "def bye(*_):\n    sys.stderr.write('Traceback: cut short while stopping\\n'); sys.exit(0)\n"
               "signal.signal(signal.SIGTERM, bye)\n"
               "sys.stderr.write('starting\\n'); sys.stderr.flush()\n"
               "time.sleep(60)\n")
    server = TemporaryServer()
    server.process = subprocess.Popen([sys.executable, "-c", speaker], stderr=subprocess.PIPE)
    server._pass_on_stderr()
    deadline = time.monotonic() + 30
    said = ""
    while "starting" not in said and time.monotonic() < deadline:
        said += capsys.readouterr().err
        time.sleep(0.05)
    assert "starting" in said  # what it says while it runs reaches the user
    process = server.process
    server.stop()
    assert process.returncode == 0  # it did speak while stopping, and exited of itself
    assert server.passing_on is not None
    server.passing_on.join(timeout=5)
    assert "cut short" not in capsys.readouterr().err


def test_no_server_is_booted_ahead_when_the_profiles_name_a_running_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`prefect config set PREFECT_API_URL=...` writes the address into the profiles file: such a
    user's runs would boot a server only to stop it, a core's worth of seconds each time."""
    from prefect_work_clusters.flows import startup

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.delenv("PREFECT_PROFILES_PATH", raising=False)
    monkeypatch.setattr(startup, "_early", None)
    (home / "profiles.toml").write_text('active = "ours"\n[profiles.ours]\n'
                                        'PREFECT_API_URL = "http://127.0.0.1:4200/api"\n')
    startup.boot_ahead(["run", "plan.yaml"])
    assert startup._early is None
    (home / "profiles.toml").write_text('active = "ours"\n[profiles.ours]\nPREFECT_LOGGING_LEVEL = "INFO"\n')
    startup.boot_ahead(["run", "--help"])
    assert startup._early is None  # help only
    startup.boot_ahead(["run", "plan.yaml"])
    booted = startup._early
    try:
        assert booted is not None and booted.booted_in is not None and booted.process is not None
    finally:
        if booted is not None:
            booted.stop()
    assert booted.process is None
