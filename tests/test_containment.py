"""Containment (issue 12, items 1, 2, 6, 7, 8): hostile agents, as real subprocesses, do their
normal work and then attack the shared git dir, the user's checkout or another worktree. Nothing
planted may run (a marker file stays absent), in our git or in the user's own later git; the
tampering is undone and named; the honest clusters still finish and merge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_work_clusters.tasks.agents.attempt import AgentFailed, run_attempt
from prefect_work_clusters.tasks.checks import containment, user_side
from prefect_work_clusters.tasks.checks.contract import check_cluster
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.identify import resolve_run
from prefect_work_clusters.tasks.integration.tip import foreign_tip
from prefect_work_clusters.tasks.integration.worktree import write_ahead
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.worktrees import prepare
from tests.conftest import CLI, git, user_changes_expected, write_agent
from tests.loop_helpers import plan_yaml, shop_repo

# Normal work first (<cluster>/impl.py), then on attempt 1 the attacks $ATTACKS names for this cluster.
HOSTILE = """
import json, stat
cluster, attempt = os.environ["WC_CLUSTER"], os.environ["WC_ATTEMPT"]
wt = pathlib.Path(os.environ["WC_WORKTREE"])
(wt / cluster / "impl.py").write_text(f"NAME = {cluster!r}\\n")
attacks = json.loads(os.environ.get("ATTACKS", "{}")).get(cluster, []) if attempt == "1" else []
marker = pathlib.Path(os.environ["MARKER_DIR"])
common = pathlib.Path(subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                     capture_output=True, text=True, check=True).stdout.strip())

def script(name):
    path = marker.parent / f"evil-{name}.sh"
    path.write_text(f"#!/bin/sh\\ntouch {marker}/{name}\\ncat\\n")
    path.chmod(0o755)
    return str(path)

def gitc(*args, env=None):
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                          env={**os.environ, **(env or {})}).stdout.strip()

for attack in attacks:
    if attack == "hooks":
        for hook in ("pre-commit", "post-commit", "post-merge", "post-checkout", "reference-transaction",
                     "pre-merge-commit", "commit-msg", "prepare-commit-msg"):
            (common / "hooks" / hook).write_text(f"#!/bin/sh\\ntouch {marker}/hook-{hook}\\n")
            (common / "hooks" / hook).chmod(0o755)
    elif attack == "hooks-fifo":  # opened to read, a FIFO waits for a writer: the guard must not
        os.mkfifo(common / "hooks" / "post-commit")
    elif attack == "hooks-symlink":  # the whole folder swapped for a link to one outside .git
        import shutil
        outside = marker.parent / "outside-hooks"
        outside.mkdir(exist_ok=True)
        (outside / "post-commit").write_text(f"#!/bin/sh\\ntouch {marker}/hooks-symlink\\n")
        (outside / "post-commit").chmod(0o755)
        shutil.rmtree(common / "hooks")
        (common / "hooks").symlink_to(outside)
    elif attack == "hookspath":
        folder = marker.parent / "evil-hooks"
        folder.mkdir(exist_ok=True)
        (folder / "post-commit").write_text(f"#!/bin/sh\\ntouch {marker}/hookspath\\n")
        (folder / "post-commit").chmod(0o755)
        gitc("config", "core.hooksPath", str(folder))
    elif attack == "fsmonitor":
        gitc("config", "core.fsmonitor", script("fsmonitor"))
    elif attack == "filter":
        gitc("config", "filter.ev.clean", script("filter"))
        gitc("config", "filter.ev.smudge", script("filter"))
        (common / "info").mkdir(exist_ok=True)
        (common / "info" / "attributes").write_text("* filter=ev merge=ev\\n")
    elif attack == "merge":
        gitc("config", "merge.ev.driver", script("merge") + " %A %O %B")
        (common / "info").mkdir(exist_ok=True)
        (common / "info" / "attributes").write_text("* merge=ev\\n")
    elif attack == "exclude":
        (common / "info").mkdir(exist_ok=True)
        (common / "info" / "exclude").write_text("ui/\\n")
    elif attack == "replace":
        base = gitc("rev-parse", "clusters/shop/base")
        index = marker.parent / "evil-index"
        env = {"GIT_INDEX_FILE": str(index)}
        gitc("read-tree", base, env=env)
        blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], input="EDITED = True\\n",
                              capture_output=True, text=True, check=True).stdout.strip()
        gitc("update-index", "--cacheinfo", f"100644,{blob},contracts/api.py", env=env)
        tree = gitc("write-tree", env=env)
        fake = gitc("commit-tree", tree, "-p", f"{base}^", "-m", "base", env={
            "GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x", "GIT_COMMITTER_NAME": "x", "GIT_COMMITTER_EMAIL": "x@x"})
        gitc("replace", base, fake)
    elif attack == "move-other":
        gitc("update-ref", "refs/heads/clusters/shop/db", gitc("rev-parse", "clusters/shop/base^"))
    elif attack == "move-integration":  # made before the agents start, its files written while they work
        gitc("update-ref", "refs/heads/clusters/shop/integration", gitc("rev-parse", "clusters/shop/base^"))
    elif attack == "user-checkout":
        (pathlib.Path(os.environ["USER_REPO"]) / "planted.txt").write_text("by an agent\\n")
    elif attack == "integration-worktree":  # made before the agents start; its verify would run this
        skip_all = "import pytest\\npytest.skip('x', allow_module_level=True)\\n"
        (wt.parent / "integration" / "conftest.py").write_text(skip_all)
    elif attack == "other-worktree":
        other = wt.parent / "db"
        (other / "db" / "injected.py").write_text("BACKDOOR = 1\\n")
        (other / "api" / "injected.py").write_text("BACKDOOR = 2\\n")
print(f"agent {cluster} done, attacks: {attacks}")
"""


def _ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attacks: dict[str, list[str]], extra: str = "",
         verify: str | None = None) -> RunContext:
    repo, plan = shop_repo(tmp_path, plan_yaml(extra=extra, verify=verify))
    marker = tmp_path / "markers"
    marker.mkdir()
    monkeypatch.setenv("MARKER_DIR", str(marker))
    monkeypatch.setenv("ATTACKS", json.dumps(attacks))
    monkeypatch.setenv("USER_REPO", str(repo))
    return resolve_run(plan, repo, RunOptions(agent_cmd=write_agent(tmp_path, HOSTILE)))


def _cluster_verify(ctx: RunContext, command: str) -> RunContext:
    clusters = [c.model_copy(update={"verify": [command]}) for c in ctx.plan.clusters]
    return ctx.model_copy(update={"plan": ctx.plan.model_copy(update={"clusters": clusters})})


def _markers(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path / "markers"))


def _users_git_runs_nothing_planted(ctx: RunContext, tmp_path: Path) -> None:
    """The user's own plain git after the run: status, a commit, a merge of a cluster branch."""
    user_changes_expected(ctx.repo)
    (ctx.repo / "README.md").write_text("# shop, edited by the user\n")
    git(ctx.repo, "status")
    git(ctx.repo, "commit", "-qam", "user's own commit")
    git(ctx.repo, "merge", "-q", "--no-edit", ctx.branch("api"))
    assert _markers(tmp_path) == []


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
    ctx = _ctx(tmp_path, monkeypatch, {"api": [attack]}, extra="")
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
    assert _markers(tmp_path) == []
    _users_git_runs_nothing_planted(ctx, tmp_path)


def test_planted_filter_and_merge_driver_never_run_in_our_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted between our calls (as a concurrent agent would): our own commit and merge in a
    worktree pass through untouched; git's own line merge stands in for the driver."""
    ctx = _ctx(tmp_path, monkeypatch, {})
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
    assert _markers(tmp_path) == []
    notes = containment.finish(ctx)  # no window was open: the user's own change, kept and reported
    assert any("no agent was running, so kept" in n and ".git/config changed" in n for n in notes)


def test_writes_into_the_users_checkout_and_another_worktree_are_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _ctx(tmp_path, monkeypatch, {"api": ["user-checkout", "other-worktree"]})
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


def test_the_checkout_read_while_the_worktrees_are_made_is_the_watchs_baseline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The flow reads your checkout's status as the worktrees step starts; what changes there after
    # that read (here by you, before the first agent) is reported with what changed while agents ran.
    ctx = _ctx(tmp_path, monkeypatch, {})
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

    ctx = _ctx(tmp_path, monkeypatch, {"api": ["integration-worktree"]})
    state = work_clusters(plan=str(ctx.plan_file), repo=str(ctx.repo), agent_cmd=write_agent(tmp_path, HOSTILE),
                          return_state=True)
    assert state.is_failed() and "did not write" in (state.message or "") and "conftest.py" in (state.message or "")
    assert (ctx.integration_worktree / "conftest.py").is_file()
    base = git(ctx.repo, "rev-parse", f"{ctx.prefix}/base")
    assert git(ctx.repo, "rev-parse", ctx.integration_branch) == base


def test_injected_files_are_removed_before_the_clusters_next_attempt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _cluster_verify(_ctx(tmp_path, monkeypatch, {}), "false")
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
    ctx = _cluster_verify(_ctx(tmp_path, monkeypatch, {}), hook)
    prepare(ctx)
    with pytest.raises(AgentFailed) as failed:
        run_attempt(ctx, "api", 1)
    assert ".git/hooks/post-commit added" in (failed.value.record.attempts[-1].failure or "")
    assert not (gitops.common_dir(ctx.repo) / "hooks" / "post-commit").exists()
    containment.finish(ctx)
    _users_git_runs_nothing_planted(ctx, tmp_path)


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


@pytest.mark.usefixtures("prefect_harness")
def test_end_to_end_parallel_agents_one_hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three agents at once, api attacks on its first attempt: nothing planted runs, the merge
    report names every change (blamed on api, or on the agents running together), everything is
    undone but the file in the user's checkout, and all three clusters integrate and verify."""
    from prefect_work_clusters.flows.work_clusters import work_clusters

    # Hooks last: the attacker's own `git replace` would run a hook it planted before, in its own process.
    attacks = ["filter", "replace", "exclude", "user-checkout", "hooks"]
    ctx = _ctx(tmp_path, monkeypatch, {"api": attacks}, extra="")
    user_changes_expected(ctx.repo)
    ctx.plan_file.write_text(ctx.plan_file.read_text().replace("retries: 0", "retries: 1"))
    state = work_clusters(plan=str(ctx.plan_file), repo=str(ctx.repo), agent_cmd=write_agent(tmp_path, HOSTILE),
                          return_state=True)
    assert state.is_completed(), state.message
    report = (ctx.workspace / ".runs" / "merge-report.md").read_text()
    for named in (".git/hooks/post-commit added", ".git/info/attributes added", ".git/config changed",
                  "ref refs/replace/", ".git/info/exclude changed", "planted.txt"):
        assert named in report, named
    assert _markers(tmp_path) == []
    common = gitops.common_dir(ctx.repo)
    assert not (common / "info" / "attributes").exists() and not git(ctx.repo, "for-each-ref", "refs/replace/")
    final = git(ctx.repo, "rev-parse", ctx.integration_branch)
    assert all(git(ctx.repo, "show", f"{final}:{c}/impl.py") == f"NAME = {c!r}" for c in ("api", "ui", "db"))
    _users_git_runs_nothing_planted(ctx, tmp_path)


def test_the_integration_agent_is_watched_around_each_call(tmp_path: Path) -> None:
    """An integration agent that fixes the verification and plants a hook: the call is dropped
    as tampering, the hook removed, and the next (honest) attempt's fix is taken."""
    from tests.integration_helpers import add_to_registry, integrate, py, setup

    marker = tmp_path / "markers"
    marker.mkdir()
    fixer = write_agent(tmp_path, f"""
wt = pathlib.Path(os.environ["WC_WORKTREE"])
(wt / "app" / "flag.py").write_text("ON = True\\n")
if os.environ["WC_ATTEMPT"] == "1":
    common = subprocess.check_output(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"], text=True)
    hook = pathlib.Path(common.strip()) / "hooks" / "post-commit"
    hook.write_text("#!/bin/sh\\ntouch {marker}/integration-hook\\n")
    hook.chmod(0o755)
""")
    ctx, base = setup(tmp_path, verify=[py("import app.flag")], retries=1, integration_agent_cmd=fixer)
    for cluster in ("api", "ui", "db"):
        add_to_registry(ctx, cluster)
    with containment.window(ctx, containment.INTEGRATION) as outer:
        result = integrate(ctx, base)
    first, second = result.agent_calls
    assert "changed the shared git dir" in (first.failure or "") and ".git/hooks/post-commit added" in first.failure
    assert second.failure is None and result.verified
    assert outer.tampering == [] and containment.finish(ctx) == []
    assert not (gitops.common_dir(ctx.repo) / "hooks" / "post-commit").exists()
    assert _markers(tmp_path) == []


def test_an_exclude_planted_mid_run_hides_nothing_from_our_commit(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted while another agent runs, the exclude is there when ui's leftovers are committed:
    our commit honours only the excludes of the run's start (and .gitignore files)."""
    ctx = _ctx(tmp_path, monkeypatch, {})
    prepare(ctx)
    containment.begin(ctx)
    exclude = gitops.common_dir(ctx.repo) / "info" / "exclude"
    exclude.write_text(exclude.read_text() + "ui/\n")
    (ctx.worktree("ui") / "ui" / ".gitignore").write_text("*.log\n")
    (ctx.worktree("ui") / "ui" / "debug.log").write_text("ignored by a .gitignore: not committed\n")
    ui = run_attempt(ctx, "ui", 1)
    committed = git(ctx.repo, "log", "--name-only", "--format=", ui.branch)
    assert "ui/impl.py" in committed and "debug.log" not in committed
    containment.finish(ctx)


def test_your_checked_out_branch_is_yours_other_refs_are_put_back(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _ctx(tmp_path, monkeypatch, {})
    git(ctx.repo, "branch", "release")
    git(ctx.repo, "tag", "v1")
    user_changes_expected(ctx.repo)
    prepare(ctx)
    containment.begin(ctx)
    release, v1 = git(ctx.repo, "rev-parse", "release"), git(ctx.repo, "rev-parse", "v1")
    with containment.window(ctx, "api") as win:
        (ctx.repo / "README.md").write_text("# shop, committed by the user mid-run\n")
        git(ctx.repo, "commit", "-qam", "the user's own commit")  # main: checked out in your checkout
        git(ctx.repo, "branch", "-f", "release", "HEAD")
        git(ctx.repo, "tag", "-d", "v1")
        git(ctx.repo, "branch", "mine")  # new: maybe yours, kept
    mine = git(ctx.repo, "rev-parse", "main")
    assert git(ctx.repo, "log", "-1", "--format=%s", "main") == "the user's own commit"
    assert git(ctx.repo, "rev-parse", "release") == release and git(ctx.repo, "rev-parse", "v1") == v1
    assert git(ctx.repo, "rev-parse", "mine") == mine
    assert sorted(win.tampering) == ["ref refs/heads/release changed"
                                     f" ({release[:12]} -> {mine[:12]})", "ref refs/tags/v1 deleted"]
    notes = containment.finish(ctx)
    assert any(containment.USER_SIDE in n and "refs/heads/main changed" in n and "refs/heads/mine added" in n
               for n in notes), notes


def test_a_hook_planted_while_another_window_restores_is_never_adopted(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The race CI found with three agents at once: api plants hooks one by one while ui's window
    opens and closes (each a comparison and a restore). Whatever api wrote between a restore and
    the next comparison must still be found, never taken for the trusted state."""
    import threading

    ctx = _ctx(tmp_path, monkeypatch, {})
    prepare(ctx)
    containment.begin(ctx, fresh=True)
    hooks = gitops.common_dir(ctx.repo) / "hooks"
    done = threading.Event()

    def attacker() -> None:
        for i in range(150):
            (hooks / f"hook-{i}").write_text("#!/bin/sh\nexit 0\n")
        done.set()

    with containment.window(ctx, "api"):
        thread = threading.Thread(target=attacker)
        thread.start()
        while not done.is_set():
            with containment.window(ctx, "ui"):
                pass
        thread.join()
    notes = containment.finish(ctx)
    assert not [h for h in os.listdir(hooks) if not h.endswith(".sample")]
    assert any(".git/hooks/hook-" in n for n in notes), notes


def test_refs_read_from_their_files_agree_with_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard reads a moved branch from its own file instead of asking git: whatever is done to
    the refs (packed, moved, rewritten in place within the clock's tick, deleted over a packed
    value, symbolic, oddly named), what it reads is what ``for-each-ref`` lists."""
    from prefect_work_clusters.tasks.git import refs as gitrefs
    from prefect_work_clusters.tasks.git import stamps
    from tests.conftest import make_repo

    repo = make_repo(tmp_path, {"a.txt": "a\n"})
    first = git(repo, "rev-parse", "HEAD")
    git(repo, "commit", "-q", "--allow-empty", "-m", "second")
    second = git(repo, "rev-parse", "HEAD")
    git(repo, "reset", "-q", "--hard", first)  # the user's branch back where it was
    for name in ("a", "b", "c"):
        git(repo, "branch", name, first)
    git(repo, "pack-refs", "--all")
    refs_dir = gitops.common_dir(repo) / "refs"
    asked: list[str] = []
    real_out = gitops.out

    def out(cwd: Path, *args: str, **kw: object) -> str:
        asked.append(args[0])
        return real_out(cwd, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(gitops, "out", out)

    def agrees() -> None:
        listed = git(repo, "for-each-ref", "--format=%(objectname) %(refname)")
        assert gitrefs.read(repo) == dict(reversed(line.split(" ")) for line in listed.splitlines())

    agrees()
    git(repo, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/heads/a")
    agrees()
    monkeypatch.setattr(stamps, "RACY_NS", 0)  # nothing here waits for the clock's tick
    agrees()
    asked.clear()
    git(repo, "update-ref", "refs/heads/a", second)  # a loose file over the packed one
    git(repo, "branch", "d", second)
    agrees()  # origin/HEAD follows a
    assert asked == []  # read from the two files alone
    monkeypatch.undo()
    monkeypatch.setattr(gitops, "out", out)
    agrees()
    (refs_dir / "heads" / "b").write_text(second + "\n")
    agrees()
    with open(refs_dir / "heads" / "b", "r+") as fh:  # in place: same inode, same size, same tick
        fh.write(first + "\n")
    agrees()
    (refs_dir / "heads" / "a").unlink()  # the packed value shows through
    agrees()
    (refs_dir / "heads" / "odd..name").write_text(second + "\n")  # git lists no such ref
    (refs_dir / "heads" / "c.lock").write_text(second + "\n")
    agrees()
