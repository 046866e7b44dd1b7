"""Faults a run left alone must survive (issue: reliability and security), each injected for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from prefect_work_clusters.flows.work_clusters import work_clusters
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.recovery import RunLocked, run_lock
from prefect_work_clusters.tasks.resolve import resolve_run
from tests.conftest import CLI, branches, git, migrated_home, snapshot, user_changes_expected, write_agent
from tests.loop_helpers import WRITER, plan_yaml, shop_repo

pytestmark = pytest.mark.usefixtures("prefect_harness")
RUNS = "repo.clusters/shop/.runs"


def _report(tmp_path: Path) -> dict:
    return json.loads((tmp_path / RUNS / "report.json").read_text())


def _wait_for(check, seconds: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def test_hanging_agent_is_killed_with_its_children_and_others_integrate(tmp_path: Path, records: Path) -> None:
    pids = tmp_path / "hang-pids"
    agent = write_agent(tmp_path, WRITER + f"""
if cluster == "ui":
    import signal, time
    child = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    pathlib.Path({str(pids)!r}).write_text(f"{{os.getpid()}} {{child.pid}}")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(600)
""")
    repo, plan = shop_repo(tmp_path, plan_yaml(verify=f"{sys.executable} -c \"import api.impl, db.impl\"")
                           .replace("timeout_seconds: 60", "timeout_seconds: 2"))
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)
    assert state.is_failed()
    by = {c["cluster"]: c for c in _report(tmp_path)["clusters"]}
    assert by["ui"]["status"] == "timed_out" and "timeout" in by["ui"]["failure"]
    assert by["api"]["status"] == by["db"]["status"] == "succeeded"
    for pid in map(int, pids.read_text().split()):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    steps = {s["cluster"]: s["status"] for s in _report(tmp_path)["integration"]["steps"]}
    assert steps == {"api": "merged", "ui": "skipped", "db": "merged"}


@pytest.mark.local_mode  # the SIGKILL takes the run's temporary server with it
def test_sigkilled_run_resumes_without_losing_or_redoing_work(tmp_path: Path, records: Path, migrated_db: Path,
                                                              request: pytest.FixtureRequest) -> None:
    gate = tmp_path / "ui-may-finish"
    ui_pid = tmp_path / "ui-pid"
    agent = write_agent(tmp_path, WRITER + f"""
if cluster == "ui" and not pathlib.Path({str(gate)!r}).exists():
    import time
    pathlib.Path({str(ui_pid)!r}).write_text(str(os.getpid()))
    time.sleep(600)
""")
    repo, plan = shop_repo(tmp_path)
    script = (f"from prefect_work_clusters.flows.work_clusters import work_clusters; "
              f"work_clusters(plan={str(plan)!r}, repo={str(repo)!r}, agent_cmd={agent!r})")
    env = {**os.environ, "PREFECT_HOME": str(migrated_home(tmp_path / "home2", migrated_db)),
           "RECORD_DIR": str(records), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240"}
    # Its own session, so that the SIGKILL below takes its temporary Prefect server with it; the
    # agents it started live in sessions of their own, as they do in real life.
    orchestrator = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        base = lambda: gitops.resolve_ref(repo, "clusters/shop/base")  # noqa: E731
        _wait_for(lambda: ui_pid.exists() and base() and all(
            githistory.finished_commit(repo, base(), f"clusters/shop/{c}") for c in ("api", "db")), seconds=300)
    finally:
        os.killpg(orchestrator.pid, signal.SIGKILL)
        orchestrator.wait()
    orphan = int(ui_pid.read_text())
    request.addfinalizer(lambda: psutil.pid_exists(orphan) and os.kill(orphan, signal.SIGKILL))
    assert psutil.pid_exists(orphan)  # the agent outlived the killed orchestrator
    api_head = git(repo, "rev-parse", "clusters/shop/api")
    lock = Path(git(tmp_path / "repo.clusters/shop/ui", "rev-parse", "--path-format=absolute",
                    "--git-path", "index.lock"))
    lock.write_text("")  # as a git process killed mid-write would leave it
    ran_before = (records / "runs.log").read_text().split()
    gate.write_text("")

    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)

    assert state.is_completed(), state.message
    assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE
    assert not lock.exists()
    report = _report(tmp_path)
    assert any("left running by an earlier run" in n for n in report["notes"])
    assert any("index.lock" in n for n in report["notes"])
    by = {c["cluster"]: c for c in report["clusters"]}
    assert by["api"]["resumed"] and by["db"]["resumed"] and not by["ui"]["resumed"]
    ran_now = (records / "runs.log").read_text().split()
    assert sorted(ran_before) == ["api", "db", "ui"] and ran_now[3:] == ["ui"]  # only the unfinished one ran
    assert not any("kept at" in n for n in report["notes"])
    assert git(repo, "merge-base", "--is-ancestor", api_head, "clusters/shop/integration") == ""


def test_second_run_of_a_plan_is_refused_other_plans_proceed(tmp_path: Path, records: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    agent = write_agent(tmp_path, WRITER)
    ctx = resolve_run(plan, repo, RunOptions(agent_cmd=agent))
    with run_lock(ctx):
        with pytest.raises(RunLocked, match="another run of plan shop is in progress"):
            with run_lock(ctx):
                pass
        state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)
        assert state.is_failed() and "another run of plan shop" in state.message
        assert not gitops.branch_exists(repo, "clusters/shop/base")  # refused before creating anything
        other = tmp_path / "other.yaml"
        other.write_text(plan_yaml().replace("name: shop", "name: other"))
        assert work_clusters(plan=str(other), repo=str(repo), agent_cmd=agent, return_state=True).is_completed()


def test_base_moving_during_the_run_is_reported_and_not_merged_onto(tmp_path: Path, records: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    agent = write_agent(tmp_path, WRITER + f"""
if cluster == "api":
    subprocess.run(["git", "-C", {str(repo)!r}, "-c", "user.name=u", "-c", "user.email=u@e",
                    "commit", "-q", "--allow-empty", "-m", "main moved"], check=True)
""")
    main_before = git(repo, "rev-parse", "main")
    user_changes_expected(repo)  # the test's agent moves main on purpose
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)
    assert state.is_completed(), state.message
    moved = git(repo, "rev-parse", "main")
    assert moved != main_before
    report = _report(tmp_path)
    assert report["base_ref_sha"] == main_before
    assert {c["base_sha"] for c in report["clusters"]} == {report["base_sha"]}
    assert git(repo, "rev-parse", f"{report['base_sha']}^") == main_before
    assert subprocess.run(["git", "merge-base", "--is-ancestor", moved, "clusters/shop/integration"],
                          cwd=repo).returncode == 1  # not silently merged onto the new base


def test_agents_that_tamper_with_git_are_caught_and_cost_nobody_else_work(tmp_path: Path, records: Path) -> None:
    agent = write_agent(tmp_path, WRITER + """
def git(*args):
    subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@e", *args], check=True, capture_output=True)
if cluster == "api":   # history rewritten to before the base
    git("reset", "-q", "--hard", "HEAD~1")
if cluster == "ui":    # another cluster's branch deleted from here once db finished, and .git rewritten
    import time
    db_record = wt.parent / ".runs" / "clusters" / "db.json"
    deadline = time.time() + 60
    while time.time() < deadline and '"succeeded"' not in (db_record.read_text() if db_record.exists() else ""):
        time.sleep(0.1)
    git("update-ref", "-d", "refs/heads/clusters/shop/db")
    (wt / ".git").write_text("gitdir: /nonexistent\\n")
""")
    repo, plan = shop_repo(tmp_path, plan_yaml(verify="true").replace("concurrency: 3", "concurrency: 3"))
    before = snapshot(repo)
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)
    assert state.is_failed()
    report = _report(tmp_path)
    by = {c["cluster"]: c for c in report["clusters"]}
    assert "rewrote clusters/shop/api to before its base" in by["api"]["failure"]
    assert ".git link" in by["ui"]["failure"]
    assert by["db"]["status"] == "succeeded"
    assert git(repo, "rev-parse", "clusters/shop/db") == by["db"]["head_sha"]  # restored
    # Restored after ui's attempt by the git-dir watch (blamed on ui when it ran alone since the
    # last comparison, else named in the notes), or at the end by restore_refs.
    assert "refs/heads/clusters/shop/db deleted" in by["ui"]["failure"] or any(
        "clusters/shop/db was deleted" in n or "refs/heads/clusters/shop/db deleted" in n for n in report["notes"])
    steps = {s["cluster"]: s["status"] for s in report["integration"]["steps"]}
    assert steps["db"] == "merged"
    assert snapshot(repo) == before


def test_unwritable_workspace_is_one_clear_error_and_nothing_is_touched(tmp_path: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the workspace should go")
    before = snapshot(repo), branches(repo)
    res = subprocess.run([*CLI, "run", str(plan),
                          "--repo", str(repo), "--agent-cmd", "true", "--workspace", str(blocker / "ws")],
                         capture_output=True, text=True, env={**os.environ, "PREFECT_HOME": str(tmp_path / "h")})
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "workspace" in res.stderr and str(blocker) in res.stderr
    assert (snapshot(repo), branches(repo)) == before


def test_shell_metacharacters_in_plan_text_never_execute(tmp_path: Path, records: Path) -> None:
    canary = tmp_path / "CANARY"
    evil = f"$(touch {canary}); `touch {canary}` && touch {canary} | touch {canary}"
    repo, plan = shop_repo(tmp_path, plan_yaml().replace("goal: Build the shop", f"goal: {json.dumps(evil)}")
                           .replace("tasks: [implement the API]", f"tasks: [{json.dumps(evil + chr(10) + 'x')}]"))
    agent = write_agent(tmp_path, WRITER) + " {prompt}"
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)
    assert state.is_completed(), state.message
    assert not canary.exists()
    seen = (records / "api-1.txt").read_text()
    assert f"touch {canary}" in seen  # it reached the agent as literal text in one argv element


def test_report_write_failure_is_clear_and_branches_are_untouched(tmp_path: Path, records: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    (tmp_path / RUNS / "merge-report.md").mkdir(parents=True)  # the report cannot be written there
    before = snapshot(repo)
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=write_agent(tmp_path, WRITER),
                          return_state=True)
    assert state.is_failed() and "merge-report.md" in state.message
    assert snapshot(repo) == before
    assert githistory.finished_commit(repo, "clusters/shop/base", "clusters/shop/api")  # the agents' work is kept
