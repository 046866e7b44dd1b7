"""Prefect's temporary server as a process of ours: spawned as Prefect's local mode would spawn it,
or booted ahead and given its port (``flows/server_boot.py``); its health check, its stderr, its
stop. When and why the CLI starts it is ``flows/startup.py``'s.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import suppress

from prefect_work_clusters.tasks.errors import WorkClustersError

SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


# A server on this machine answers its health check in milliseconds; nobody listening is refused
# at once. The limit only bounds a port held by something that never answers.
PROBE_SECONDS = 0.5


def answers(url: str) -> bool:
    """Whether a Prefect API at ``url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=PROBE_SECONDS) as res:  # noqa: S310 (our URL)
            return bool(res.status == 200)
    except (OSError, ValueError, urllib.error.URLError):
        return False


class PrefectUnavailable(WorkClustersError):
    """Prefect's API could not be reached or started: nothing of ours failed."""

    exit_code = 3


# uvicorn's exit status when it cannot bind its port (taken between our check and its start):
# Prefect's own start tries another port then, and so does ours.
_PORT_TAKEN = 3


# What Prefect's SubprocessASGIServer adds to the environment of its server (UI off, ephemeral).
_SERVER_ENV = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
BOOT_MODULE = "prefect_work_clusters.flows.server_boot"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TemporaryServer:
    """The server Prefect's local mode would start (``SubprocessASGIServer``: the same app,
    options, environment and health check), started by this process before Prefect asks for it:
    spawned (``spawn``), or booted ahead and given its port (``booted``, then ``serve``)."""

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        # While booted ahead and not yet given a port: the environment and folder it was booted
        # in, from which it read Prefect's settings.
        self.booted_in: tuple[dict[str, str], str] | None = None
        self.stopping = False
        self.passing_on: threading.Thread | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _start(self, env: dict[str, str]) -> None:
        """The server's one command (``flows/server_boot.py``), waiting on stdin for its port."""
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            [sys.executable, "-m", BOOT_MODULE], env={**env, **_SERVER_ENV}, stdin=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self._pass_on_stderr()

    def _give_port(self) -> bool:
        """A free port to the process, which then serves there; False when it exited already."""
        assert self.process is not None and self.process.stdin is not None  # noqa: S101 - started first
        self.port = _free_port()
        self.started = time.monotonic()
        try:
            self.process.stdin.write(f"{self.port}\n".encode())
            self.process.stdin.close()
        except OSError:  # it exited since
            return False
        return True

    def spawn(self) -> None:
        """Start the server now, with this process's Prefect settings, as Prefect's local mode
        would (the same app, options and environment); an exit is ``wait``'s to report."""
        from prefect.settings import get_current_settings

        self._start({**os.environ, **get_current_settings().to_environment_variables(exclude_unset=True)})
        self._give_port()

    @classmethod
    def booted(cls) -> TemporaryServer:
        """The server's process, spawned before this process has read Prefect's settings: it
        reads the same ones (the same environment, folder and profile) and imports the server
        package while this process checks its input, then waits for ``serve`` on stdin."""
        server = cls()
        server.booted_in = (dict(os.environ), os.getcwd())
        server._start(dict(os.environ))
        return server

    def _pass_on_stderr(self) -> None:
        """The server's stderr, passed on to ours until ``stop`` begins. What it logs while it
        shuts down (seen: a database connection reset as a request was cut short, with its
        traceback) would otherwise follow the run's last line."""
        assert self.process is not None and self.process.stderr is not None  # noqa: S101 - spawned with a pipe
        stream = self.process.stderr

        def pass_on() -> None:
            for line in stream:
                if not self.stopping:
                    sys.stderr.write(line.decode(errors="replace"))
                    sys.stderr.flush()

        self.passing_on = threading.Thread(target=pass_on, name="temporary-server-stderr", daemon=True)
        self.passing_on.start()

    def serve(self) -> bool:
        """Give the booted-ahead process its port. False, with the process stopped, when it would
        not serve what ``spawn`` would: this process's environment or folder changed since (its
        settings could differ), or it exited."""
        assert self.process is not None  # noqa: S101 - booted first
        if self.booted_in != (dict(os.environ), os.getcwd()) or self.process.poll() is not None \
                or not self._give_port():
            self.stop()
            return False
        self.booted_in = None
        return True

    def wait(self, seconds: float) -> None:
        """Return once the server answers its health check; ``PrefectUnavailable`` when it has not
        within ``seconds`` of its start, or exited."""
        deadline = self.started + seconds
        while time.monotonic() < deadline:
            assert self.process is not None  # noqa: S101 - spawned first
            code = self.process.poll()
            if code == _PORT_TAKEN:
                self.spawn()
                deadline = self.started + seconds
                continue
            if code is not None:
                if self.passing_on is not None:
                    self.passing_on.join(timeout=5)  # its last words before ours
                raise PrefectUnavailable(f"Prefect's temporary server exited with status {code} before it answered "
                                         f"(its error is above); nothing was run. {_START_ONE}, then run again")
            if answers(self.api_url):
                return
            time.sleep(0.1)
        raise PrefectUnavailable(timed_out(seconds))

    def stop(self) -> None:
        """As Prefect stops its own: TERM, up to 5 s, then KILL; booted ahead and given no port,
        at once (it has touched nothing)."""
        if self.process is None:
            return
        self.stopping = True
        if self.booted_in is not None:
            self.process.kill()
            self.process.wait()
            if self.process.stdin is not None:
                with suppress(OSError):  # what a failed write left in its buffer
                    self.process.stdin.close()
            self.process = None
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


_START_ONE = "Start a server with 'prefect server start' and set PREFECT_API_URL=http://127.0.0.1:4200/api"


def timed_out(waited: float) -> str:
    return (f"Prefect's temporary server did not start within {waited:g} s (a busy machine?); nothing was run. "
            f"{_START_ONE}, or raise {SETTING} (now {waited:g}), then run again")
