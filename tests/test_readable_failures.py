"""Expected failures read as failures, not crashes (issue 15): a cluster whose agent fails is
retried, then ends Failed with one line of prose that quotes what the agent printed last; no log
line carries a traceback; the integrate task ends Failed when verification fails; the
integration agent is never asked to fix the partial tree; the progress artifact counts the
failure; a bad plan ends the flow Failed with a plan-problems artifact."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    LogFilter,
    TaskRunFilter,
)
from prefect.client.schemas.sorting import TaskRunSort
from prefect.logging.handlers import APILogHandler

from prefect_work_clusters.flows.work_clusters import work_clusters
from tests.conftest import read_artifact, write_agent
from tests.loop_helpers import WRITER, shop_repo

pytestmark = pytest.mark.usefixtures("prefect_harness")

FAILING_UI = WRITER.replace('print(f"agent {cluster} wrote impl.py")', """
if cluster == "ui":
    (wt / "ui" / "impl.py").unlink()
    print("looking for the widget kit")
    print("cannot build ui: the widget kit is missing")
    sys.exit(1)
print(f"agent {cluster} wrote impl.py")
""")


OUR_FRAMES = re.compile(r'File "[^"]*(site-packages/prefect|prefect_work_clusters)/')


def _run_details(state: Any) -> tuple[dict[str, Any], list[Any]]:
    APILogHandler().flush()  # logs are sent in batches
    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [run_id]}),
                                      task_run_filter=TaskRunFilter(), sort=TaskRunSort.EXPECTED_START_TIME_DESC)
        logs = client.read_logs(LogFilter(flow_run_id={"any_": [run_id]}))
    return {t.name: t for t in tasks}, logs


def test_a_failing_agent_is_one_readable_failure_retried_and_never_fixed_by_the_integration_agent(
        tmp_path: Path, records: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    called = tmp_path / "integration-agent-called"
    integrator = write_agent(tmp_path, f"pathlib.Path({str(called)!r}).write_text('called')\n", "integrator.py")
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=write_agent(tmp_path, FAILING_UI),
                          integration_agent_cmd=integrator, retries=1, return_state=True)

    message = str(state.message)
    assert state.is_failed()
    assert "\n" not in message and "Traceback" not in message and "Error(" not in message
    assert ('clusters not finished: ui (failed: the agent exited with status 1; it printed last: "looking for the '
            'widget kit / cannot build ui: the widget kit is missing")') in message
    assert "next: work-clusters run" in message and f"--repo {repo}" in message
    assert not called.exists(), "the integration agent was asked to fix a partial tree"
    md = (repo.parent / "repo.clusters/shop/.runs/merge-report.md").read_text()
    assert "partial integration: ui not merged" in md and "- Resume: `work-clusters run " in md

    tasks, logs = _run_details(state)
    ui = tasks["agent-ui"]
    assert ui.state.is_failed() and ui.run_count == 2, "a returned Failed state must still be retried"
    assert ui.state.message.startswith("cluster ui: the agent exited with status 1; it printed last:")
    assert "\n" not in ui.state.message and "AgentFailed" not in ui.state.message
    assert tasks["agent-api"].state.is_completed() and tasks["agent-db"].state.is_completed()
    integration = next(t for name, t in tasks.items() if name.startswith("integrate-"))
    assert integration.state.is_failed()
    assert "integration verification failed" in integration.state.message
    assert "on a partial tree (ui not merged)" in integration.state.message
    # The verify command's own traceback is told by its error line.
    assert integration.state.message.endswith('it printed last: "ModuleNotFoundError: No module named \'ui.impl\'"')

    text = "\n".join(log.message for log in logs)
    assert not OUR_FRAMES.search(text), text  # no traceback of Prefect's or ours
    assert "NoneType: None" not in text and "AgentFailed(" not in text and "result=" not in text
    errors = [log.message for log in logs if log.level >= 40 and log.task_run_id == ui.id]
    assert len(errors) == 1, errors  # one ERROR line for the failed cluster
    assert "the widget kit is missing" in errors[0]

    with get_client(sync_client=True) as client:
        keys = [a.key for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))]
    assert sorted(keys) == ["contract-check-shop", "merge-report-shop", "progress-shop"], keys  # one per key
    progress: Any = read_artifact(state, "progress-shop")
    assert progress.data == 100.0
    assert "3 of 3 clusters done: ❌ 1 failed · ✅ 2 succeeded" in progress.description
    assert "| ui | ❌ failed | 2 |" in progress.description
    assert "| api | ✅ succeeded | 1 |" in progress.description


def test_a_bad_plan_ends_failed_in_one_line_with_its_problems_as_an_artifact(tmp_path: Path) -> None:
    repo, plan = shop_repo(tmp_path, "name: shop\nclusters:\n  - name: api\n    paths: [api/]\n")
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd="true", return_state=True)
    assert state.is_failed()
    message = str(state.message)
    assert message.startswith("the plan is invalid") and "\n" not in message and "Traceback" not in message
    assert "plan-problems-shop" in message
    artifact: Any = read_artifact(state, "plan-problems-shop")
    assert "❌" in artifact.data and "| where | field | what is wrong |" in artifact.data
    _, logs = _run_details(state)
    assert not [log.message for log in logs if "Traceback" in log.message]


def test_the_cli_says_which_cluster_failed_what_it_printed_and_the_command_that_continues(tmp_path: Path) -> None:
    from tests.conftest import cli

    repo, plan = shop_repo(tmp_path)
    (tmp_path / "records").mkdir()
    called = tmp_path / "integration-agent-called"
    integrator = write_agent(tmp_path, f"pathlib.Path({str(called)!r}).write_text('called')\n", "integrator.py")
    res = cli("run", "shop.yaml", "--repo", "repo", "--agent-cmd", write_agent(tmp_path, FAILING_UI),
              "--integration-agent-cmd", integrator, cwd=tmp_path, env={"RECORD_DIR": str(tmp_path / "records")})
    output = res.stdout + res.stderr
    assert res.returncode == 1, output
    assert not OUR_FRAMES.search(output) and "AgentFailed" not in output
    assert "| INFO" not in output, "Prefect's log stream shows only with --verbose"
    # Not a terminal: the live view prints a line as a cluster changes state.
    assert "ui: ⏳ running (attempt 1" in res.stderr and "ui: ❌ failed (attempt 1" in res.stderr
    assert 'error: ui: the agent exited with status 1; it printed last: "looking for the widget kit / cannot build ' \
           'ui: the widget kit is missing"' in res.stdout
    assert f"next: work-clusters run {tmp_path / 'shop.yaml'} --repo {repo}" in res.stdout
    assert not called.exists()
