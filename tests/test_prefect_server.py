"""The real thing: ``prefect server start`` on loopback, a process work pool, ``prefect worker
start``, ``prefect deploy`` from prefect.yaml, runs triggered with ``run_deployment``, artifacts
and logs read back through the API, and the merge report seen in headless Chromium.

Lean on purpose: one server, one worker, three flow runs (two at once under a global
concurrency limit of 1, then a re-run that must resume). Every process it starts is stopped by
PID at the end, on failure too. Deselect with ``-m 'not server'``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    LogFilter,
)
from pydantic import SecretStr

from prefect_work_clusters.blocks import AgentBlock
from prefect_work_clusters.deployments import deploy_plans, trigger
from prefect_work_clusters.tasks.errors import BadInput
from tests.conftest import git, make_repo
from tests.server_helpers import PREFECT, ROOT, Stack, chromium, stack_fixture, wait_final  # noqa: F401 - a fixture

pytestmark = pytest.mark.server

SECRET = f"e2e-secret-{uuid4().hex}"

AGENT = """
import hashlib, json, os, pathlib, sys, time
if os.environ["WC_ROLE"] != "cluster":
    sys.exit(0)  # the integration role: nothing to resolve here
cluster, start = os.environ["WC_CLUSTER"], time.time()
if os.environ["WC_PLAN"] == "gamma" and cluster == "ui":
    print("cannot build ui: the widget kit is missing")
    sys.exit(1)
time.sleep(0.4)
pathlib.Path(os.environ["WC_WORKTREE"], cluster, "impl.py").write_text(f"NAME = {cluster!r}\\n")
token = hashlib.sha256(os.environ.get("E2E_TOKEN", "").encode()).hexdigest()
record = pathlib.Path(os.environ["RECORD_DIR"], f"{os.environ['WC_PLAN']}-{cluster}-{start}.json")
record.write_text(json.dumps({"start": start, "end": time.time(), "token": token}))
print(f"agent {cluster} wrote impl.py")
"""


def plan_text(name: str) -> str:
    verify = f"{sys.executable} -c 'import api.impl, ui.impl'"
    return f"""name: {name}
goal: Build {name}
clusters:
  - name: api
    paths: [api/]
    tasks: [implement the API]
  - name: ui
    paths: [ui/]
    tasks: [implement the UI]
integration:
  verify: ["{verify}"]
limits: {{timeout_seconds: 60, retries: 0, concurrency: 2}}
"""


def test_deploy_trigger_and_see_the_report_on_a_real_server(stack: Stack, tmp_path: Path) -> None:
    # Everything runs from a user's own Prefect project, with its own flows/, tasks.py and blocks/:
    # our package must neither shadow them nor be shadowed (the worker's flow-run process has this
    # folder on sys.path), and the deployments need no checkout of this repository.
    worker, deploy = stack.serve_project(tmp_path / "project")
    with get_client(sync_client=True) as client:
        # The prefect.collections entry point: the server registered the block type by itself.
        assert client.read_block_type_by_slug("work-clusters-agent").name == "Work Clusters Agent"
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="agents-command", limit=1))
    register = stack.start("register", PREFECT, "block", "register", "-m", "prefect_work_clusters.blocks")

    records = tmp_path / "records"
    records.mkdir()
    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    AgentBlock(argv=[sys.executable, str(script)], env={"RECORD_DIR": str(records)},
               secret_env={"E2E_TOKEN": SecretStr(SECRET)}).save("e2e-agent")
    repos = {}
    for name in ("alpha", "beta", "gamma"):
        repos[name] = make_repo(tmp_path, {"README.md": "# e2e\n", "api/__init__.py": "", "ui/__init__.py": ""},
                                name=f"repo-{name}")
        (tmp_path / f"{name}.yaml").write_text(plan_text(name))

    assert "Successfully registered 1 block" in stack.finish("register", register)
    stack.finish("deploy", deploy)
    with get_client(sync_client=True) as client:
        run_plan = client.read_deployment_by_name("work-clusters/run-plan")
        nightly = client.read_deployment_by_name("work-clusters/nightly")
        flow_runs_before = len(client.read_flow_runs())
    schema = run_plan.parameter_openapi_schema or {}
    assert schema["required"] == ["repo"]  # a plan, or a goal to plan for
    assert run_plan.entrypoint == "prefect_work_clusters.flows.work_clusters.work_clusters"
    assert all(p.get("description") for p in schema["properties"].values()), schema
    assert schema["properties"]["concurrency"]["minimum"] == 0  # 0: the plan's; typed in without a toggle
    assert [(s.schedule.cron, s.active) for s in nightly.schedules] == [("0 2 * * *", False)]  # type: ignore[union-attr]

    # Bad parameters: refused by the server with its reason, and no run is created.
    with pytest.raises(BadInput, match="concurrency.*less than the minimum of 0"):
        trigger(str(tmp_path / "alpha.yaml"), str(repos["alpha"]), agent="e2e-agent", concurrency=-1)

    def start(name: str) -> UUID:
        return trigger(str(tmp_path / f"{name}.yaml"), str(repos[name]), agent="e2e-agent", wait=False).id

    first = wait_final([start("alpha"), start("beta")])
    assert worker.poll() is None, stack.log("worker")[-4000:]
    for run in first.values():
        assert run.state.is_completed(), (run.state, stack.log("worker")[-6000:])  # type: ignore[attr-defined]
    spans = sorted((r["start"], r["end"]) for r in (json.loads(p.read_text()) for p in records.iterdir()))
    assert len(spans) == 4
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False)), spans
    tokens = {json.loads(p.read_text())["token"] for p in records.iterdir()}
    assert tokens == {hashlib.sha256(SECRET.encode()).hexdigest()}  # the secret reached every agent

    alpha_id = next(rid for rid, r in first.items() if r.parameters["plan"].endswith("alpha.yaml"))  # type: ignore[attr-defined]
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[alpha_id])))}
        logs = [log.message for log in client.read_logs(LogFilter(flow_run_id={"any_": [alpha_id]}))]
        task_runs = {t.name for t in client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [alpha_id]}))}
    assert set(artifacts) == {"progress-alpha", "contract-check-alpha", "merge-report-alpha"}
    md = artifacts["merge-report-alpha"]
    # The UI renders the merge report: headless Chromium on the artifact's page, while the next run runs.
    browser = chromium(stack, f"http://127.0.0.1:{stack.port}/artifacts/artifact/{md.id}")

    # Running the plan again through the deployment resumes: no agent runs, nothing is lost.
    again = trigger(str(tmp_path / "alpha.yaml"), str(repos["alpha"]), agent="e2e-agent", timeout=120,
                    poll_interval=0.5)
    assert again.state and again.state.is_completed(), again.state
    assert len(list(records.iterdir())) == 4
    report = json.loads((tmp_path / "repo-alpha.clusters/alpha/.runs/report.json").read_text())
    assert [c["resumed"] for c in report["clusters"]] == [True, True]
    with get_client(sync_client=True) as client:
        assert len(client.read_flow_runs()) == flow_runs_before + 3

    assert "# Merge report: alpha" in str(md.data) and "integrated and verified" in str(md.data)
    table = artifacts["contract-check-alpha"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert {r["cluster"]: r["status"] for r in rows} == {"api": "✅ ok", "ui": "✅ ok"}
    assert artifacts["progress-alpha"].data == 100
    assert {"agent-api", "agent-ui"} <= task_runs
    # A flow run's logs are shipped in batches, the last ones as its process exits, which can be
    # after the run's final state is already visible: wait for them a bounded time.
    deadline = time.monotonic() + 60
    while not any("[api] agent api wrote impl.py" in m for m in logs) and time.monotonic() < deadline:
        time.sleep(1)
        with get_client(sync_client=True) as client:
            logs = [log.message for log in client.read_logs(LogFilter(flow_run_id={"any_": [alpha_id]}))]
    assert any("[api] agent api wrote impl.py" in m for m in logs), logs
    # The secret reached the agents (checked above) and nothing else.
    seen = [*logs, *(f"{a.data} {a.description}" for a in artifacts.values()), stack.log("worker"),
            git(repos["alpha"], "log", "--all", "-p")]
    seen += [p.read_text(errors="replace") for p in (tmp_path / "repo-alpha.clusters/alpha/.runs").rglob("*")
             if p.is_file()]
    assert not [s for s in seen if SECRET in s]

    # The Python way deploys the same deployments; given parameters, it turns the schedule on.
    deploy_plans(nightly={"plan": str(tmp_path / "alpha.yaml"), "repo": str(repos["alpha"])})
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("work-clusters/nightly")
    assert [s.active for s in nightly.schedules] == [True] and nightly.parameters["plan"].endswith("alpha.yaml")

    # A failing cluster through the worker: a Failed run in plain words, no traceback in its logs.
    gamma = trigger(str(tmp_path / "gamma.yaml"), str(repos["gamma"]), agent="e2e-agent", timeout=180,
                    poll_interval=0.5)
    message = str(gamma.state.message if gamma.state else "")
    assert gamma.state and gamma.state.is_failed() and "\n" not in message, message
    assert ('clusters not finished: ui (failed: the agent exited with status 1; it printed last: "cannot build ui: '
            'the widget kit is missing")') in message
    assert "next: work-clusters run" in message
    with get_client(sync_client=True) as client:
        gamma_report = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[gamma.id]), key=ArtifactFilterKey(any_=["merge-report-gamma"])))
    deadline, gamma_logs = time.monotonic() + 60, []
    while not any("Finished in state Failed" in m for m in gamma_logs) and time.monotonic() < deadline:
        time.sleep(1)
        with get_client(sync_client=True) as client:
            gamma_logs = [log.message for log in client.read_logs(LogFilter(flow_run_id={"any_": [gamma.id]}))]
    text = "\n".join(gamma_logs)
    assert "cannot build ui: the widget kit is missing" in text, text[-3000:]
    assert not re.search(r'File "[^"]*(site-packages/prefect|prefect_work_clusters)/', text), text[-3000:]
    assert "Engine execution exited" not in text and "NoneType: None" not in text, text[-3000:]

    if browser is None:
        pytest.skip("chromium is not installed, so the UI was not checked (apt-get install chromium; CI does)")
    html = stack.finish("dom", browser[0])
    stack.finish("shot", browser[1])
    assert "Merge report: alpha" in html and "integrated and verified" in html, html[-3000:]
    assert (tmp_path / "merge-report.png").stat().st_size > 10_000  # kept in the test's temp dir
    # The failed run's merge report in the UI holds the failure, what the agent printed and the next step.
    failed = chromium(stack, f"http://127.0.0.1:{stack.port}/artifacts/artifact/{gamma_report[0].id}")
    assert failed is not None
    html = stack.finish("dom", failed[0])
    stack.finish("shot", failed[1])
    for said in ("NOT integrated", "the agent exited with status 1", "cannot build ui: the widget kit is missing",
                 "Next steps", "work-clusters run"):
        assert said in html, (said, html[-3000:])
