"""Containment (issue 12, items 3-5): what is merged is the commit that was checked, the integration
branch is ours, no agent process outlives its attempt, and the optional bubblewrap sandbox."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from prefect_work_clusters.tasks.checks.contract import check_cluster
from prefect_work_clusters.tasks.context import load_record
from prefect_work_clusters.tasks.integration.integrate import integrate_branches
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.proc.runner import run_process
from prefect_work_clusters.tasks.proc.sandbox import Sandbox
from prefect_work_clusters.tasks.resolve import resolve_run
from tests.conftest import git, user_changes_expected, write_agent
from tests.loop_helpers import WRITER, plan_yaml, shop_repo

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

# Double fork + setsid: the grandchild leaves the process group and the session, and loses its
# parent. It writes its pid to $DAEMON_PIDFILE and sleeps; the agent itself exits 0.
DAEMON = """
pidfile = pathlib.Path(os.environ["DAEMON_PIDFILE"])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        pidfile.write_text(str(os.getpid()))
        import time
        time.sleep(300)
        os._exit(0)
    os._exit(0)
os.wait()
while not pidfile.exists():
    pass
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _report(repo: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((repo.parent / "repo.clusters" / "shop" / ".runs" / "report.json").read_text())


def test_a_detached_daemon_is_killed_when_the_command_exits_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAEMON_PIDFILE", str(tmp_path / "daemon.pid"))
    agent = write_agent(tmp_path, DAEMON + "print('agent done')\n").split()
    res = run_process(agent, cwd=tmp_path, env=dict(os.environ), timeout=30)
    assert res.ok and "agent done" in res.output_tail
    pid = int((tmp_path / "daemon.pid").read_text())
    assert _gone(pid), "the daemon outlived the command"
    assert len(res.leftovers) == 1 and "agent.py" in res.leftovers[0]


def test_the_launcher_keeps_exit_status_and_signal(tmp_path: Path) -> None:
    env = dict(os.environ)
    assert run_process([sys.executable, "-c", "raise SystemExit(3)"], cwd=tmp_path, env=env, timeout=30).exit_code == 3
    killed = run_process([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"],
                         cwd=tmp_path, env=env, timeout=30)
    assert killed.exit_code == -9 and killed.leftovers == ()


# A daemon that escaped some other way (started outside our runner): it moves the ui branch to a
# commit with an out-of-scope file once told to, after the contract check.
MOVER = """
import os, subprocess, sys, time, pathlib
repo, go = sys.argv[1], pathlib.Path(sys.argv[2])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        while not go.exists():
            time.sleep(0.02)
        git = ["git", "-C", repo, "-c", "user.name=x", "-c", "user.email=x@x"]
        blob = subprocess.run([*git, "hash-object", "-w", "--stdin"], input=b"EVIL = 1\\n", capture_output=True,
                              check=True).stdout.decode().strip()
        tip = subprocess.run([*git, "rev-parse", "clusters/shop/ui"], capture_output=True, text=True).stdout.strip()
        env = {**os.environ, "GIT_INDEX_FILE": str(go) + ".index"}
        subprocess.run([*git, "read-tree", tip], env=env, check=True)
        subprocess.run([*git, "update-index", "--add", "--cacheinfo", f"100644,{blob},contracts/daemon_evil.py"],
                       env=env, check=True)
        tree = subprocess.run([*git, "write-tree"], env=env, capture_output=True, text=True).stdout.strip()
        commit = subprocess.run([*git, "commit-tree", tree, "-p", tip, "-m", "daemon"], capture_output=True,
                                text=True).stdout.strip()
        subprocess.run([*git, "update-ref", "refs/heads/clusters/shop/ui", commit], check=True)
        pathlib.Path(str(go) + ".done").write_text(commit)
        os._exit(0)
    os._exit(0)
"""


@pytest.mark.usefixtures("prefect_harness")
def test_leftovers_are_killed_and_a_branch_moved_after_the_check_is_not_merged(
        tmp_path: Path, records: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect_work_clusters.flows.work_clusters import work_clusters

    repo, plan = shop_repo(tmp_path)
    monkeypatch.setenv("DAEMON_PIDFILE", str(tmp_path / "daemon.pid"))
    agent = write_agent(tmp_path, WRITER + "if cluster == 'api':\n" + textwrap.indent(DAEMON, "    "))
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)
    assert state.is_completed(), state.message
    assert _gone(int((tmp_path / "daemon.pid").read_text())), "the agent's daemon outlived its attempt"
    notes = _report(repo)["notes"]
    assert any(n.startswith("api attempt 1: killed 1 process(es) the agent left running") for n in notes), notes

    # Integrate again from fresh checks; a daemon moves ui's branch between the check and the merge.
    ctx = resolve_run(plan, repo, RunOptions(agent_cmd=agent))
    git(repo, "worktree", "remove", "--force", str(ctx.integration_worktree))
    git(repo, "branch", "-D", ctx.integration_branch)
    (ctx.runs_dir / "integration-tip.json").unlink()
    records_ = [load_record(ctx, c.name) for c in ctx.plan.clusters]
    checks = [check_cluster(ctx, r) for r in records_ if r]
    go = tmp_path / "go"
    (tmp_path / "mover.py").write_text(MOVER)
    subprocess.run([sys.executable, str(tmp_path / "mover.py"), str(repo), str(go)], check=True)
    go.write_text("")
    deadline = time.monotonic() + 30
    while not Path(f"{go}.done").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    moved_to = Path(f"{go}.done").read_text()
    result = integrate_branches(ctx, records_[0].base_sha if records_[0] else "", checks)
    assert result.ok and result.final_sha
    files = git(repo, "ls-tree", "-r", "--name-only", result.final_sha).splitlines()
    assert "contracts/daemon_evil.py" not in files and "ui/impl.py" in files
    assert result.moved == [f"clusters/shop/ui moved after the contract check, to {moved_to[:12]}; merged "
                            f"{checks[1].head_sha[:12] if checks[1].head_sha else ''}, the commit that was checked, "
                            "not the move"]


def _plant(repo: Path, cwd: Path) -> str:
    """clusters/shop/integration made by someone else: the base plus a backdoor (as an agent, a
    leftover daemon or a person could make it with plain git)."""
    base = git(repo, "rev-parse", "clusters/shop/base")
    index = cwd / ".bd-index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    g = ["git", "-c", "user.name=x", "-c", "user.email=x@x"]
    blob = subprocess.run([*g, "hash-object", "-w", "--stdin"], input=b"OPEN = True\n", cwd=repo,
                          capture_output=True, check=True).stdout.decode().strip()
    subprocess.run([*g, "read-tree", base], env=env, cwd=repo, check=True)
    subprocess.run([*g, "update-index", "--add", "--cacheinfo", f"100644,{blob},backdoor.py"], env=env, cwd=repo,
                   check=True)
    tree = subprocess.run([*g, "write-tree"], env=env, cwd=repo, capture_output=True, text=True).stdout.strip()
    index.unlink()
    commit = subprocess.run([*g, "commit-tree", tree, "-p", base, "-m", "integrate"], cwd=repo, capture_output=True,
                            text=True).stdout.strip()
    git(repo, "update-ref", "refs/heads/clusters/shop/integration", commit)
    return commit


# db's first attempt plants the integration branch (plain git, as above), then does its work.
BACKDOOR = """
if cluster == "db" and os.environ["WC_ATTEMPT"] == "1":
    g = ["git", "-c", "user.name=x", "-c", "user.email=x@x"]
    base = subprocess.run([*g, "rev-parse", "clusters/shop/base"], capture_output=True, text=True).stdout.strip()
    blob = subprocess.run([*g, "hash-object", "-w", "--stdin"], input=b"OPEN = True\\n",
                          capture_output=True).stdout.decode().strip()
    env = {**os.environ, "GIT_INDEX_FILE": str(wt / ".bd-index")}
    subprocess.run([*g, "read-tree", base], env=env, check=True)
    subprocess.run([*g, "update-index", "--add", "--cacheinfo", f"100644,{blob},backdoor.py"], env=env, check=True)
    tree = subprocess.run([*g, "write-tree"], env=env, capture_output=True, text=True).stdout.strip()
    (wt / ".bd-index").unlink()
    commit = subprocess.run([*g, "commit-tree", tree, "-p", base, "-m", "integrate"], capture_output=True,
                            text=True).stdout.strip()
    subprocess.run([*g, "update-ref", "refs/heads/clusters/shop/integration", commit], check=True)
"""


@pytest.mark.usefixtures("prefect_harness")
def test_a_planted_integration_branch_is_refused_and_never_landed(tmp_path: Path, records: Path) -> None:
    from prefect_work_clusters.flows.work_clusters import integrate_clusters, work_clusters

    repo, plan = shop_repo(tmp_path, plan_yaml().replace("retries: 0", "retries: 1"))
    user_changes_expected(repo)  # the honest result lands
    # Planted by an agent: the git-dir watch removes it and names it (failing db's attempt when it ran alone).
    agent = write_agent(tmp_path, WRITER + BACKDOOR)
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, land=True, return_state=True)
    assert state.is_completed(), state.message
    report = _report(repo)
    named = json.dumps(report["notes"]) + json.dumps([r for c in report["checks"] for r in c["rows"]])
    assert "clusters/shop/integration" in named, named  # restored and named (blamed when db ran alone)
    landed = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert "backdoor.py" not in landed and "db/impl.py" in landed

    # Planted outside any agent's attempt (a leftover daemon, or by hand): a tip work-clusters did
    # not record is refused, with the commands to remove it; nothing is built on it or landed.
    _plant(repo, tmp_path)
    refused = integrate_clusters(plan=str(plan), repo=str(repo), land=True, return_state=True)
    assert refused.is_failed()
    assert "a commit work-clusters did not make" in str(refused.message)
    assert "branch -D clusters/shop/integration" in str(refused.message)
    assert "backdoor.py" not in git(repo, "ls-tree", "-r", "--name-only", "main")
    assert "did not make" in _report(repo)["refused"]

    # Removing it, as the message says, lets the next integration build its own.
    git(repo, "worktree", "remove", "--force", str(repo.parent / "repo.clusters" / "shop" / "integration"))
    git(repo, "branch", "-D", "clusters/shop/integration")
    again = integrate_clusters(plan=str(plan), repo=str(repo), return_state=True)
    assert again.is_completed(), again.message
    rebuilt = git(repo, "ls-tree", "-r", "--name-only", "clusters/shop/integration").splitlines()
    assert "backdoor.py" not in rebuilt and "db/impl.py" in rebuilt


@needs_bwrap
def test_the_sandbox_leaves_only_the_named_paths_writable(tmp_path: Path) -> None:
    inside, outside = tmp_path / "wt", tmp_path / "checkout"
    inside.mkdir()
    outside.mkdir()
    script = ("import os, pathlib, tempfile\n"
              f"pathlib.Path({str(inside / 'ok.txt')!r}).write_text('ok')\n"
              "pathlib.Path(tempfile.gettempdir(), 'scratch').write_text('tmp')\n"
              "print('tmp', tempfile.gettempdir())\n"
              f"pathlib.Path({str(outside / 'evil.txt')!r}).write_text('evil')\n")
    res = run_process([sys.executable, "-c", script], cwd=inside, env=dict(os.environ), timeout=30,
                      sandbox=Sandbox(writable=(inside,)))
    assert res.exit_code == 1 and "Read-only file system" in res.output_tail
    assert (inside / "ok.txt").read_text() == "ok" and not (outside / "evil.txt").exists()
    private_tmp = next(line.split()[1] for line in res.output_tail.splitlines() if line.startswith("tmp "))
    assert private_tmp != "/tmp" and not Path(private_tmp).exists()  # private, and removed afterwards


# The api agent does its honest work, commits it itself, then tries to write into the user's
# checkout and into the ui cluster's worktree.
TRESPASSER = """
cluster = os.environ["WC_CLUSTER"]
wt = pathlib.Path(os.environ["WC_WORKTREE"])
(wt / cluster / "impl.py").write_text(f"NAME = {cluster!r}\\n")
if cluster == "api":
    subprocess.run(["git", "add", "-A"], check=True)
    subprocess.run(["git", "-c", "user.name=a", "-c", "user.email=a@a", "commit", "-qm", "api: honest work"],
                   check=True)
    for target in (pathlib.Path(os.environ["USER_REPO"]) / "README.md", wt.parent / "ui" / "ui" / "evil.py"):
        try:
            target.write_text("EVIL = 1\\n")
        except OSError as exc:
            print(f"write refused: {exc}")
"""


@needs_bwrap
@pytest.mark.usefixtures("prefect_harness")
def test_a_sandboxed_run_integrates_and_its_trespassing_writes_are_refused_and_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect_work_clusters.flows.work_clusters import work_clusters

    repo, plan = shop_repo(tmp_path)
    monkeypatch.setenv("USER_REPO", str(repo))
    agent = write_agent(tmp_path, TRESPASSER)  # not WRITER: its records folder is read-only in the sandbox
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, sandbox=True, return_state=True)
    assert state.is_completed(), state.message  # integrated, and verified under the sandbox too
    assert (repo / "README.md").read_text() == "# shop\n"
    final = _report(repo)["integration"]["final_sha"]
    files = git(repo, "ls-tree", "-r", "--name-only", final).splitlines()
    assert {"api/impl.py", "ui/impl.py", "db/impl.py"} <= set(files) and "ui/evil.py" not in files
    assert "api: honest work" in git(repo, "log", "--format=%s", "clusters/shop/api")
    notes = _report(repo)["notes"]
    assert any(n.startswith("api attempt 1: the sandbox refused 2 write(s)") for n in notes), notes


def test_without_bwrap_validate_and_run_with_the_sandbox_exit_2(tmp_path: Path) -> None:
    from tests.conftest import cli

    repo, plan = shop_repo(tmp_path)
    bin_dir = tmp_path / "bin"  # git and true, no bwrap
    bin_dir.mkdir()
    for tool in ("git", "true"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    env = {"PATH": str(bin_dir)}
    boxed = tmp_path / "boxed.yaml"
    boxed.write_text(plan.read_text() + "sandbox: {enabled: true}\n")
    for args in (["validate", str(boxed)], ["run", str(plan), "--sandbox", "--agent-cmd", "true"]):
        res = cli(*args, "--repo", str(repo), cwd=tmp_path, env=env)
        assert res.returncode == 2, res.stdout + res.stderr
        assert "`bwrap` is not on PATH" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "repo.clusters").exists()


@needs_bwrap
def test_bench_sandbox_smoke(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "sandbox.json"
    subprocess.run([sys.executable, str(root / "bench" / "bench_sandbox.py"), "--rounds", "2", "--out", str(out)],
                   check=True, capture_output=True, timeout=120)
    data = json.loads(out.read_text())
    assert set(data["ms"]) == {"bare", "launcher", "bwrap", "run_process", "run_process_sandbox"}
    assert data["table"][-2]["target"] == "<= 50"


@needs_bwrap
@pytest.mark.usefixtures("prefect_harness")
def test_the_auth_example_integrates_and_verifies_in_the_sandbox(tmp_path: Path) -> None:
    from prefect_work_clusters.flows.demo.build import build_demo_repo, scripted_agent_cmd
    from prefect_work_clusters.flows.work_clusters import work_clusters

    repo, plan = build_demo_repo(tmp_path)
    state = work_clusters(plan=str(plan), repo=str(repo), agent_cmd=scripted_agent_cmd(), sandbox=True,
                          return_state=True)
    assert state.is_completed(), state.message
    report = json.loads((tmp_path / "auth-system.clusters/auth-system/.runs/report.json").read_text())
    assert [s["status"] for s in report["integration"]["steps"]] == ["merged"] * 3
    assert report["integration"]["verify"] and all(v["exit_code"] == 0 for v in report["integration"]["verify"])
    # The agent's own commits (made on a detached HEAD in the sandbox) are on its branch.
    assert "data: __init__.py" in git(repo, "log", "--format=%s", "clusters/auth-system/data")
