"""The agent protocol of SPEC 4 against real git and real subprocess agents, without Prefect."""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path

import psutil
import pytest

from prefect_work_clusters.tasks.agents.attempt import AgentFailed, run_attempt
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.resolve import resolve_run
from prefect_work_clusters.tasks.worktrees import prepare
from tests.conftest import git, git_calls, rebaseline, stand_in, write_agent
from tests.loop_helpers import WRITER, plan_yaml, shop_repo


def _ctx(tmp_path: Path, agent_cmd: str, plan_text: str | None = None) -> RunContext:
    repo, plan = shop_repo(tmp_path, plan_text)
    return resolve_run(plan, repo, RunOptions(agent_cmd=agent_cmd))


def test_argv_env_prompt_leftovers_and_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = tmp_path / "records"
    records.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(records))
    cmd = write_agent(tmp_path, WRITER) + " --cluster {cluster} --file {prompt_file} --say {prompt}"
    ctx = _ctx(tmp_path, cmd)
    prepared = prepare(ctx)
    record = run_attempt(ctx, "api", 1)

    seen = ast.literal_eval((records / "api-1.txt").read_text())
    prompt_file = ctx.prompt_file("api", 1)
    prompt = prompt_file.read_text()
    assert seen["argv"][1:5] == ["--cluster", "api", "--file", str(prompt_file)]
    assert seen["argv"][5:] == ["--say", prompt]  # the whole prompt is one argv element
    assert Path(seen["cwd"]) == ctx.worktree("api").resolve()
    env = seen["env"]
    assert env["WC_ROLE"] == "cluster" and env["WC_PLAN"] == "shop" and env["WC_CLUSTER"] == "api"
    assert env["WC_BRANCH"] == "clusters/shop/api" and env["WC_ATTEMPT"] == "1"
    assert env["WC_OWNED_PATHS"] == "api/" and env["WC_CONTRACT_FILES"] == "contracts/api.py"
    assert env["WC_PROMPT_FILE"] == str(prompt_file) and env["WC_WORKTREE"] == str(ctx.worktree("api").resolve())
    # The prompt carries goal, tasks, owned paths, the contract's full text and the rules.
    for needle in ("Build the shop", "implement the API", "`api/`", "def get(self, key: str) -> str",
                   "Never edit the contract files"):
        assert needle in prompt
    # The agent left impl.py uncommitted: it is now committed on the cluster's branch.
    assert record.status == "succeeded"
    assert githistory.changed_files(ctx.repo, prepared.base_sha, "clusters/shop/api") == ["api/impl.py"]
    assert not gitchanges.has_changes(ctx.worktree("api"))
    assert githistory.finished_commit(ctx.repo, prepared.base_sha, "clusters/shop/api")
    assert "agent api wrote impl.py" in ctx.log_file("api").read_text()


def test_base_branch_commits_plan_and_contracts_only_when_they_differ(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "true")
    prepared = prepare(ctx)
    main = git(ctx.repo, "rev-parse", "main")
    assert git(ctx.repo, "rev-parse", f"{prepared.base_sha}^") == main
    assert git(ctx.repo, "show", f"{prepared.base_sha}:.work-clusters/shop.yaml") == ctx.plan_file.read_text().strip()
    # A plan already committed inside the repo, unchanged: no extra commit, base == main.
    (ctx.repo / "shop.yaml").write_text(ctx.plan_file.read_text())
    git(ctx.repo, "add", "shop.yaml")
    git(ctx.repo, "commit", "-q", "-m", "plan")
    rebaseline(ctx.repo)
    ctx2 = resolve_run(ctx.repo / "shop.yaml", ctx.repo, RunOptions(agent_cmd="true", workspace=str(tmp_path / "ws2")))
    githistory.delete_branch(ctx.repo, "clusters/shop/base")
    for c in ("api", "ui", "db"):
        gitworktrees.remove_worktree(ctx.repo, ctx.worktree(c), force=True)
        githistory.delete_branch(ctx.repo, f"clusters/shop/{c}")
    assert prepare(ctx2).base_sha == git(ctx.repo, "rev-parse", "main")


def test_failed_attempt_commits_leftovers_and_feeds_back(tmp_path: Path) -> None:
    cmd = write_agent(tmp_path, """
        wt = pathlib.Path(os.environ["WC_WORKTREE"])
        if os.environ["WC_ATTEMPT"] == "1":
            (wt / "api" / "half.py").write_text("x = 1\\n")
            print("attempt one fails on purpose")
            sys.exit(7)
        prompt = pathlib.Path(os.environ["WC_PROMPT_FILE"]).read_text()
        feedback = pathlib.Path(os.environ["WC_FEEDBACK_FILE"]).read_text()
        assert "exited with status 7" in prompt and "attempt one fails on purpose" in feedback
        (wt / "api" / "impl.py").write_text("y = 2\\n")
    """)
    ctx = _ctx(tmp_path, cmd)
    prepared = prepare(ctx)
    with pytest.raises(AgentFailed) as failed:
        run_attempt(ctx, "api", 1)
    assert failed.value.retryable is False  # the plan allows no retries
    assert failed.value.record.attempts[-1].exit_code == 7
    assert githistory.changed_files(ctx.repo, prepared.base_sha, "clusters/shop/api") == ["api/half.py"]
    record = run_attempt(ctx, "api", 2)
    assert record.status == "succeeded" and [a.attempt for a in record.attempts] == [1, 2]
    assert "Feedback: why attempt 1 failed" in ctx.prompt_file("api", 2).read_text()


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    cmd = write_agent(tmp_path, f"""
        import signal, time
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
        pathlib.Path({str(pids)!r}).write_text(f"{{os.getpid()}} {{child.pid}}")
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
    """)
    ctx = _ctx(tmp_path, cmd, plan_yaml().replace("timeout_seconds: 60", "timeout_seconds: 1.5"))
    prepare(ctx)
    started = time.monotonic()
    with pytest.raises(AgentFailed) as failed:
        run_attempt(ctx, "api", 1)
    assert time.monotonic() - started < 30
    assert failed.value.record.status == "timed_out"
    for pid in map(int, pids.read_text().split()):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_cluster_verify_failure_fails_the_attempt(tmp_path: Path) -> None:
    verify = f"    verify: ['{sys.executable} -c \"raise SystemExit(3)\"']\n"
    # The agent changes nothing: accepted (on_empty: warn), so the verify command is what fails it.
    plan = plan_yaml(extra="contract: {on_empty: warn}\n").replace(
        "    tasks: [implement the API]\n", "    tasks: [implement the API]\n" + verify)
    ctx = _ctx(tmp_path, "true", plan)
    prepare(ctx)
    with pytest.raises(AgentFailed) as failed:
        run_attempt(ctx, "api", 1)
    assert "verify command" in str(failed.value)
    assert failed.value.record.attempts[-1].verify[0].exit_code == 3


# A verify command that commits a file outside its cluster's paths (db/ is another cluster's).
SNEAK = """
import os, pathlib, subprocess
pathlib.Path("db/sneak.py").write_text("x = 1\\n")
who = {"GIT_AUTHOR_NAME": "v", "GIT_AUTHOR_EMAIL": "v@x", "GIT_COMMITTER_NAME": "v", "GIT_COMMITTER_EMAIL": "v@x"}
subprocess.run(["git", "add", "db/sneak.py"], check=True)
subprocess.run(["git", "commit", "-qm", "sneak"], check=True, env={**os.environ, **who})
"""


def test_attempt_git_calls_and_a_verify_command_that_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An attempt reads its branch's tip from files and asks git for its changed files once (a
    budget of git processes, measured 8 on a warm run: add, the worktree's config, ls-files, commit,
    diff, the finished commit, ls-files, rev-parse), yet a verify command that commits
    outside the cluster's paths still fails it: the tip is read again after verify."""
    monkeypatch.setenv("RECORD_DIR", str(tmp_path))
    sneak = tmp_path / "sneak.py"
    sneak.write_text(SNEAK)
    verify = f"    verify: ['{sys.executable} {sneak}']\n"
    plan = plan_yaml().replace("    tasks: [implement the UI]\n", "    tasks: [implement the UI]\n" + verify)
    ctx = _ctx(tmp_path, write_agent(tmp_path, WRITER), plan)
    prepare(ctx)
    run_attempt(ctx, "db", 1)  # the run's watch and the config read once, not counted
    with git_calls() as calls:
        record = run_attempt(ctx, "api", 1)
    assert record.status == "succeeded" and record.head_sha == gitops.head(record.worktree)
    assert len(calls) <= 9, calls
    # The changed files once, their diff saying which are symlinks (no ls-tree).
    assert sum(a[0] == "diff" and "--raw" in a for a in calls) == 1, calls
    assert not any(a[0] == "ls-tree" for a in calls), calls
    with pytest.raises(AgentFailed, match="contract check failed") as failed:
        run_attempt(ctx, "ui", 1)
    assert "db/sneak.py" in (failed.value.record.attempts[-1].output_tail or "")


def test_tool_scratch_files_are_not_committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in(tmp_path, "aider", """
        import pathlib
        pathlib.Path('.aider.chat.history.md').write_text('chat')
        pathlib.Path('api/impl.py').write_text('x = 1\\n')
    """, monkeypatch)
    repo, plan = shop_repo(tmp_path, plan_yaml(extra="agent: aider\n"))
    ctx = resolve_run(plan, repo)
    prepared = prepare(ctx)
    run_attempt(ctx, "api", 1)
    assert githistory.changed_files(ctx.repo, prepared.base_sha, "clusters/shop/api") == ["api/impl.py"]


def test_claude_error_result_fails_the_attempt_and_cost_is_kept(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in(tmp_path, "claude", """
        import json
        print('a warning first')  # Claude Code's JSON result comes last
        print(json.dumps({'type': 'result', 'is_error': True, 'total_cost_usd': 0.25,
                          'usage': {'input_tokens': 10, 'output_tokens': 5}}))
    """, monkeypatch)
    repo, plan = shop_repo(tmp_path, plan_yaml(extra="agent: claude\n"))
    ctx = resolve_run(plan, repo)
    prepare(ctx)
    with pytest.raises(AgentFailed) as failed:
        run_attempt(ctx, "api", 1)
    attempt = failed.value.record.attempts[-1]
    assert attempt.exit_code == 0 and "reported an error" in (attempt.failure or "")
    assert (attempt.cost_usd, attempt.input_tokens, attempt.output_tokens) == (0.25, 10, 5)


def test_prompt_names_what_the_cluster_must_provide(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "true", plan_yaml(extra='provides:\n  "api.impl:Service": "contracts.api:Api"\n'
                                                  "contract: {on_empty: warn}\n"))
    prepare(ctx)
    with pytest.raises(AgentFailed, match="missing|conformance"):  # the agent wrote no api/impl.py
        run_attempt(ctx, "api", 1)
    run_attempt(ctx, "ui", 1)
    assert "`api.impl:Service` must satisfy `contracts.api:Api`" in ctx.prompt_file("api", 1).read_text()
    assert "must satisfy" not in ctx.prompt_file("ui", 1).read_text()
