"""Approval on a real server: a run with ``approve`` suspends (no worker held) with the report
published; resumed with approve=true (through ``work-clusters approve``'s code) it lands, resumed
with false through the client it ends Completed and not landed. A third run stops on a conflict no
tier resolves and suspends for a person's turn; resolved in its worktree and resumed, it
integrates and records the person's resolution. A fourth, whose person's turn nobody takes, is
failed at its person_timeout_seconds with the instructions in its report. One server session.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from prefect_work_clusters.deployments import trigger
from prefect_work_clusters.flows.review import approve_run
from prefect_work_clusters.tasks.integration.approval import Approval
from prefect_work_clusters.tasks.resolve import resolve_run
from tests.conftest import git, make_repo, user_changes_expected
from tests.server_helpers import PREFECT, ROOT, Stack, stack_fixture, wait_final  # noqa: F401 - a fixture

pytestmark = [pytest.mark.server, pytest.mark.slow]  # about a minute on an idle machine

AGENT = """
import os, pathlib, sys
if os.environ["WC_ROLE"] != "cluster":
    sys.exit(0)
cluster, wt = os.environ["WC_CLUSTER"], pathlib.Path(os.environ["WC_WORKTREE"])
(wt / cluster / "impl.py").write_text(f"NAME = {cluster!r}\\n")
if os.environ["WC_PLAN"] in ("person", "late"):  # both change the same line: no tier resolves that
    (wt / "config.py").write_text(f"TIMEOUT = {60 if cluster == 'api' else 10}\\n")
"""


def plan_text(name: str) -> str:
    return f"""name: {name}
goal: Build {name}
shared: [config.py]
clusters:
  - name: api
    paths: [api/]
  - name: ui
    paths: [ui/]
integration:
  approve: {str(name in ("approved", "rejected")).lower()}
  person_timeout_seconds: {5 if name == "late" else 86400}
  verify: ["{sys.executable} -c 'import api.impl, ui.impl'"]
limits: {{timeout_seconds: 60, retries: 0, concurrency: 2}}
"""


def wait_suspended(run_id: UUID, stack: Stack, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run_id).state
            if state and state.is_paused():
                assert state.name == "Suspended", state
                return
            assert not (state and state.is_final()), (state, stack.log("worker")[-6000:])
            time.sleep(0.5)
    raise AssertionError(f"flow run {run_id} never suspended:\n{stack.log('worker')[-6000:]}")


def test_approval_suspends_and_resuming_lands_or_not(stack: Stack, tmp_path: Path) -> None:
    worker, deploy = stack.serve_project(tmp_path / "project")
    stack.finish("deploy", deploy)

    script = tmp_path / "agent.py"
    script.write_text(AGENT)
    repos, runs = {}, {}
    for name in ("approved", "rejected", "person", "late"):
        repos[name] = make_repo(tmp_path, {"README.md": "# r\n", "api/__init__.py": "", "ui/__init__.py": "",
                                           "config.py": "TIMEOUT = 30\n"},
                                name=f"repo-{name}")
        user_changes_expected(repos[name])  # "approved" lands; the test checks "rejected" itself
        (tmp_path / f"{name}.yaml").write_text(plan_text(name))
        runs[name] = trigger(str(tmp_path / f"{name}.yaml"), str(repos[name]), wait=False,
                             agent_cmd=f"{sys.executable} {script}").id
    mains = {name: git(repo, "rev-parse", "main") for name, repo in repos.items()}
    late = runs.pop("late")  # nobody takes its person's turn: Prefect fails it after 5 s
    for run_id in runs.values():
        wait_suspended(run_id, stack)

    ctxs = {name: resolve_run(tmp_path / f"{name}.yaml", repos[name], agents_needed=False) for name in repos}
    for name, ctx in ctxs.items():
        if name in ("person", "late"):
            continue
        review = json.loads((ctx.runs_dir / "review.json").read_text())
        assert review["status"] == "awaiting" and review["flow_run_id"] == str(runs[name])
        assert git(repos[name], "rev-parse", "main") == mains[name]  # nothing lands while it waits
    with get_client(sync_client=True) as client:
        [report] = [a for a in client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[runs["approved"]]))) if a.key == "merge-report-approved"]
    assert "- Review: awaiting approval of" in str(report.data)
    # The UI's Resume form: its fields, and the merge report above them.
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(runs["approved"]).state
        keyset = state.state_details.run_input_keyset if state else None
        assert keyset, state
        schema = json.loads(client.read_flow_run_input(runs["approved"], keyset["schema"]))
        description = json.loads(client.read_flow_run_input(runs["approved"], keyset["description"]))
    assert {"approve", "comment", "approved_by"} <= set(schema["properties"])
    assert "**Approve landing plan approved?**" in description and "# Merge report: approved" in description

    # Approved through the CLI's code (it finds the suspended run and resumes it with the form's
    # input); rejected through the client directly, as the UI does.
    said = approve_run(ctxs["approved"], Approval(approve=True, comment="ship it", approved_by="carol"))
    assert said == [f"approved: flow run {runs['approved']} resumed; its worker lands it"]
    # The person's turn: the conflict in config.py, resolved and committed in the integration
    # worktree as the form says, then the run resumed.
    turn = json.loads((ctxs["person"].runs_dir / "person.json").read_text())
    assert (turn["cluster"], [f[0] for f in turn["files"]]) == ("ui", ["config.py"])
    wt = ctxs["person"].integration_worktree
    (wt / "config.py").write_text("TIMEOUT = 60\n")  # api's line kept, ui's dropped on purpose, saying why:
    (ctxs["person"].runs_dir / "integration/decisions/person.md").write_text(
        "- config.py: kept api's timeout; ui's 10 s is too short for the API\n")
    git(wt, "add", "config.py")
    git(wt, "commit", "-q", "--no-edit")
    with get_client(sync_client=True) as client:
        client.resume_flow_run(runs["rejected"], run_input={"approve": False, "comment": "not now"})
        client.resume_flow_run(runs["person"], run_input={"resolved": True, "comment": "kept the API timeout",
                                                          "resolved_by": "dana"})
    final = wait_final([*runs.values(), late], timeout=180)

    timed_out = final.pop(late).state  # type: ignore[attr-defined]
    assert timed_out.is_failed() and timed_out.message == "The flow was paused and never resumed.", timed_out
    instructions = (ctxs["late"].runs_dir / "merge-report.md").read_text()
    assert "left mid-merge for a person" in instructions and "work-clusters integrate" in instructions
    assert all(r.state.is_completed() for r in final.values()), (  # type: ignore[attr-defined]
        [r.state.message for r in final.values()], stack.log("worker")[-6000:])  # type: ignore[attr-defined]
    assert worker.poll() is None
    yes = json.loads((ctxs["approved"].runs_dir / "report.json").read_text())
    assert yes["land"]["landed"] and git(repos["approved"], "rev-parse", "main") == yes["integration"]["final_sha"]
    assert (yes["review"]["status"], yes["review"]["approved_by"], yes["review"]["comment"]) == (
        "approved", "carol", "ship it")
    no = json.loads((ctxs["rejected"].runs_dir / "report.json").read_text())
    assert not no["land"]["landed"] and no["land"]["message"] == "not landed: rejected (not now)"
    assert no["review"]["status"] == "rejected" and no["ok"]
    assert git(repos["rejected"], "rev-parse", "main") == mains["rejected"]
    markdown = (ctxs["rejected"].runs_dir / "merge-report.md").read_text()
    assert "- Review: rejected at " in markdown and "via Prefect (UI or API): not now" in markdown
    person = json.loads((ctxs["person"].runs_dir / "report.json").read_text())
    assert person["ok"] and [s["status"] for s in person["integration"]["steps"]] == ["merged", "merged"]
    [decision] = [d for d in person["integration"]["decisions"] if d["tier"] == "person"]
    assert decision["file"] == "config.py" and "resolved by dana" in decision["reason"]
    assert decision["reason"].endswith(": kept the API timeout")
    assert any("a person by dana resolved 1 conflicted file(s) merging ui" in n for n in person["notes"])
