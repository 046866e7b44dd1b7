"""The real Claude Code, Codex and aider CLIs, end to end through `work-clusters run`, against the
scripted model server of ``tests.model_server``.

Each CLI edits with its own tools (Claude's Read/Write/Bash, Codex's exec_command, aider's
SEARCH/REPLACE blocks in plain text); the "model" only says which. Outside CI a CLI that is not
installed skips its tests; in CI (``CI`` set) it fails them: ``.ci/run`` installs all three.

The projects live under ``/var/tmp``, not ``/tmp``: Codex's sandbox leaves ``/tmp`` writable, so a
test there could not tell whether ``--add-dir`` gave it the run's ``.runs/`` folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI, git, make_repo
from tests.model_server import Answer, Fail, ModelServer, Say, Tool, Turn

pytestmark = [pytest.mark.agents, pytest.mark.slow]

KEY = "sk-scripted-test-key"
FILES = {
    "README.md": "# shop\n",
    "app/config.py": "PROFILE = 'dev'\nTIMEOUT = 30\n",
    "api/__init__.py": "",
    "ui/__init__.py": "",
    "db/__init__.py": "",
}
CONFIG = "app/config.py"
# api and ui both change TIMEOUT = 30: a conflict no deterministic tier settles.
TIMEOUTS = {"api": "60", "ui": "10"}
RESOLVED = "PROFILE = 'dev'\nTIMEOUT = 60\n"
DECISION = "kept api's timeout of 60 s; ui's 10 s would cut the API's slowest calls short"


def require(program: str) -> str:
    """The CLI's path; a skip outside CI when it is missing, a failure in CI."""
    found = shutil.which(program)
    if found is None:
        message = f"{program} is not installed (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture
def root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="wc-real-agents-", dir="/var/tmp"))
    yield path
    if not os.environ.get("WC_KEEP_TEST_DIRS"):  # set it to look at a failed run's .runs/
        shutil.rmtree(path, ignore_errors=True)


# -- what the "model" does, written once, said in each CLI's own tools ------------------------------

Writes = list[tuple[str, str]]  # (path, content); relative paths are in the agent's worktree


def _file(text: str, pattern: str) -> str:
    found = re.search(r"(/[^\s`'\"]*" + pattern + r")", text)
    assert found, f"no {pattern} in the prompt"
    return found.group(1)


def cluster_of(text: str) -> str | None:
    found = re.search(r"# Work cluster `([a-z0-9-]+)`", text)
    return found.group(1) if found else None


def build_writes(text: str) -> Writes:
    """The example: each cluster writes its module; api and ui change the shared timeout; the
    integration agent resolves that conflict and says why in its decisions file."""
    if "# Integration of plan" in text:
        decisions = _file(text, r"\.runs/integration/decisions/[\w.-]+\.md")
        return [(CONFIG, RESOLVED), (decisions, json.dumps([{"file": CONFIG, "hunk": 1, "reason": DECISION}]))]
    cluster = cluster_of(text)
    if cluster is None:
        return []
    writes = [(f"{cluster}/impl.py", f"NAME = {cluster!r}\n")]
    if cluster in TIMEOUTS:
        writes.append((CONFIG, f"PROFILE = 'dev'\nTIMEOUT = {TIMEOUTS[cluster]}\n"))
    return writes


FINDING = {"title": "N+1 queries in the report", "severity": "high", "evidence": "240 queries for 40 rows",
           "location": "db/__init__.py", "proposed_fix": "one joined query", "paths": ["db/"]}


def investigate_writes(text: str) -> Writes:
    if "# Synthesis of investigation" in text:
        return [(_file(text, r"\.runs/action-plan\.md"), "# Action plan\n\n1. db-1: one joined query\n")]
    cluster = cluster_of(text)
    if cluster is None:
        return []
    doc = f"# {cluster}\n\n```json\n{json.dumps([{**FINDING, 'title': f'{cluster}: slow'}])}\n```\n"
    return [(_file(text, rf"\.runs/findings/{cluster}\.md"), doc)]


def claude_steps(writes: Writes, worktree: Path, refuse: bool) -> list[Tool]:
    steps = [Tool("Bash", {"command": "curl -s http://192.0.2.1/", "description": "fetch a page"})] if refuse else []
    for path, content in writes:
        target = str(path if path.startswith("/") else worktree / path)
        if Path(target).exists():  # Claude Code writes an existing file only after reading it
            steps.append(Tool("Read", {"file_path": target}))
        steps.append(Tool("Write", {"file_path": target, "content": content}))
    return steps


def codex_command(writes: Writes) -> str:
    parts = [f"mkdir -p \"$(dirname '{p}')\" && cat > '{p}' <<'WC_EOF'\n{c.rstrip(chr(10))}\nWC_EOF"
             for p, c in writes]
    return "\n".join(parts)


def aider_blocks(writes: Writes, worktree: Path) -> str:
    blocks = []
    for path, content in writes:
        old = (worktree / path).read_text() if (worktree / path).exists() else ""
        blocks.append(f"{path}\n```python\n<<<<<<< SEARCH\n{old}=======\n{content}>>>>>>> REPLACE\n```\n")
    return "I'll make the changes.\n\n" + "\n".join(blocks)


def worktree_of(workspace: Path, text: str) -> Path:
    cluster = cluster_of(text)
    return workspace / (cluster if cluster else "integration")


def script_for(cli: str, workspace: Path, plan: Callable[[str], Writes], refuse: str | None = None
               ) -> Callable[[Turn], Answer]:
    """One script for every agent of a run: what to write comes from the prompt, how far the
    conversation is from the tool results the CLI sent back."""
    steps: dict[str, list[Tool]] = {}

    def script(turn: Turn) -> Answer:
        if not turn.main:
            return Say("work-clusters: scripted change")  # a title, a commit message
        prompt = turn.text if cli == "aider" else turn.prompt  # aider's prompt is in its last message
        writes = plan(prompt)
        if cli == "aider":
            return Say(aider_blocks(writes, worktree_of(workspace, prompt)) if writes else "Nothing to do.")
        if cli == "codex":
            if turn.results or not writes:
                return Say("Done.")
            return Tool("exec_command", {"cmd": codex_command(writes)})
        key = prompt
        if key not in steps:  # planned once per conversation: the files it writes change as it goes
            refused = refuse is not None and cluster_of(prompt) == refuse
            steps[key] = claude_steps(writes, worktree_of(workspace, prompt), refused)
        done = len(turn.results)
        return steps[key][done] if done < len(steps[key]) else Say("Done.")

    return script


def cli_env(cli: str, root: Path, server: ModelServer, *, key: str | None = KEY) -> dict[str, str]:
    """The environment that points ``cli`` at the server; ``key=None`` leaves the key out (a
    saved agent block brings it)."""
    home = root / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "PREFECT_HOME": str(root / ".prefect-home"),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240"}
    env.pop("TMPDIR", None)  # Codex's sandbox leaves $TMPDIR writable
    if cli == "claude":
        env["ANTHROPIC_BASE_URL"] = server.url
        if key:
            env["ANTHROPIC_API_KEY"] = key
    elif cli == "codex":
        codex_home = home / ".codex"
        codex_home.mkdir(exist_ok=True)
        (codex_home / "config.toml").write_text(
            'model = "gpt-5-codex"\nmodel_provider = "scripted"\n[model_providers.scripted]\nname = "scripted"\n'
            f'base_url = "{server.url}/v1"\nwire_api = "responses"\nenv_key = "SCRIPTED_API_KEY"\n'
            "request_max_retries = 0\nstream_max_retries = 0\n")
        env["CODEX_HOME"] = str(codex_home)
        if key:
            env["SCRIPTED_API_KEY"] = key
    else:
        env.update({"OPENAI_API_BASE": f"{server.url}/v1", "AIDER_MODEL": "gpt-4o"})
        if key:
            env["OPENAI_API_KEY"] = key
    return env


def plan_yaml(agent: str, *, kind: str = "build", retries: int = 0, names: tuple[str, ...] = ("api", "ui", "db")
              ) -> str:
    clusters = "".join(f"  - {{name: {c}, paths: [{c}/], tasks: [implement {c}], kind: {kind}}}\n" for c in names)
    verify = f"{sys.executable} -c 'import api.impl, ui.impl, db.impl'"
    integration = f"integration:\n  verify: [\"{verify}\"]\n" if kind == "build" else ""  # nothing is merged
    return (f"name: shop\ngoal: Build the shop\nagent: {agent}\nshared: [{CONFIG}]\nclusters:\n{clusters}"
            f"{integration}limits: {{timeout_seconds: 240, retries: {retries}, concurrency: 3}}\n")


def run(root: Path, env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    res = subprocess.run([*CLI, "run", "shop.yaml", "--repo", "repo", *args], cwd=root, env=env,
                         capture_output=True, text=True, timeout=900)
    report = root / "repo.clusters" / "shop" / ".runs" / "report.json"
    assert report.is_file(), res.stdout + res.stderr
    return res, json.loads(report.read_text())


def markdown(root: Path) -> str:
    return (root / "repo.clusters" / "shop" / ".runs" / "merge-report.md").read_text()


# -- the tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("cli", ["claude", "codex", "aider"])
def test_a_real_cli_builds_the_example_and_resolves_a_conflict(cli: str, root: Path) -> None:
    require(cli)
    repo = make_repo(root, FILES)
    (root / "shop.yaml").write_text(plan_yaml(cli))
    workspace = root / "repo.clusters" / "shop"
    # aider edits only inside its repo, and a conflicted file's markers break its SEARCH/REPLACE
    # format: it builds without the shared-file conflict (the integration role is Claude's and Codex's).
    plan = build_writes if cli != "aider" else (lambda text: [w for w in build_writes(text) if w[0] != CONFIG])
    with ModelServer(script_for(cli, workspace, plan, refuse="api" if cli == "claude" else None)) as server:
        res, report = run(root, cli_env(cli, root, server))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert "Traceback" not in out
    assert [c["status"] for c in report["clusters"]] == ["succeeded"] * 3, out
    integrated = workspace / "integration"
    assert all((integrated / c / "impl.py").read_text() == f"NAME = {c!r}\n" for c in ("api", "ui", "db"))
    assert {t.auth.removeprefix("Bearer ") for t in server.turns} == {KEY}
    committed = git(repo, "log", "--all", "--name-only", "--format=")
    assert ".aider" not in committed, committed  # its tag cache folder included (issue 14, 1)
    attempts = [a for c in report["clusters"] for a in c["per_attempt"]]
    md = markdown(root)
    if cli == "claude":
        assert all(a["cost_usd"] and a["cost_usd"] > 0 and a["input_tokens"] for a in attempts)
        api = next(c for c in report["clusters"] if c["cluster"] == "api")
        assert api["per_attempt"][0]["denials"] == ["Bash: curl -s http://192.0.2.1/"]
        assert "refused: `Bash: curl -s http://192.0.2.1/`" in md
    elif cli == "codex":
        assert all(a["total_tokens"] and a["total_tokens"] > 0 for a in attempts)
        assert "tokens" in md
    else:
        assert all(a["input_tokens"] and a["output_tokens"] for a in attempts)
    if cli != "aider":
        # The decisions file is in .runs/, outside the worktree: --add-dir let the agent write it.
        integ = report["integration"]
        assert integ["agent_calls"] and integ["agent_calls"][0]["decisions"][0]["reason"] == DECISION, md
        assert (integrated / CONFIG).read_text() == RESOLVED
        assert DECISION in md


@pytest.mark.parametrize("cli", ["claude", "codex"])
def test_a_real_cli_investigates_and_synthesizes(cli: str, root: Path) -> None:
    require(cli)
    make_repo(root, FILES)
    (root / "shop.yaml").write_text(plan_yaml(cli, kind="investigation"))
    workspace = root / "repo.clusters" / "shop"
    with ModelServer(script_for(cli, workspace, investigate_writes)) as server:
        res, report = run(root, cli_env(cli, root, server))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    inv = report["investigation"]
    assert sorted(f["id"] for f in inv["findings"]) == ["api-1", "db-1", "ui-1"], out
    assert (workspace / ".runs" / "action-plan.md").read_text().startswith("# Action plan"), out
    assert inv["action_plan"]["agent"] == cli and inv["action_plan"]["ok"], inv["action_plan"]


def test_claude_through_a_saved_agent_block_with_the_key_only_in_secret_env(root: Path) -> None:
    require("claude")
    make_repo(root, FILES)
    (root / "shop.yaml").write_text(plan_yaml("claude-scripted"))
    workspace = root / "repo.clusters" / "shop"
    with ModelServer(script_for("claude", workspace, build_writes)) as server:
        env = cli_env("claude", root, server, key=None)
        save = ("from pydantic import SecretStr\nfrom prefect_work_clusters.blocks import AgentBlock\n"
                f"AgentBlock(preset='claude', secret_env={{'ANTHROPIC_API_KEY': SecretStr({KEY!r})}})"
                ".save('claude-scripted', overwrite=True)\n")
        saved = subprocess.run([sys.executable, "-c", save], cwd=root, env=env, capture_output=True, text=True,
                               timeout=300)
        assert saved.returncode == 0, saved.stderr
        res, report = run(root, env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert {t.auth for t in server.turns} == {KEY}
    runs = workspace / ".runs"
    leaked = [str(p) for p in runs.rglob("*") if p.is_file() and KEY in p.read_text(errors="replace")]
    assert leaked == [] and KEY not in res.stdout + res.stderr


@pytest.mark.parametrize("cli", ["claude", "aider"])
def test_a_bad_key_fails_the_attempt_fast_with_the_agents_own_message(cli: str, root: Path) -> None:
    """Claude Code exits 1 with its message; aider exits 0 (it does on any API error) and
    ``contract.on_empty`` fails the attempt, its error line and last output in the report."""
    require(cli)
    make_repo(root, FILES)
    (root / "shop.yaml").write_text(plan_yaml(cli, names=("api", "ui")))
    with ModelServer(lambda turn: Fail(401, "invalid x-api-key: scripted")) as server:
        res, report = run(root, cli_env(cli, root, server))
    out = res.stdout + res.stderr
    assert res.returncode == 1, out
    for cluster in report["clusters"]:
        said = (cluster["failure"] or "") + cluster["last_output"]
        assert cluster["status"] == "failed" and len(cluster["per_attempt"]) == 1, cluster
        assert ("Invalid API key" if cli == "claude" else "invalid x-api-key") in said, cluster
        if cli == "aider":
            assert "changed no file" in cluster["failure"], cluster
        assert cluster["duration"] < 90, cluster  # the CLI's own retries are capped
    assert "The agent's last output" in markdown(root)
