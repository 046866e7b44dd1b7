"""Prefect's temporary server, started by a CLI run in local mode, given time on a busy machine.

Prefect waits 20 s for it by default. On a loaded 2-core machine (load 8-11) that failed in at
least 5 of 19 runs, once even at load 3, and a fresh ``PREFECT_HOME``'s first start (it creates
and migrates its database) is the slowest; 180-240 s never failed. So the CLI raises the wait
when the user has not set it, and when the server still does not come up it says what to do in
one line instead of Prefect's ``RuntimeError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect_work_clusters.tasks.errors import WorkClustersError

SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
PATIENT_SECONDS = 240
_PREFECT_SAYS = "ephemeral Prefect API server"


class PrefectUnavailable(WorkClustersError):
    """Prefect's API could not be reached or started: nothing of ours failed."""

    exit_code = 3


@contextmanager
def patient_server() -> Iterator[None]:
    """Run the body with the temporary server's start-up wait raised to ``PATIENT_SECONDS``,
    unless the user set it (environment or profile); turn a start-up timeout into
    ``PrefectUnavailable``."""
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
