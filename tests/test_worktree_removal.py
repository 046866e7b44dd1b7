"""Removing many worktrees at once (the end of a run without --keep-worktrees): their folders
deleted side by side and one prune, instead of a ``git worktree remove`` that reads every worktree
each time. Only linked worktrees of the repository are deleted, and nothing is followed out."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from prefect_work_clusters.flows.work_clusters import work_clusters
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from tests.conftest import git, make_repo, write_agent
from tests.loop_helpers import WRITER, plan_yaml, shop_repo


def _listed(repo: Path) -> list[Path]:
    """The worktrees git has registered for ``repo``, the main one first."""
    return [Path(line.split(" ", 1)[1]).resolve() for line in git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]


def test_only_linked_worktrees_go_and_nothing_is_followed_out_of_them(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"README.md": "# r\n", "a/x.py": "X = 1\n"})
    made = [tmp_path / f"w{n}" for n in range(3)]
    for n, path in enumerate(made):
        git(repo, "worktree", "add", "-q", "-b", f"b{n}", str(path))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not ours\n")
    (made[0] / "escape").symlink_to(outside)  # an agent's link out of its worktree
    (made[1] / "a" / "new.py").write_text("uncommitted\n")  # removed anyway, as --force does
    plain = tmp_path / "plain"  # not a worktree: a path no caller should pass, kept
    plain.mkdir()
    (plain / "file").write_text("kept\n")

    gitworktrees.remove_worktrees(repo, [made[0], made[1], plain, repo])

    assert not made[0].exists() and not made[1].exists() and made[2].is_dir()
    assert (outside / "keep.txt").read_text() == "not ours\n" and (plain / "file").exists()
    assert (repo / ".git").is_dir() and (repo / "README.md").exists()  # the main worktree is never removed
    assert _listed(repo) == [repo.resolve(), made[2].resolve()]
    assert git(repo, "branch", "--list", "b0") != ""  # branches stay


# The integration's verify command, run while a run that removes its worktrees integrates: it waits
# for the api worktree to be gone, says whether it went, then writes into its place.
LATE_WRITER = """
import pathlib, sys, time
api, said = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
deadline = time.monotonic() + 20
while api.exists() and time.monotonic() < deadline:
    time.sleep(0.01)
said.write_text("still there" if api.exists() else "gone")
api.mkdir(parents=True, exist_ok=True)
(api / "late.txt").write_text("written after the run let the worktree go\\n")
"""


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_without_kept_worktrees_removes_them_while_it_integrates(tmp_path: Path, records: Path) -> None:
    script = tmp_path / "late_writer.py"
    script.write_text(LATE_WRITER)
    workspace = tmp_path / "repo.clusters" / "shop"
    said = tmp_path / "said.txt"
    repo, plan = shop_repo(tmp_path, plan_yaml(verify=f"{sys.executable} {script} {workspace / 'api'} {said}"))

    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=write_agent(tmp_path, WRITER),
                          keep_worktrees=False, return_state=True)

    assert state.is_completed(), state.message
    assert said.read_text() == "gone"  # deleted before the integration's verify ran, not after it
    report = json.loads((workspace / ".runs" / "report.json").read_text())
    assert any(f"files appeared in {workspace / 'api'} while the run removed it" in n for n in report["notes"]), \
        report["notes"]
    for cluster in ("api", "ui", "db"):
        assert not (workspace / cluster).exists()  # the late write went with it
        assert git(repo, "rev-parse", "--verify", f"clusters/shop/{cluster}")  # branches stay
    assert _listed(repo) == [repo.resolve(), (workspace / "integration").resolve()]
    assert git(repo, "show", f"{report['integration']['final_sha']}:api/impl.py") == "NAME = 'api'"


def test_without_rm_the_folders_are_deleted_all_the_same_and_nothing_is_called_a_late_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path, {"README.md": "# r\n", "a/x.py": "X = 1\n"})
    made = [tmp_path / f"w{n}" for n in range(2)]
    for n, path in enumerate(made):
        git(repo, "worktree", "add", "-q", "-b", f"b{n}", str(path))
    monkeypatch.setattr(gitworktrees, "RM", None)  # a bare container without coreutils' rm

    notes = gitworktrees.begin_removal(repo, made, background=True).finish()

    assert notes == [] and not any(path.exists() for path in made)
    assert _listed(repo) == [repo.resolve()]
