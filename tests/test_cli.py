"""The `work-clusters` command line as a user runs it: a real process, real repo, exit codes."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import branches, cli, snapshot, write_agent
from tests.loop_helpers import WRITER, made_before_the_flow, plan_yaml, shop_repo

ROOT = Path(__file__).resolve().parent.parent


def test_validate_prints_the_tree_and_exits_0(tmp_path: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    res = cli("validate", str(plan), "--repo", str(repo), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Cluster 1" in res.stdout and "api/" in res.stdout and "valid" in res.stdout


def test_bad_plan_exits_2_with_one_clear_message_and_creates_nothing(tmp_path: Path) -> None:
    repo, plan = shop_repo(tmp_path, plan_yaml().replace("paths: [ui/]", "paths: [api/]"))
    before = snapshot(repo), branches(repo)
    for args in (["validate"], ["run", "--agent-cmd", "true"]):
        res = cli(*args, str(plan), "--repo", str(repo), cwd=tmp_path)
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr
        assert re.search(r"shop\.yaml:\d+: clusters", res.stderr), res.stderr
    assert (snapshot(repo), branches(repo)) == before
    assert not (tmp_path / "repo.clusters").exists()


def test_not_a_repo_and_missing_agent_are_bad_input(tmp_path: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    res = cli("run", str(plan), "--repo", str(tmp_path), cwd=tmp_path)
    assert res.returncode == 2 and "not a git repository" in res.stderr
    res = cli("run", str(plan), "--repo", str(repo), cwd=tmp_path)
    assert res.returncode == 2 and "--agent" in res.stderr
    assert not (tmp_path / "repo.clusters").exists()


def test_run_three_clusters_with_a_command_agent(tmp_path: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    records = tmp_path / "records"
    records.mkdir()
    res = cli("run", "shop.yaml", "--repo", "repo", "--agent-cmd", write_agent(tmp_path, WRITER),
              cwd=tmp_path, env={"RECORD_DIR": str(records)})
    assert res.returncode == 0, res.stdout + res.stderr
    assert "integrated and verified" in res.stdout
    assert "merge-report.md" in res.stdout
    # Against a running server too, the CLI's head start made them while Prefect was imported.
    assert made_before_the_flow(repo) == {"api": True, "ui": True, "db": True}
    status = cli("status", "shop.yaml", "--repo", "repo", cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.count("yes") == 3
    clean = cli("clean", "shop.yaml", "--repo", "repo", "--branches", cwd=tmp_path)
    assert clean.returncode == 0, clean.stderr
    # Cluster branches and the base live on in the integration branch; that one is not landed, so kept.
    assert sorted(branches(repo)) == ["clusters/shop/integration", "main"]
    assert "kept branch clusters/shop/integration" in clean.stdout


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.+?)\n```", readme)
    assert "work-clusters demo" in commands[0]
    test_cmd = commands[1].split("&&")[-1].strip()
    assert test_cmd in (ROOT / ".ci/run").read_text()
