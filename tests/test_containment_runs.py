"""Containment (issue 12) in whole runs and across windows: hostile agents beside honest ones, the
integration agent, your checked-out branch, refs read from their files (the attacks one by one
are in test_containment)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from prefect_work_clusters.tasks.agents.attempt import run_attempt
from prefect_work_clusters.tasks.checks import containment
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.worktrees import prepare
from tests.conftest import git, user_changes_expected, write_agent
from tests.hostile_helpers import HOSTILE, hostile_ctx, markers, users_git_runs_nothing_planted


@pytest.mark.usefixtures("prefect_harness")
def test_end_to_end_parallel_agents_one_hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three agents at once, api attacks on its first attempt: nothing planted runs, the merge
    report names every change (blamed on api, or on the agents running together), everything is
    undone but the file in the user's checkout, and all three clusters integrate and verify."""
    from prefect_work_clusters.flows.work_clusters import work_clusters

    # Hooks last: the attacker's own `git replace` would run a hook it planted before, in its own process.
    attacks = ["filter", "replace", "exclude", "user-checkout", "hooks"]
    ctx = hostile_ctx(tmp_path, monkeypatch, {"api": attacks}, extra="")
    user_changes_expected(ctx.repo)
    ctx.plan_file.write_text(ctx.plan_file.read_text().replace("retries: 0", "retries: 1"))
    state = work_clusters(plan=str(ctx.plan_file), repo=str(ctx.repo), agent_cmd=write_agent(tmp_path, HOSTILE),
                          return_state=True)
    assert state.is_completed(), state.message
    report = (ctx.workspace / ".runs" / "merge-report.md").read_text()
    for named in (".git/hooks/post-commit added", ".git/info/attributes added", ".git/config changed",
                  "ref refs/replace/", ".git/info/exclude changed", "planted.txt"):
        assert named in report, named
    assert markers(tmp_path) == []
    common = gitops.common_dir(ctx.repo)
    assert not (common / "info" / "attributes").exists() and not git(ctx.repo, "for-each-ref", "refs/replace/")
    final = git(ctx.repo, "rev-parse", ctx.integration_branch)
    assert all(git(ctx.repo, "show", f"{final}:{c}/impl.py") == f"NAME = {c!r}" for c in ("api", "ui", "db"))
    users_git_runs_nothing_planted(ctx, tmp_path)


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
    assert markers(tmp_path) == []


def test_an_exclude_planted_mid_run_hides_nothing_from_our_commit(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Planted while another agent runs, the exclude is there when ui's leftovers are committed:
    our commit honours only the excludes of the run's start (and .gitignore files)."""
    ctx = hostile_ctx(tmp_path, monkeypatch, {})
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
    ctx = hostile_ctx(tmp_path, monkeypatch, {})
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

    ctx = hostile_ctx(tmp_path, monkeypatch, {})
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
