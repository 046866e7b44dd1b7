"""Removing many worktrees at once (the end of a run without --keep-worktrees): their folders
deleted side by side and one prune, instead of a ``git worktree remove`` that reads every worktree
each time. Only linked worktrees of the repository are deleted, and nothing is followed out."""

from __future__ import annotations

from pathlib import Path

from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from tests.conftest import git, make_repo


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
    listed = [line.split(" ", 1)[1] for line in git(repo, "worktree", "list", "--porcelain").splitlines()
              if line.startswith("worktree ")]
    assert [Path(p).resolve() for p in listed] == [repo.resolve(), made[2].resolve()]
    assert git(repo, "branch", "--list", "b0") != ""  # branches stay
