"""The integration worktree written ahead: a run makes it, and its branch, at the base before the
agents start and writes its files while they work (niced); the integration then only catches up,
and a file an agent wrote there meanwhile stops it before any merge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.integration.tip import foreign_tip
from prefect_work_clusters.tasks.integration.worktree import write_ahead
from tests.conftest import git
from tests.integration_helpers import commit_cluster, integrate, setup


def _counting_read_trees(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The arguments of every ``git read-tree`` of ours from here on."""
    seen: list[tuple[str, ...]] = []
    real = gitops.run

    def counted(cwd: Path, *args: str, **kwargs: Any) -> Any:
        if "read-tree" in args:
            seen.append(args[args.index("read-tree") + 1:])
        return real(cwd, *args, **kwargs)

    monkeypatch.setattr(gitops, "run", counted)
    return seen


def test_an_integration_worktree_written_while_the_agents_worked_is_only_caught_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run makes its integration worktree and branch at the base before the agents start (the
    tip recorded as ours) and writes the files in the background; the integration then writes only
    what the merges changed: no file written whole again, an untouched file the very same one."""
    ctx, base = setup(tmp_path)
    ahead = write_ahead(ctx, base)
    assert ahead is not None
    assert gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.integration_branch}") == base
    assert foreign_tip(ctx) is None
    ahead.wait()
    wt = ctx.integration_worktree
    assert gitops.head(wt) == base and not gitchanges.has_changes(wt)
    assert json.loads((ctx.runs_dir / "integration-files.json").read_text()) == {"at": base, "ahead": True}
    untouched = (wt / "app" / "registry.py").stat().st_ino
    assert write_ahead(ctx, base) is None  # it exists: the integration takes it as it finds it

    commit_cluster(ctx, "api", {"api/impl.py": "NAME = 'api'\n"})
    commit_cluster(ctx, "ui", {"ui/impl.py": "NAME = 'ui'\n"})
    read_trees = _counting_read_trees(monkeypatch)
    result = integrate(ctx, base)

    assert result.ok and [s.status for s in result.steps][:2] == ["merged", "merged"]
    assert read_trees and all("--reset" not in args for args in read_trees), read_trees
    assert (wt / "app" / "registry.py").stat().st_ino == untouched
    assert (wt / "ui" / "impl.py").read_text() == "NAME = 'ui'\n" and not gitchanges.has_changes(wt)
    assert not (ctx.runs_dir / "integration-files.json").exists()


def test_an_integration_branch_that_exists_before_a_run_is_not_made_ahead(tmp_path: Path) -> None:
    """Someone's commit on our integration branch name, there before the run: nothing is made
    ahead and its tip is not recorded as ours, so the integration still refuses it."""
    ctx, base = setup(tmp_path)
    git(ctx.repo, "branch", ctx.integration_branch, base + "~1")
    assert write_ahead(ctx, base) is None
    assert not ctx.integration_worktree.exists()
    assert foreign_tip(ctx) is not None


@pytest.mark.parametrize("planted", ["app/config.py", "conftest.py", "build/conftest.py"])
def test_a_file_written_into_the_integration_worktree_while_the_agents_ran_stops_the_integration(
        tmp_path: Path, planted: str) -> None:
    """The worktree exists while the agents work, and an agent not in the sandbox can write in it:
    an edit, a new file, or one git ignores (all three would run in a verify command) stops the
    integration before any merge, the file kept for a person to see."""
    ctx, base = setup(tmp_path, extra={".gitignore": "build/\n"})
    ahead = write_ahead(ctx, base)
    assert ahead is not None
    ahead.wait()
    wt = ctx.integration_worktree
    (wt / planted).parent.mkdir(parents=True, exist_ok=True)
    (wt / planted).write_text("import pytest\npytest.skip('all', allow_module_level=True)\n")
    commit_cluster(ctx, "api", {"api/impl.py": "NAME = 'api'\n"})

    with pytest.raises(WorkClustersError, match=f"did not write.*{planted}"):
        integrate(ctx, base)

    assert (wt / planted).read_text().startswith("import pytest")
    assert gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.integration_branch}") == base


def test_the_write_ahead_runs_at_the_lowest_cpu_priority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Written beside the agents, the integration worktree's files must not slow them: that git
    runs niced (as its checkout workers, which inherit it); the integration's own git does not."""
    ctx, base = setup(tmp_path)
    niceness = ("-c", "alias.niceness=!nice", "niceness")  # `nice` alone prints the niceness it runs at
    usual = int(gitops.out(ctx.repo, *niceness))
    assert usual < 19 and int(gitops.run(ctx.repo, *niceness, idle=True).stdout) == 19
    idle: list[bool] = []
    real = gitops.run

    def recorded(cwd: Path, *args: str, **kwargs: Any) -> Any:
        if "read-tree" in args:
            idle.append(kwargs.get("idle", False))
        return real(cwd, *args, **kwargs)

    monkeypatch.setattr(gitops, "run", recorded)
    ahead = write_ahead(ctx, base)
    assert ahead is not None
    ahead.wait()
    assert idle == [True]
    commit_cluster(ctx, "api", {"api/impl.py": "NAME = 'api'\n"})
    assert integrate(ctx, base).ok
    assert len(idle) > 1 and not any(idle[1:])


def test_a_resumed_worktree_whose_files_are_at_the_tip_keeps_its_leftovers(tmp_path: Path) -> None:
    """Only a worktree written ahead must hold nothing else: one an earlier integration used (its
    verify left ignored files) and whose run stopped right after marking its files is not refused."""
    ctx, base = setup(tmp_path, extra={".gitignore": "build/\n"})
    assert integrate(ctx, base).ok
    wt = ctx.integration_worktree
    (wt / "build").mkdir()
    (wt / "build" / "cache.txt").write_text("a verify command's leftover\n")
    (ctx.runs_dir / "integration-files.json").write_text(json.dumps({"at": gitops.head(wt)}))
    commit_cluster(ctx, "api", {"api/impl.py": "NAME = 'api'\n"})

    assert integrate(ctx, base).ok
    assert (wt / "build" / "cache.txt").is_file() and (wt / "api" / "impl.py").is_file()
