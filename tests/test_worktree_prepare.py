"""Preparing a run's worktrees (issue 16): the new cluster branches made in one git transaction
before the worktrees are registered one by one, and what happens when git refuses one of them;
against real git."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.git.core import GitError
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.resolve import resolve_run
from prefect_work_clusters.tasks.worktrees import prepare
from tests.conftest import git
from tests.loop_helpers import shop_repo


def _reflog(repo: Path, branch: str) -> str:
    return git(repo, "reflog", "show", "--format=%gs", f"refs/heads/{branch}")


def test_new_cluster_branches_are_made_together_and_resume_keeps_them(tmp_path: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    ctx = resolve_run(plan, repo, RunOptions(agent_cmd="true"))
    prepared = prepare(ctx)
    for record in prepared.records:
        # update-ref's reason, not `worktree add -b`'s "branch: Created from ..."
        assert _reflog(repo, record.branch) == "work-clusters: cluster branch of shop"
        assert git(repo, "rev-parse", record.branch) == prepared.base_sha
        assert git(record.worktree, "symbolic-ref", "HEAD") == f"refs/heads/{record.branch}"
        assert record.status == "pending" and not record.resumed
    # A finished branch is found again by the next run; nothing is made twice.
    api = prepared.records[0]
    git(api.worktree, "commit", "-q", "--allow-empty", "-m", f"done\n\n{gitops.FINISHED_TRAILER}: api attempt 1")
    again = prepare(ctx)
    assert [r.resumed for r in again.records] == [True, False, False]
    assert len(_reflog(repo, api.branch).splitlines()) == 2  # made, then the agent's commit


def test_a_name_git_refuses_makes_none_and_the_worktree_step_says_which(tmp_path: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    ctx = resolve_run(plan, repo, RunOptions(agent_cmd="true"))
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "branch", f"{ctx.branch('db')}/old")  # refs/heads/<prefix>/db cannot exist beside it
    wanted = [ctx.branch(c) for c in ("api", "ui", "db")]
    assert gitworktrees.make_branches(repo, wanted, base, "test") == frozenset()
    assert git(repo, "for-each-ref", "--format=%(refname)", f"refs/heads/{ctx.prefix}/") == \
        f"refs/heads/{ctx.branch('db')}/old"  # all or none: api and ui were not made either
    # The run then makes them one by one, and the one git refuses fails with git's own words.
    with pytest.raises(GitError, match=f"cannot create 'refs/heads/{ctx.branch('db')}'"):
        prepare(ctx)
    for branch in wanted[:2]:
        assert _reflog(repo, branch).startswith("branch: Created from")  # worktree add -b's
