"""Prefect's temporary server on a busy machine (issue 21): a longer start-up wait unless the user
set one, and one line with what to do (exit 3) when it still does not start. Before the fix a
slow start was `internal error: RuntimeError: Timed out while attempting to connect to
ephemeral Prefect API server`, with a traceback file and "please report it"."""

from __future__ import annotations

from pathlib import Path

from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, temporary_settings

from prefect_work_clusters.flows.startup import PATIENT_SECONDS, patient_server
from tests.loop_helpers import shop_repo
from tests.test_cli import cli


def test_the_wait_is_raised_only_when_the_user_left_it_alone() -> None:
    assert PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() == 20  # Prefect's default
    with patient_server():
        assert PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() == PATIENT_SECONDS
    with temporary_settings(updates={PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 7}), patient_server():
        assert PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() == 7


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
