"""A `prefect server` started for a benchmark (the running-server figures), on a free loopback port
of its own and its own PREFECT_HOME, stopped with its whole process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from common import PREFECT, clean_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    api_url: str
    started_in: float
    log: Path = field(default_factory=Path)


def start_server(home: Path, log: Path, timeout: float = 90) -> Server:
    """``prefect server start`` on a free loopback port; returns once its health check answers."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = clean_env(home)
    env["PREFECT_UI_API_URL"] = api
    t0 = time.monotonic()
    with log.open("wb") as fh:
        proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"prefect server exited {proc.returncode}; see {log}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{api}/health", timeout=1) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return Server(proc, api, round(time.monotonic() - t0, 3), log)
        time.sleep(0.2)
    stop_server(Server(proc, api, 0.0, log))
    raise SystemExit(f"prefect server did not answer within {timeout:g} s; see {log}")


def stop_server(server: Server, grace: float = 10) -> None:
    """SIGINT to the server's process group, then SIGKILL after ``grace`` seconds."""
    proc = server.proc
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
