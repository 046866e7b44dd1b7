"""Containment (issue 12, items 1, 2, 6, 7, 8): hostile agents, as real subprocesses, do their
normal work and then attack the shared git dir, the user's checkout or another worktree. Nothing
planted may run (a marker file stays absent), in our git or in the user's own later git; the
tampering is undone and named; the honest clusters still finish and merge."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_work_clusters.tasks.agents.attempt import AgentFailed, run_attempt
from prefect_work_clusters.tasks.checks import containment, user_side
from prefect_work_clusters.tasks.checks.contract import check_cluster
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.integration.tip import foreign_tip
from prefect_work_clusters.tasks.integration.worktree import write_ahead
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.resolve import resolve_run
from prefect_work_clusters.tasks.worktrees import prepare
from tests.conftest import CLI, git, user_changes_expected, write_agent
from tests.hostile_helpers import HOSTILE, cluster_verify, hostile_ctx, markers, users_git_runs_nothing_planted
from tests.loop_helpers import plan_yaml, shop_repo


@pytest.mark.parametrize("attack, named", [
    ("hooks", ".git/hooks/post-commit added"),
    ("hooks-fifo", ".git/hooks/post-commit added"),
    ("hooks-symlink", ".git/hooks added"),
    ("hookspath", ".git/config changed"),
    ("fsmonitor", ".git/config changed"),
    ("filter", ".git/info/attributes added"),
    ("merge", ".git/config changed"),
    ("exclude", ".git/info/exclude"),
    ("replace", "ref refs/replace/"),
    ("move-other", "ref refs/heads/clusters/shop/db changed"),
    ("move-integration", "ref refs/heads/clusters/shop/integration changed"),
])
def test_a_planted_attack_never_runs_is_restored_and_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            attack: str, named: str) -> None:
    ctx = hostile_ctx(tmp_path, monkeypatch, {"api": [attack]}, extra="")
    ctx = ctx.model_copy(update={"plan": ctx.plan.model_copy(update={"limits": ctx.plan.limits.model_copy(
        update={"retries": 1})})})
    base = prepare(ctx).base_sha
    ahead = write_ahead(ctx, base)  # as a run does: the integration worktree is there while agents work
    assert ahead is not None
    common = gitops.common_dir(ctx.repo)
    config_before = (common / "config").read_bytes()
    db = run_attempt(ctx, "db", 1)  # honest, before the attack: its branch must survive it
    with pytest.raises(AgentFailed) as failed:
        run_attempt(ctx, "api", 1)
    failure = failed.value.record.attempts[-1].failure or ""
    assert "changed the shared git dir" in failure and named in failure
    # Restored at once: the honest clusters after it work as if nothing happened.
    assert (common / "config").read_bytes() == config_before
    assert not (common / "hooks").is_symlink() and (common / "hooks" / "pre-commit.sample").is_file()
    assert not [h for h in os.listdir(common / "hooks") if not h.endswith(".sample")]
    outside = tmp_path / "outside-hooks"
    assert not outside.exists() or os.listdir(outside) == ["post-commit"]  # nothing deleted through the link
    assert not (common / "info" / "attributes").exists()
    assert "ui/" not in (common / "info" / "exclude").read_text()
    assert not git(ctx.repo, "for-each-ref", "refs/replace/")
    assert gitops.resolve_ref(ctx.repo, ctx.branch("db")) == db.head_sha
    assert gitops.resolve_ref(ctx.repo, ctx.integration_branch) == base and foreign_tip(ctx) is None
    ui = run_attempt(ctx, "ui", 1)
    assert "ui/impl.py" in git(ctx.repo, "show", "--name-only", "--format=", ui.head_sha + "~1")
    api = run_attempt(ctx, "api", 2)  # the retry, honest: it succeeds and the row stays in the check
    check = check_cluster(ctx, api)
    rows = {r.check: r for r in check.rows}
    assert check.mergeable and rows["git-dir"].status == "violation"
    assert any(named in e for e in rows["git-dir"].evidence)
    assert "EDITED" not in git(ctx.repo, "show", f"{ctx.base_branch}:contracts/api.py")
    assert containment.finish(ctx) == []
    ahead.wait()  # the integration worktree's files, written at the base with nothing planted run
    assert not gitchanges.has_changes(ctx.integration_worktree)
    assert markers(tmp_path) == []
    users_git_runs_nothing_planted(ctx, tmp_path)


def test_planted_filter_and_merge_driver_never_run_in_our_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted between our calls (as a concurrent agent would): our own commit and merge in a
    worktree pass through untouched; git's own line merge stands in for the driver."""
    ctx = hostile_ctx(tmp_path, monkeypatch, {})
    prepare(ctx)
    containment.begin(ctx)
    marker = tmp_path / "markers"
    evil = tmp_path / "evil.sh"
    evil.write_text(f"#!/bin/sh\ntouch {marker}/planted\ncat\n")
    evil.chmod(0o755)
    for key in ("filter.ev.clean", "filter.ev.smudge", "filter.ev.process", "merge.ev.driver", "gpg.program"):
        git(ctx.repo, "config", key, str(evil))
    git(ctx.repo, "config", "commit.gpgSign", "true")
    (gitops.common_dir(ctx.repo) / "info").mkdir(exist_ok=True)
    (gitops.common_dir(ctx.repo) / "info" / "attributes").write_text("* filter=ev merge=ev\n")
    wt = ctx.worktree("api")
    (wt / "app" / "registry.py").write_text("REGISTRY = [\n    'core',\n    'api',\n]\n")
    gitchanges.commit_all(wt, "api registers")
    other = ctx.worktree("ui")
    (other / "app" / "registry.py").write_text("REGISTRY = [\n    'ui',\n    'core',\n]\n")
    gitchanges.commit_all(other, "ui registers")
    gitops.run(wt, "merge", "--no-edit", ctx.branch("ui"), env=gitops.identity_env(wt))
    assert (wt / "app" / "registry.py").read_text() == "REGISTRY = [\n    'ui',\n    'core',\n    'api',\n]\n"
    assert markers(tmp_path) == []
    notes = containment.finish(ctx)  # no window was open: the user's own change, kept and reported
    assert any("no agent was running, so kept" in n and ".git/config changed" in n for n in notes)


def test_writes_into_the_users_checkout_and_another_worktree_are_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = hostile_ctx(tmp_path, monkeypatch, {"api": ["user-checkout", "other-worktree"]})
    user_changes_expected(ctx.repo)
    prepare(ctx)
    containment.begin(ctx)
    db = run_attempt(ctx, "db", 1)
    run_attempt(ctx, "api", 1)  # writes outside the repo's git dir: not a git-dir violation, but seen
    ui = run_attempt(ctx, "ui", 1)
    notes = containment.finish(ctx)
    assert any("planted.txt" in n and containment.USER_SIDE in n and "not reverted" in n for n in notes), notes
    assert (ctx.repo / "planted.txt").read_text() == "by an agent\n"  # never reverted: it may be yours
    assert any("db's worktree after its agent finished" in n and "db/injected.py" in n and "api/injected.py" in n
               for n in notes), notes
    # Never committed as db's work, and gone from its worktree.
    for rec in (db, ui):
        assert "injected" not in git(ctx.repo, "log", "--name-only", "--format=", rec.branch)
    assert not (ctx.worktree("db") / "db" / "injected.py").exists()


def test_worktrees_the_run_removes_get_their_last_look_before_they_go(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without --keep-worktrees the run lets its cluster worktrees go before it integrates: their
    # last look (writes after their agent finished) is taken by the removal, before its rm starts.
    ctx = hostile_ctx(tmp_path, monkeypatch, {"api": ["other-worktree"]})
    prepare(ctx)
    containment.begin(ctx)
    db = run_attempt(ctx, "db", 1)
    run_attempt(ctx, "api", 1)  # writes into db's worktree, whose agent has finished
    gone = [ctx.worktree("db"), ctx.worktree("ui")]
    removal = gitworktrees.begin_removal(ctx.repo, gone, background=True, first=containment.let_go(ctx, ["db", "ui"]))
    kept = containment.finish(ctx)  # no second look at worktrees let go
    notes = removal.finish()
    assert [n for n in notes if "db's worktree after its agent finished" in n and "db/injected.py" in n], notes
    assert not [n for n in kept if "after its agent finished" in n], kept
    assert not any(path.exists() for path in gone)
    assert "injected" not in git(ctx.repo, "log", "--name-only", "--format=", db.branch)


def test_the_checkout_read_while_the_worktrees_are_made_is_the_watchs_baseline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The flow reads your checkout's status as the worktrees step starts; what changes there after
    # that read (here by you, before the first agent) is reported with what changed while agents ran.
    ctx = hostile_ctx(tmp_path, monkeypatch, {})
    user_changes_expected(ctx.repo)
    early = user_side.read_checkout(ctx.repo)
    early.result()
    (ctx.repo / "edited-meanwhile.txt").write_text("by you, while the worktrees were made\n")
    prepare(ctx)
    containment.begin(ctx, fresh=True, checkout=early)
    notes = containment.finish(ctx)
    assert any("edited-meanwhile.txt" in n and containment.USER_SIDE in n for n in notes), notes


def test_a_file_planted_in_the_integration_worktree_stops_the_run_before_any_merge(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run makes its integration worktree before the agents start; a file an agent plants there
    (a conftest.py that would skip the integration's tests) stops the integration, nothing merged."""
    from prefect_work_clusters.flows.work_clusters import work_clusters

    ctx = hostile_ctx(tmp_path, monkeypatch, {"api": ["integration-worktree"]})
    state = work_clusters(plan=str(ctx.plan_file), repo=str(ctx.repo), agent_cmd=write_agent(tmp_path, HOSTILE),
                          return_state=True)
    assert state.is_failed() and "did not write" in (state.message or "") and "conftest.py" in (state.message or "")
    assert (ctx.integration_worktree / "conftest.py").is_file()
    base = git(ctx.repo, "rev-parse", f"{ctx.prefix}/base")
    assert git(ctx.repo, "rev-parse", ctx.integration_branch) == base


def test_injected_files_are_removed_before_the_clusters_next_attempt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = cluster_verify(hostile_ctx(tmp_path, monkeypatch, {}), "false")
    prepare(ctx)
    with pytest.raises(AgentFailed):
        run_attempt(ctx, "db", 1)  # its verify fails, so a second attempt follows
    (ctx.worktree("db") / "db" / "injected.py").write_text("BACKDOOR = 1\n")  # by someone else, in between
    with pytest.raises(AgentFailed):
        run_attempt(ctx, "db", 2)
    assert "injected" not in git(ctx.repo, "log", "--name-only", "--format=", ctx.branch("db"))
    notes = containment.finish(ctx)
    assert any("while its agent was not running" in n and "db/injected.py" in n for n in notes), notes


def test_verify_commands_and_setup_are_watched_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "markers"
    planter = tmp_path / "plant_hook.py"
    planter.write_text("import pathlib, subprocess\n"
                       "common = subprocess.check_output(['git', 'rev-parse', '--git-common-dir'], text=True).strip()\n"
                       "hook = pathlib.Path(common) / 'hooks' / 'post-commit'\n"
                       f"hook.write_text('#!/bin/sh\\ntouch {marker}/verify-hook\\n')\n"
                       "hook.chmod(0o755)\n")
    hook = f"{sys.executable} {planter}"
    ctx = cluster_verify(hostile_ctx(tmp_path, monkeypatch, {}), hook)
    prepare(ctx)
    with pytest.raises(AgentFailed) as failed:
        run_attempt(ctx, "api", 1)
    assert ".git/hooks/post-commit added" in (failed.value.record.attempts[-1].failure or "")
    assert not (gitops.common_dir(ctx.repo) / "hooks" / "post-commit").exists()
    containment.finish(ctx)
    users_git_runs_nothing_planted(ctx, tmp_path)


def test_a_copied_env_is_never_committed_and_a_symlink_out_of_the_repo_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo, plan = shop_repo(tmp_path, plan_yaml(extra="worktree:\n  copy: [.env]\n"))
    (repo / ".env").write_text("SECRET=1\n")
    from tests.conftest import rebaseline
    rebaseline(repo)
    monkeypatch.setenv("MARKER_DIR", str(tmp_path))
    ctx = resolve_run(plan, repo, RunOptions(agent_cmd=write_agent(tmp_path, HOSTILE)))
    prepare(ctx)
    rec = run_attempt(ctx, "api", 1)
    assert (ctx.worktree("api") / ".env").read_text() == "SECRET=1\n"
    assert ".env" not in git(ctx.repo, "log", "--name-only", "--format=", rec.branch)
    containment.finish(ctx)

    (tmp_path / "secret").write_text("TOKEN=2\n")
    (repo / ".env").unlink()
    (repo / ".env").symlink_to(tmp_path / "secret")
    rebaseline(repo)
    with pytest.raises(WorkClustersError, match=r"worktree\.copy.*leads out of the repository through a symlink"):
        resolve_run(plan, repo, RunOptions(agent_cmd="true"))
    cli = subprocess.run([*CLI, "validate", str(plan),
                          "--repo", str(repo)], capture_output=True, text=True)
    assert cli.returncode == 2 and "symlink" in cli.stdout + cli.stderr and "Traceback" not in cli.stderr
