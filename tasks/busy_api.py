"""Requests to the Prefect API on a run's critical path, asked again at once when the server is busy.

Prefect's client waits 2 s (jittered, then 4 s, 8 s...) before it asks again after a 503, even
where it will not ask again. Its SQLite server answers 503 "database is locked" when two writes
meet: a run's slots taken just after its flow run started, on a fresh ``PREFECT_HOME``, met one in
4 of 8 runs measured (2 and 16 agents), and every agent started 2 s late."""

from __future__ import annotations

import time
from typing import Any

import httpx
from prefect.client.orchestration import SyncPrefectClient

QUICK_PAUSES = (0.05, 0.1, 0.2, 0.4)  # a busy server asked again after these, before Prefect's 2 s
BUSY = frozenset({429, 502, 503})


def post(client: SyncPrefectClient, path: str, body: dict[str, Any]) -> httpx.Response:
    """POST ``body`` to the API's ``path`` through the run's client; a busy server (429, 502, 503)
    is asked again after ``QUICK_PAUSES``, then once more as Prefect's client asks (with its own
    retries). A 423 (no free slots) comes back to the caller; any other error is raised.

    The request goes through the client's own connection (its base URL, auth headers and TLS), without
    that wait; anything unusual (a CSRF refusal, a dropped connection) goes Prefect's way."""
    http = client._client  # noqa: SLF001 - the run's connected httpx client; its send() is Prefect's retry loop
    response: httpx.Response | None = None
    for pause in QUICK_PAUSES:
        try:
            response = httpx.Client.send(http, http.build_request("POST", path, json=body))
        except httpx.TransportError:
            response = None
            break
        if response.status_code not in BUSY:
            break
        time.sleep(pause)
    if response is not None and (response.is_success or response.status_code == 423):
        return response
    try:  # Prefect's way: its retries, its CSRF token, its errors
        return http.send(http.build_request("POST", path, json=body))
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 423:
            return exc.response
        raise
