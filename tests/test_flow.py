"""The whole loop through Prefect: mapped agents, integration, artifacts read back, repo untouched."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from prefect_work_clusters.flows.work_clusters import integrate_clusters, work_clusters
from tests.conftest import branches, git, read_artifact, rebaseline, snapshot, write_agent
from tests.loop_helpers import WRITER, plan_yaml, shop_repo

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _report(repo: Path) -> dict:
    return json.loads((repo.parent / "repo.clusters" / "shop" / ".runs" / "report.json").read_text())


def test_three_clusters_integrate_and_verify(tmp_path: Path, records: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    (repo / "notes.txt").write_text("the user's untracked file\n")
    (repo / "README.md").write_text("# shop, edited but not committed\n")
    rebaseline(repo)  # the invariant fixture now checks these survive, byte for byte
    before = snapshot(repo)

    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=write_agent(tmp_path, WRITER),
                          return_state=True)

    assert state.is_completed(), state.message
    assert snapshot(repo) == before  # the user's branch, HEAD, tree and untracked files untouched
    report = _report(repo)
    assert report["ok"] is True
    assert [c["status"] for c in report["clusters"]] == ["succeeded"] * 3
    assert [s["status"] for s in report["integration"]["steps"]] == ["merged"] * 3
    assert set(report["phases"]) == {"identify", "worktrees", "agents", "check", "integrate", "verify"}
    for c in report["clusters"]:
        assert c["attempts"] == 1 and c["exit_code"] == 0 and c["head_sha"] and c["base_sha"] == report["base_sha"]
    final = report["integration"]["final_sha"]
    assert git(repo, "rev-parse", "clusters/shop/integration") == final
    assert git(repo, "show", f"{final}:ui/impl.py") == "NAME = 'ui'"
    # Both artifacts, read back through the Prefect client.
    table = read_artifact(state, "contract-check-shop")
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert {r["cluster"]: r["status"] for r in rows} == {"api": "✅ ok", "ui": "✅ ok", "db": "✅ ok"}
    md = read_artifact(state, "merge-report-shop")
    assert "# Merge report: shop" in md.data and final in md.data
    assert (repo.parent / "repo.clusters/shop/.runs/merge-report.md").read_text() == md.data


def test_one_failing_cluster_does_not_stop_the_others(tmp_path: Path, records: Path) -> None:
    repo, plan = shop_repo(tmp_path, plan_yaml(verify=f"{sys.executable} -c \"import api.impl, db.impl\""))
    agent = write_agent(tmp_path, WRITER + """
if cluster == "ui":
    sys.exit(5)
""")
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)
    assert state.is_failed() and "ui" in state.message
    report = _report(repo)
    by = {c["cluster"]: c for c in report["clusters"]}
    assert by["ui"]["status"] == "failed" and by["ui"]["exit_code"] == 5
    assert by["api"]["status"] == by["db"]["status"] == "succeeded"
    steps = {s["cluster"]: s["status"] for s in report["integration"]["steps"]}
    assert steps == {"api": "merged", "ui": "skipped", "db": "merged"}
    assert report["integration"]["verify"][0]["exit_code"] == 0


def test_prefect_retries_give_the_attempt_number(tmp_path: Path, records: Path) -> None:
    repo, plan = shop_repo(tmp_path, plan_yaml().replace("retries: 0", "retries: 2"))
    agent = write_agent(tmp_path, WRITER + """
if cluster == "db" and os.environ["WC_ATTEMPT"] != "3":
    sys.exit(1)
""")
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)
    assert state.is_completed(), state.message
    by = {c["cluster"]: c for c in _report(repo)["clusters"]}
    assert by["db"]["attempts"] == 3 and by["api"]["attempts"] == 1
    assert sorted(p.name for p in records.glob("db-*")) == ["db-1.txt", "db-2.txt", "db-3.txt"]


def test_resume_skips_finished_clusters_and_integrate_reruns(tmp_path: Path, records: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    agent = write_agent(tmp_path, WRITER)
    assert work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True).is_completed()
    first = (records / "runs.log").read_text()
    assert work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True).is_completed()
    assert (records / "runs.log").read_text() == first  # no agent ran again
    assert all(c["resumed"] for c in _report(repo)["clusters"])
    assert integrate_clusters(plan=str(plan), repo=str(repo), return_state=True).is_completed()
    assert _report(repo)["ok"] is True


def test_sparse_worktrees_hold_only_their_paths(tmp_path: Path, records: Path) -> None:
    repo, plan = shop_repo(tmp_path, plan_yaml(extra="worktree:\n  checkout: sparse\n"))
    seen = write_agent(tmp_path, WRITER + """
import json
status = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout
files = sorted(str(p) for p in pathlib.Path(".").rglob("*") if ".git" not in p.parts and p.is_file())
(pathlib.Path(os.environ["RECORD_DIR"]) / f"{cluster}-tree.json").write_text(json.dumps([status, files]))
""")
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=seen, return_state=True)
    assert state.is_completed(), state.message
    status, files = json.loads((records / "api-tree.json").read_text())
    assert status.strip() == "?? api/impl.py"  # nothing shows as deleted: the index was filled
    assert "api/__init__.py" in files and "README.md" in files and "contracts/api.py" in files
    assert not any(f.startswith(("ui/", "db/", "tests/")) for f in files)
    assert _report(repo)["ok"] is True
    # The integration worktree is sparse too: every cluster's folders (its verify imported all
    # three), none of the rest, and nothing shows as deleted.
    wt = repo.parent / "repo.clusters/shop/integration"
    assert all((wt / c / "impl.py").is_file() for c in ("api", "ui", "db")) and (wt / "app/registry.py").is_file()
    assert not (wt / "tests").exists() and git(repo, "ls-tree", "-r", "--name-only", "HEAD", "tests") != ""
    assert git(wt, "status", "--porcelain") == ""


def test_conflict_stops_integration_with_instructions(tmp_path: Path, records: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    agent = write_agent(tmp_path, WRITER + """
reg = wt / "app" / "registry.py"
reg.write_text(reg.read_text().replace("'core',", f"'core-{cluster}',"))
""")
    before, main_before = branches(repo), git(repo, "rev-parse", "main")
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)
    assert state.is_failed() and "conflict" in state.message
    integ = _report(repo)["integration"]
    assert [s["status"] for s in integ["steps"]] == ["merged", "conflict", "not-reached"]
    assert integ["steps"][1]["conflicts"] == ["app/registry.py"]
    assert "clusters/shop/ui" in integ["instructions"] and "merge --abort" in integ["instructions"]
    wt = repo.parent / "repo.clusters/shop/integration"
    assert git(wt, "diff", "--name-only", "--diff-filter=U") == "app/registry.py"
    assert set(before) <= set(branches(repo)) and git(repo, "rev-parse", "main") == main_before
    # Follow the instructions as a person would: resolve, commit, integrate again.
    (wt / "app/registry.py").write_text("REGISTRY = [\n    'core-api',\n    'core-ui',\n]\n")
    git(wt, "add", "--", "app/registry.py")
    git(wt, "commit", "--no-edit", "-q")
    assert integrate_clusters(plan=str(plan), repo=str(repo), return_state=True).is_failed()  # db conflicts too
    steps = [s["status"] for s in _report(repo)["integration"]["steps"]]
    assert steps == ["merged", "merged", "conflict"]
    assert "'core-api'," in (wt / "app/registry.py").read_text()  # the person's resolution was kept
    md = (repo.parent / "repo.clusters/shop/.runs/merge-report.md").read_text()
    assert "app/registry.py" in md and "left for a person" in md
    assert ast.literal_eval((records / "ui-1.txt").read_text())["env"]["WC_CLUSTER"] == "ui"
