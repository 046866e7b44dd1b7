"""The contract check inside the flow: what a violating cluster's branch does to the integration
branch under each policy, the ``contract-check-<plan>`` artifact and report.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from prefect_work_clusters.flows.work_clusters import work_clusters
from tests.conftest import git
from tests.test_contract import RIGHT, make_ctx

pytestmark = pytest.mark.usefixtures("prefect_harness")

ACTIONS: dict[str, object] = {"api": {"*": [["write", "api/impl.py", "X = 1\n"], ["write", "ui/hack.py", "Y = 2\n"]]},
           "db": {"*": [["write", "db/store.py", RIGHT]]},
           "ui": {"*": [["write", "ui/form.py", "F = 1\n"]]},
           "web": {"*": [["write", "web/page.py", "P = 1\n"]]}}


def _table(key: str) -> list[dict[str, str]]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert found, f"no artifact {key}"
    data = max(found, key=lambda a: str(a.created)).data  # the latest version of the key
    return cast(list[dict[str, str]], json.loads(data) if isinstance(data, str) else data)


@pytest.mark.parametrize("policy", ["fail", "warn"])
def test_out_of_scope_branch_reaches_integration_only_under_warn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 policy: str) -> None:
    ctx = make_ctx(tmp_path, monkeypatch, ACTIONS, policy=policy)
    agent_cmd = " ".join(ctx.plan.agent.command)  # type: ignore[union-attr]
    state = work_clusters(plan=str(ctx.plan_file), repo=str(ctx.repo), agent_cmd=agent_cmd, return_state=True)

    report = json.loads((ctx.runs_dir / "report.json").read_text())
    steps = {s["cluster"]: s["status"] for s in report["integration"]["steps"]}
    tree = set(git(ctx.repo, "ls-tree", "-r", "--name-only", "clusters/store/integration").splitlines())
    if policy == "fail":
        assert state.is_failed() and "contract check kept out: api" in (state.message or "")
        assert steps == {"api": "skipped", "db": "merged", "ui": "merged", "web": "merged"}
        assert "ui/hack.py" not in tree and "api/impl.py" not in tree
    else:
        assert state.is_completed(), state.message
        assert set(steps.values()) == {"merged"} and {"ui/hack.py", "api/impl.py"} <= tree
    assert "db/store.py" in tree

    # One row per cluster and check (problems first, marked, no skipped rows); the integrated tree's
    # in an artifact of its own; the merge report only the counts and the problems.
    rows = _table("contract-check-store")
    by = {(r["cluster"], r["check"]): r for r in rows}
    assert rows[0]["status"] == "❌ violation" and not [r for r in rows if "skipped" in r["status"]]
    assert by[("api", "scope")]["status"] == "❌ violation" and by[("api", "scope")]["evidence"] == "ui/hack.py"
    assert by[("api", "verdict")]["evidence"] == ("kept out of integration" if policy == "fail"
                                                  else "passed to integration")
    assert by[("db", "conformance")]["status"] == "✅ ok"
    assert {c for c, _ in by} == {"api", "db", "ui", "web"}
    assert [(r["cluster"], r["status"]) for r in _table("contract-check-integrated-store")] == [
        ("integration", "✅ ok")]
    assert [(r["check"], r["status"]) for r in report["tree_checks"]] == [("conformance", "ok")]
    api = next(c for c in report["checks"] if c["cluster"] == "api")
    assert [r["check"] for r in api["rows"]] == ["scope", "contracts", "verify", "verdict"]
    md = (ctx.runs_dir / "merge-report.md").read_text()
    assert "| api | scope | ❌ violation |" in md and "ui/hack.py |" in md and "| integration |" not in md
    assert "✅" in md.split("## Contract check")[1].splitlines()[2]  # the counts line
