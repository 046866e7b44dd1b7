"""Faults nobody had tried (issue 21): repos that are odd but legitimate must run end to end.

A path with spaces and non-ASCII characters, LFS attributes without git-lfs installed, and a
submodule: each repo runs the three-cluster plan, integrates, and leaves the user's side as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from prefect_work_clusters.flows.work_clusters import work_clusters
from tests.conftest import git, make_repo, rebaseline, write_agent
from tests.loop_helpers import BASE_FILES, WRITER, plan_yaml

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _spaces(root: Path) -> Path:
    return make_repo(root, BASE_FILES, name="my repo été")


def _lfs(root: Path) -> Path:
    assert shutil.which("git-lfs") is None, "this test is about a machine without git-lfs"
    return make_repo(root, {**BASE_FILES, ".gitattributes": "*.bin filter=lfs diff=lfs merge=lfs -text\n",
                            "assets/logo.bin": "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n"})


def _submodule(root: Path) -> Path:
    sub = make_repo(root, {"lib.py": "X = 1\n"}, name="sub")
    repo = make_repo(root, BASE_FILES)
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendor/sub")
    git(repo, "commit", "-qm", "add a submodule")
    rebaseline(repo)
    return repo


@pytest.mark.parametrize("make", [_spaces, _lfs, _submodule], ids=["spaces and non-ascii path", "lfs without git-lfs",
                                                                  "submodule"])
def test_an_odd_repo_runs_end_to_end(tmp_path: Path, records: Path, make: object) -> None:
    assert callable(make)
    repo = make(tmp_path)
    plan = tmp_path / "shop.yaml"
    plan.write_text(plan_yaml())
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=write_agent(tmp_path, WRITER), return_state=True)
    assert state.is_completed(), state.message
    report = json.loads((repo.parent / f"{repo.name}.clusters" / "shop" / ".runs" / "report.json").read_text())
    assert report["ok"] and {c["status"] for c in report["clusters"]} == {"succeeded"}
    merged = git(repo, "ls-tree", "-r", "--name-only", "clusters/shop/integration").splitlines()
    assert {"api/impl.py", "ui/impl.py", "db/impl.py"} <= set(merged)
