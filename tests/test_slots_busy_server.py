"""A busy Prefect server costs the run's slots a moment, not Prefect's 2 s.

Prefect's SQLite server answers 503 "database is locked" when two writes meet, and Prefect's client
waits 2 s (jittered, 1.6-2.4 s) before it asks again: measured on a fresh PREFECT_HOME, the run's
slots met one in 4 of 8 runs (2 and 16 agents), and every agent started 2 s late. Here the
session's real Prefect server sits behind a pass-through proxy that answers the slot requests with
that 503 a set number of times first (``tasks.busy_api``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.settings import PREFECT_API_URL

from prefect_work_clusters.tasks import busy_api
from prefect_work_clusters.tasks.agents import limits
from tests.test_slots import active

SLOT_PATHS = ("/concurrency_limits/increment-with-lease", "/concurrency_limits/decrement-with-lease")
HOP_BY_HOP = ("content-length", "content-encoding", "transfer-encoding", "connection")
LOCKED = b'{"exception_message":"Service Unavailable"}'


class Busy:
    """What the proxy saw of the slot requests: (path, status answered)."""

    def __init__(self, refuse: int) -> None:
        self.refuse, self.seen, self.lock = refuse, [], threading.Lock()
        self.refused: dict[str, int] = {}

    def answer_locked(self, path: str) -> bool:
        with self.lock:
            if not path.endswith(SLOT_PATHS) or self.refused.get(path, 0) >= self.refuse:
                return False
            self.refused[path] = self.refused.get(path, 0) + 1
            return True


@contextmanager
def busy_proxy(refuse: int) -> Iterator[tuple[str, Busy]]:
    """A proxy to the session's server whose first ``refuse`` answers to each slot request are 503."""
    upstream = httpx.Client(base_url=str(PREFECT_API_URL.value()).removesuffix("/api"), timeout=30)
    state = Busy(refuse)

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.command == "POST" and state.answer_locked(self.path):
                status, headers, content = 503, {"content-type": "application/json"}, LOCKED
            else:
                sent = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                got = upstream.request(self.command, self.path, content=body, headers=sent)
                status, content = got.status_code, got.content
                headers = {k: v for k, v in got.headers.items() if k.lower() not in HOP_BY_HOP}
            if self.path.endswith(SLOT_PATHS):
                with state.lock:
                    state.seen.append((self.path.rsplit("/", 1)[1], status))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _any

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api", state
    finally:
        server.shutdown()
        upstream.close()


@pytest.mark.parametrize("refuse", [1, len(busy_api.QUICK_PAUSES)])
def test_slots_are_taken_and_given_back_past_a_locked_database_without_prefects_wait(
        prefect_harness: None, refuse: int, caplog: pytest.LogCaptureFixture) -> None:
    """Refused once: asked again at once. Refused as often as it is asked quickly: the last try
    is Prefect's own (its retries, its CSRF token), which the proxy lets through."""
    name = limits.limit_name(f"slotlocked{refuse}")
    limits.ensure_limit(name, 4)
    prefect_client_log = logging.getLogger("prefect.client")  # Prefect's own logger does not propagate
    prefect_client_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, "prefect.client"), busy_proxy(refuse) as (url, seen), \
                SyncPrefectClient(url) as client:
            lease = limits._Lease(client, name, 3)
            assert active(name) == 3
            lease.release()
    finally:
        prefect_client_log.removeHandler(caplog.handler)
    assert active(name) == 0
    for path, ok in (("increment-with-lease", 200), ("decrement-with-lease", 204)):
        assert [status for p, status in seen.seen if p == path] == [503] * refuse + [ok]
    # Prefect's client says this before each of its waits (1.6-2.4 s after a first 503)
    assert "Another attempt will be made" not in caplog.text
