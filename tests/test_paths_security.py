"""Paths that try to leave the repository or reach into another cluster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prefect_work_clusters.tasks.checks.symlinks import bad_symlinks
from prefect_work_clusters.tasks.errors import PlanError
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.plan.load import load_plan
from prefect_work_clusters.tasks.plan.paths import PathSet
from tests.conftest import git, make_repo, rebaseline

PLAN = """name: p
clusters:
  - name: api
    paths: [{api}]
  - name: ui
    paths: [ui/]
"""


@pytest.mark.parametrize("api, expected", [("../outside/", ".."), ("/etc/", "absolute"),
                                           ("api/../../x/", ".."), ("link/", "symlink")])
def test_paths_that_leave_the_repo_are_refused(tmp_path: Path, api: str, expected: str) -> None:
    repo = make_repo(tmp_path, {"api/a.py": "", "ui/b.py": ""})
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", repo / "link")
    rebaseline(repo)
    plan = tmp_path / "p.yaml"
    plan.write_text(PLAN.format(api=api))
    with pytest.raises(PlanError) as refused:
        load_plan(plan, repo)
    assert any(p.field.startswith("clusters.0.paths") and expected in p.message for p in refused.value.problems), \
        refused.value.problems


def test_committed_symlinks_out_of_the_repo_or_into_another_cluster_are_flagged(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"api/a.py": "", "ui/b.py": ""})
    base = git(repo, "rev-parse", "HEAD")
    os.symlink("/etc/passwd", repo / "api" / "passwd")
    os.symlink("../ui/b.py", repo / "api" / "peek.py")
    os.symlink("a.py", repo / "api" / "fine.py")
    os.symlink("../../../outside", repo / "api" / "up")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "links")
    rebaseline(repo)
    changed = git(repo, "diff", "--name-only", f"{base}..HEAD").split()
    expected = [
        "api/passwd is a symlink to /etc/passwd, outside the repository",
        "api/peek.py is a symlink to ../ui/b.py, inside cluster ui's paths",
        "api/up is a symlink to ../../../outside, outside the repository",
    ]
    assert sorted(bad_symlinks(repo, "HEAD", changed, lambda: {"ui": PathSet(["ui/"])})) == expected
    # The same from the changed files as an attempt finds them: their diff says which are symlinks.
    found = githistory.changed_files(repo, base, "HEAD")
    assert sorted(found) == sorted(changed) and sorted(found.symlinks) == ["api/fine.py", *sorted(
        e.split(" ")[0] for e in expected)]
    assert sorted(bad_symlinks(repo, "HEAD", found, lambda: {"ui": PathSet(["ui/"])})) == expected


def test_a_cluster_committing_an_escaping_symlink_is_not_merged(tmp_path: Path) -> None:
    from prefect_work_clusters.tasks.agents.attempt import AgentFailed, run_attempt
    from prefect_work_clusters.tasks.checks.contract import check_cluster
    from prefect_work_clusters.tasks.options import RunOptions
    from prefect_work_clusters.tasks.resolve import resolve_run
    from prefect_work_clusters.tasks.worktrees import prepare
    from tests.conftest import write_agent
    from tests.loop_helpers import plan_yaml, shop_repo

    agent = write_agent(tmp_path, """
        os.symlink("/etc/passwd", "api/passwd")
        os.symlink("../ui/__init__.py", "api/peek.py")
    """)
    repo, plan = shop_repo(tmp_path, plan_yaml(extra="contract:\n  on_violation: fail\n"))
    ctx = resolve_run(plan, repo, RunOptions(agent_cmd=agent))
    prepare(ctx)
    try:
        record = run_attempt(ctx, "api", 1)
    except AgentFailed as failed:  # a per-attempt check may refuse it already
        record = failed.record
    check = check_cluster(ctx, record)
    assert check.status in ("violation", "agent-failed") and not check.mergeable
    evidence = [e for row in check.rows if row.check == "symlinks" for e in row.evidence]
    assert sorted(evidence) == ["api/passwd is a symlink to /etc/passwd, outside the repository",
                                "api/peek.py is a symlink to ../ui/__init__.py, inside cluster ui's paths"]
