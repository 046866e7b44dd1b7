"""Prefect's temporary server, for a CLI run in local mode: started early, given time on a busy
machine, and said in one line when it does not come up.

Started early (``start_server``): in local mode Prefect starts its temporary server only when the
flow makes its first API call, and first imports the whole server package into the CLI's own
process just to reach the class that starts it (``prefect.server.api.server``: about 5 s of CPU
at load 7, ``bench/floor.py --server-import``). So the CLI starts the same server process itself (the
same ``uvicorn`` app, options and environment as Prefect's ``SubprocessASGIServer``) and points the
flow at it (``PREFECT_API_URL`` in this process's settings only: agents and verify commands see
the environment they saw before). It is stopped at the process's exit, after Prefect has sent its
last logs and events, as Prefect stops its own.

Booted ahead (``boot_ahead``): the server's own start is mostly importing that package (6 s of
one core here), and the CLI spent the first 3 s of a run checking its input with the other core
idle. So ``run``, ``demo`` and ``integrate`` spawn the server's process as the CLI starts
(``flows/server_boot.py``): it imports the package and waits for a port on stdin. ``start_server``
gives it the port once the input is checked; bad input, a server in ``PREFECT_API_URL`` or an
environment that changed since closes it instead, before it has touched a database or a port.

Given time: Prefect waits 20 s for its server by default. On a loaded 2-core machine (load 8-11)
that failed in at least 5 of 19 runs, once even at load 3, and a fresh ``PREFECT_HOME``'s first
start (it creates and migrates its database) is the slowest; 180-240 s never failed. So the CLI
raises the wait when the user has not set it, and when the server still does not come up it says
what to do in one line instead of Prefect's ``RuntimeError``.

A run that uses a server already running skips the temporary server's start. Using one is the
user's choice (``PREFECT_API_URL``), so when one answers on Prefect's default address the CLI
only says so, in one line, with how to use it (``server_line``).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect_work_clusters.flows.server_process import PrefectUnavailable, TemporaryServer, answers, timed_out

PATIENT_SECONDS = 240
_PREFECT_SAYS = "ephemeral Prefect API server"


def server_line() -> str | None:
    """One line on the Prefect server this run uses, or could use instead of a temporary one;
    None when there is nothing to say (local mode, no server running at Prefect's address)."""
    from prefect.settings import PREFECT_API_URL, get_current_settings

    url = PREFECT_API_URL.value()
    if url:
        return f"Prefect: using the server at {url} (PREFECT_API_URL)"
    api = get_current_settings().server.api
    candidate = f"http://{api.host}:{api.port}/api"
    if not answers(candidate):
        return None
    return (f"Prefect: a server is running at {candidate}, but this run starts a temporary one of its own; "
            f"to use the running one (about 5 s less start-up): export PREFECT_API_URL={candidate}")


_early: TemporaryServer | None = None


# The commands that run a flow, and so start Prefect's temporary server in local mode.
RUNS_A_FLOW = frozenset({"run", "demo", "integrate"})


def boot_ahead(argv: list[str]) -> None:
    """As a ``run``, ``demo`` or ``integrate`` command starts (``argv`` without the program),
    before it imports Prefect: boot the temporary server's process ahead
    (``TemporaryServer.booted``), unless the environment or the profiles point at a running
    server or the command only asks for help. ``start_server`` gives it its port or stops it; an
    exit without that stops it too."""
    global _early
    if (_early is not None or not argv or argv[0] not in RUNS_A_FLOW or {"--help", "-h"} & set(argv)
            or _server_configured()):
        return
    _early = TemporaryServer.booted()
    atexit.register(_early.stop)


def _server_configured() -> bool:
    """Whether this run may well use a running server, read without importing Prefect: its
    address in the environment, or anywhere in the profiles file (``prefect config set
    PREFECT_API_URL=...`` writes it there). A false yes costs only the boot ahead; a false no, a
    process ``start_server`` stops, having touched nothing."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        return "PREFECT_API_URL" in profiles.read_text(errors="replace")
    except OSError:
        return False


def start_server() -> None:
    """Start Prefect's temporary server now, in the background, unless this run uses a running
    server (``PREFECT_API_URL``) or Prefect's ephemeral mode is off; ``patient_server`` then
    waits for it and points the flow at it. Call it once the CLI knows it will run a flow: its
    input checked, its plan's lock held. It is stopped when the process exits."""
    global _early
    from prefect.settings import PREFECT_API_URL, get_current_settings

    wanted = not PREFECT_API_URL.value() and get_current_settings().server.ephemeral.enabled
    if _early is not None and _early.booted_in is not None:
        if wanted and _early.serve():
            return
        _early.stop()  # (serve stopped it already when it said no)
        _early = None
    if _early is not None or not wanted:
        return
    _early = TemporaryServer()
    _early.spawn()
    atexit.register(_early.stop)  # after Prefect's log and event workers have sent what they hold


def _point_process_at(server: TemporaryServer) -> dict[Any, Any]:
    """Point every Prefect client of this process at ``server``, for the rest of the process;
    returns the settings that do it, for this thread's context.

    As Prefect's own test harness does for its server: the process-wide settings too, not only
    this thread's, because Prefect's threads that were not given this thread's context (a log
    or event worker started from one of ours) read those, and with no API there each would start
    a temporary server of its own (seen: a second start after the flow, its logs lost)."""
    import prefect.context
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL

    from prefect_work_clusters.tasks.agents import limits

    current = prefect.context.get_settings_context()
    # As in Prefect's local mode: no UI runs there, so no link to one (Prefect derives it from the
    # API's address unless the user set it).
    updates: dict[Any, Any] = {PREFECT_API_URL: server.api_url}
    if "ui_url" not in current.settings.model_fields_set:
        updates[PREFECT_UI_URL] = ""
    # A flow run's heartbeats tell its server it still lives, for automations that mark it
    # Crashed. This server lives only as long as the run's process, so they tell nothing, and
    # Prefect joins their thread as the flow ends: up to 1 s of every run (0.6 s measured).
    if "heartbeat_frequency" not in current.settings.flows.model_fields_set:
        updates["flows.heartbeat_frequency"] = None
    prefect.context.GLOBAL_SETTINGS_CONTEXT = prefect.context.SettingsContext(
        profile=current.profile, settings=current.settings.copy_with_update(updates=updates))
    limits.temporary_api_urls.add(server.api_url)
    return updates


@contextmanager
def patient_server(say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Run the body with the temporary server's start-up wait raised to ``PATIENT_SECONDS``,
    unless the user set it (environment or profile), and pointed at the server ``start_server``
    started, once it answers; turn a start-up timeout into ``PrefectUnavailable``. ``say`` gets
    the ``server_line``, if any, first."""
    if say and (line := server_line()):
        say(line)
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, get_current_settings
    from prefect.settings.context import temporary_settings

    ephemeral = get_current_settings().server.ephemeral
    users = "startup_timeout_seconds" in ephemeral.model_fields_set
    updates: dict[Any, Any] = {} if users else {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: PATIENT_SECONDS}
    waited = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() if users else PATIENT_SECONDS
    if _early is not None:
        _early.wait(waited)
        updates |= _point_process_at(_early)
    try:
        with temporary_settings(updates=updates):
            yield
    except RuntimeError as exc:
        if _PREFECT_SAYS not in str(exc):
            raise
        raise PrefectUnavailable(timed_out(waited)) from None
