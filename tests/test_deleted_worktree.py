"""A worktree deleted mid-run (issue 21, a fault nobody had tried): before the fix the cluster
failed on a raw FileNotFoundError with no message in the report. Now it fails with one clear
line, the other clusters go on, and the next run recreates the worktree and finishes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefect_work_clusters.flows.work_clusters import work_clusters
from tests.conftest import write_agent
from tests.loop_helpers import WRITER, shop_repo

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_a_worktree_deleted_mid_run_is_one_clear_failure_and_the_next_run_recreates_it(tmp_path: Path,
                                                                                    records: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    once = tmp_path / "deleted-once"
    agent = write_agent(tmp_path, WRITER + f"""
if cluster == "ui" and not pathlib.Path({str(once)!r}).exists():
    import shutil
    pathlib.Path({str(once)!r}).write_text("")
    shutil.rmtree(wt)
""")
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)
    assert state.is_failed() and "clusters not finished: ui" in str(state.message)
    report = json.loads((tmp_path / "repo.clusters" / "shop" / ".runs" / "report.json").read_text())
    by = {c["cluster"]: c for c in report["clusters"]}
    assert by["api"]["status"] == by["db"]["status"] == "succeeded" and by["ui"]["status"] == "failed"
    assert "was deleted during the attempt (by the agent or by hand)" in json.dumps(report)

    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)
    assert state.is_completed(), state.message
    report = json.loads((tmp_path / "repo.clusters" / "shop" / ".runs" / "report.json").read_text())
    assert {c["status"] for c in report["clusters"]} == {"succeeded"}
