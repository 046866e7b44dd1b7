"""Prefect's temporary server, started by a CLI run in local mode, given time on a busy machine.

Prefect waits 20 s for it by default. On a loaded 2-core machine (load 8-11) that failed in at
least 5 of 19 runs, once even at load 3, and a fresh ``PREFECT_HOME``'s first start (it creates
and migrates its database) is the slowest; 180-240 s never failed. So the CLI raises the wait
when the user has not set it, and when the server still does not come up it says what to do in
one line instead of Prefect's ``RuntimeError``.

A run that uses a server already running skips the temporary server's start (measured in
bench/results/overhead.json: ~5 s of the ~7.5 s of an empty local-mode flow). Using one is the
user's choice (``PREFECT_API_URL``), so when one answers on Prefect's default address the CLI
only says so, in one line, with how to use it (``server_line``).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prefect_work_clusters.tasks.errors import WorkClustersError

SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
PATIENT_SECONDS = 240
_PREFECT_SAYS = "ephemeral Prefect API server"


# A server on this machine answers its health check in milliseconds; nobody listening is refused
# at once. The limit only bounds a port held by something that never answers.
PROBE_SECONDS = 0.5


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=PROBE_SECONDS) as res:  # noqa: S310 (our URL)
            return bool(res.status == 200)
    except (OSError, ValueError, urllib.error.URLError):
        return False


def server_line() -> str | None:
    """One line on the Prefect server this run uses, or could use instead of a temporary one;
    None when there is nothing to say (local mode, no server running at Prefect's address)."""
    from prefect.settings import PREFECT_API_URL, get_current_settings

    url = PREFECT_API_URL.value()
    if url:
        return f"Prefect: using the server at {url} (PREFECT_API_URL)"
    api = get_current_settings().server.api
    candidate = f"http://{api.host}:{api.port}/api"
    if not _answers(candidate):
        return None
    return (f"Prefect: a server is running at {candidate}, but this run starts a temporary one of its own; "
            f"to use the running one (about 5 s less start-up): export PREFECT_API_URL={candidate}")


class PrefectUnavailable(WorkClustersError):
    """Prefect's API could not be reached or started: nothing of ours failed."""

    exit_code = 3


@contextmanager
def patient_server(say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Run the body with the temporary server's start-up wait raised to ``PATIENT_SECONDS``,
    unless the user set it (environment or profile); turn a start-up timeout into
    ``PrefectUnavailable``. ``say`` gets the ``server_line``, if any, first."""
    if say and (line := server_line()):
        say(line)
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, get_current_settings
    from prefect.settings.context import temporary_settings

    ephemeral = get_current_settings().server.ephemeral
    updates = {} if "startup_timeout_seconds" in ephemeral.model_fields_set else \
        {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: PATIENT_SECONDS}
    try:
        with temporary_settings(updates=updates):
            yield
    except RuntimeError as exc:
        if _PREFECT_SAYS not in str(exc):
            raise
        waited = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() if not updates else PATIENT_SECONDS
        raise PrefectUnavailable(
            f"Prefect's temporary server did not start within {waited} s (a busy machine?); nothing was run. "
            f"Start a server with 'prefect server start' and set PREFECT_API_URL=http://127.0.0.1:4200/api, "
            f"or raise {SETTING} (now {waited}), then run again") from None
