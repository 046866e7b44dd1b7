"""Integration through the Prefect flows: the ladder, the change accounting and landing as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

from prefect_work_clusters.flows.work_clusters import integrate_clusters, work_clusters
from tests.conftest import git, make_repo, user_changes_expected, write_agent
from tests.integration_helpers import FILES, plan_text, py

pytestmark = pytest.mark.usefixtures("prefect_harness")

# One script for both roles: a cluster registers itself (and api/ui set their own timeout); the
# integration role records that it ran and keeps our side of the conflict only: a lossy resolution.
AGENT = """
import json
role, cluster = os.environ["WC_ROLE"], os.environ["WC_CLUSTER"]
wt = pathlib.Path(os.environ["WC_WORKTREE"])
with pathlib.Path(os.environ["CALLS"]).open("a") as fh:
    fh.write(json.dumps({"role": role, "conflicts": os.environ.get("WC_CONFLICTS")}) + "\\n")
if role == "integration":
    subprocess.run(["git", "checkout", "--ours", "--", "app/config.py"], check=True)
    sys.exit(0)
reg = wt / "app" / "registry.py"
reg.write_text(reg.read_text().replace("    'core',\\n", f"    'core',\\n    '{cluster}',\\n"))
(wt / cluster / "impl.py").write_text(f"NAME = {cluster!r}\\n")
if os.environ.get("TIMEOUTS") and cluster in ("api", "ui"):
    (wt / "app" / "config.py").write_text(f"PROFILE = 'dev'\\nTIMEOUT = {60 if cluster == 'api' else 10}\\n")
"""


def _report(repo: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((repo.parent / "repo.clusters/shop/.runs/report.json").read_text())


def _calls(tmp_path: Path) -> list[dict[str, str]]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, str]:
    monkeypatch.setenv("CALLS", str(tmp_path / "calls.jsonl"))
    repo = make_repo(tmp_path, FILES)
    plan = tmp_path / "shop.yaml"
    plan.write_text(plan_text([py("from app.registry import REGISTRY; assert len(REGISTRY) == 4, REGISTRY")]))
    return repo, plan, write_agent(tmp_path, AGENT)


def test_additive_integration_lands_on_the_checked_out_main(tmp_path: Path, shop: tuple[Path, Path, str]) -> None:
    repo, plan, agent = shop
    (repo / "notes.txt").write_text("untracked\n")
    (repo / "README.md").write_text("# shop, edited\n")
    user_changes_expected(repo)  # it lands; the test checks the user's files itself

    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, land=True, return_state=True)

    assert state.is_completed(), state.message
    assert [c["role"] for c in _calls(tmp_path)] == ["cluster"] * 3  # the integration agent never ran
    report = _report(repo)
    integ = report["integration"]
    assert [f["resolved_by"] for s in integ["steps"] for f in s["files"]] == ["additive", "additive"]
    assert report["land"]["landed"] and git(repo, "rev-parse", "main") == integ["final_sha"]
    assert (repo / "notes.txt").read_text() == "untracked\n" and (repo / "README.md").read_text() == "# shop, edited\n"
    with get_client(sync_client=True) as client:  # this run's artifact: other tests publish the same key
        run = ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
        key = ArtifactFilter(key=ArtifactFilterKey(any_=["merge-report-shop"]), flow_run_id=run)
        (artifact,) = client.read_artifacts(artifact_filter=key)
    for section in ("## Preflight", "## Conflicts", "resolved by **additive**", "## Decisions", "## Change accounting",
                    integ["final_sha"]):
        assert section in str(artifact.data), section


def test_lost_lines_fail_the_run_and_block_land_until_a_decision_explains_them(
        tmp_path: Path, shop: tuple[Path, Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    repo, plan, agent = shop
    monkeypatch.setenv("TIMEOUTS", "1")
    main = git(repo, "rev-parse", "main")
    user_changes_expected(repo)  # it lands in the end, once a person explained the loss

    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, land=True, return_state=True)

    assert state.is_failed() and "changes not accounted for: 1 lost in app/config.py (ui)" in str(state.message)
    report = _report(repo)
    assert report["ok"] is False and not report["land"]["landed"]
    assert "1 lost in app/config.py (ui)" in report["land"]["message"]
    assert git(repo, "rev-parse", "main") == main
    # The agent resolved the conflict, then was told what the accounting found (and could not fix it).
    assert _calls(tmp_path)[-2:] == [{"role": "integration", "conflicts": "app/config.py"},
                                     {"role": "integration", "conflicts": ""}]
    md = (repo.parent / "repo.clusters/shop/.runs/merge-report.md").read_text()
    assert "**Unexplained**: 1 line(s) lost in `app/config.py` (ui)" in md and "TIMEOUT = 10" in md

    # A person accepts the loss and says why; `integrate --land` then re-runs only the integration.
    decisions = repo.parent / "repo.clusters/shop/.runs/integration/decisions/person.md"
    decisions.write_text("## app/config.py\n\nui works with api's 60 s timeout; 10 s was a guess.\n")
    state = integrate_clusters(plan=str(plan), repo=str(repo), land=True, return_state=True)
    assert state.is_completed(), state.message
    assert len(_calls(tmp_path)) == 5  # no agent ran again
    report = _report(repo)
    assert report["land"]["landed"] and git(repo, "rev-parse", "main") == report["integration"]["final_sha"]
    (issue,) = report["integration"]["accounting"]["issues"]
    assert issue["by"] == ["ui"] and issue["reason"].startswith("ui works with")
