"""Agent presets: the exact argv each tool receives, usage parsing, and how an agent is chosen.

Each preset runs against a stand-in executable of the same name (a Python script first on PATH)
that records the argv and environment it was given; claude's stand-in also prints a result in
the shape of ``claude -p --output-format json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from prefect_work_clusters.tasks.agents.aider import AiderBackend
from prefect_work_clusters.tasks.agents.claude import ClaudeBackend
from prefect_work_clusters.tasks.agents.codex import CodexBackend
from prefect_work_clusters.tasks.agents.command import CommandBackend
from prefect_work_clusters.tasks.agents.registry import (
    AGENTS,
    PLACEHOLDERS,
    AgentBackend,
    NoAgent,
    UnknownAgent,
    preset_names,
    render_argv,
    resolve_agent,
)
from prefect_work_clusters.tasks.errors import BadInput, WorkClustersError
from prefect_work_clusters.tasks.plan.models import CommandAgent
from prefect_work_clusters.tasks.proc.runner import MissingExecutable, run_process

CLAUDE_RESULT = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "duration_ms": 48211,
    "duration_api_ms": 45102,
    "num_turns": 7,
    "result": "Added the /login and /register routes and their tests.",
    "session_id": "4f1c2a9e-1b7d-4c1e-9a55-0c3e2d8f7a10",
    "total_cost_usd": 0.18342,
    "usage": {
        "input_tokens": 1520,
        "cache_creation_input_tokens": 2048,
        "cache_read_input_tokens": 10240,
        "output_tokens": 830,
        "server_tool_use": {"web_search_requests": 0},
        "service_tier": "standard",
    },
    "permission_denials": [],
}

STAND_IN = """\
#!{python}
import json, os, sys
record = {{
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "env": {{k: v for k, v in os.environ.items() if k.startswith(("WC_", "AGENT_"))}},
}}
if "--message-file" in sys.argv:
    with open(sys.argv[sys.argv.index("--message-file") + 1]) as f:
        record["message"] = f.read()
with open(os.environ["STAND_IN_RECORD"], "w") as f:
    json.dump(record, f)
if os.path.basename(sys.argv[0]) == "claude":
    print("Warning: no stdin data received in 3s, proceeding without it.", file=sys.stderr)
    print({result!r})
"""


def make_stand_in(bin_dir: Path, name: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(STAND_IN.format(python=sys.executable, result=json.dumps(CLAUDE_RESULT)))
    path.chmod(0o755)
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> dict[str, Any]:
    worktree = tmp_path / "auth-system" / "backend"
    worktree.mkdir(parents=True)
    canary = tmp_path / "PWNED"
    # Shell syntax of every kind; any of it reaching a shell would create the canary file.
    prompt = (
        "# Cluster backend\n"
        f'It\'s "auth"; touch {canary}\n'
        f"$(touch {canary}) `touch {canary}` && touch {canary} || touch {canary}\n"
        'Literal braces stay: {cluster} {"json": [1, 2]} ${HOME} *.py\n'
    )
    prompt_file = tmp_path / ".runs" / "prompts" / "backend.md"
    prompt_file.parent.mkdir(parents=True)
    prompt_file.write_text(prompt)
    values = {
        "prompt": prompt,
        "prompt_file": str(prompt_file),
        "cluster": "backend",
        "worktree": str(worktree),
        "plan": "auth-system",
        "branch": "clusters/auth-system/backend",
    }
    return {"tmp": tmp_path, "worktree": worktree, "canary": canary, "prompt": prompt, "values": values}


def run_agent(backend: AgentBackend, ws: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Run a backend the way the agent task does: rendered argv, worktree cwd, merged env."""
    bin_dir = ws["tmp"] / "bin"
    make_stand_in(bin_dir, backend.render(ws["values"])[0])
    record_file = ws["tmp"] / "record.json"
    env = {
        **os.environ,
        **backend.env,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "WC_CLUSTER": "backend",
        "STAND_IN_RECORD": str(record_file),
    }
    lines: list[str] = []
    result = run_process(
        backend.render(ws["values"]),
        cwd=ws["worktree"],
        env=env,
        timeout=30,
        log_path=ws["tmp"] / ".runs" / "logs" / "backend.log",
        on_line=lines.append,
    )
    assert result.ok, result.output_tail
    assert not ws["canary"].exists()
    record: dict[str, Any] = json.loads(record_file.read_text())
    assert record["cwd"] == str(ws["worktree"])
    assert record["env"]["WC_CLUSTER"] == "backend"
    return record, lines


def test_claude_preset_argv_and_usage(workspace: dict[str, Any]) -> None:
    backend = resolve_agent("claude")

    record, lines = run_agent(backend, workspace)

    assert record["argv"] == [
        "-p",
        "--permission-mode",
        "acceptEdits",
        "--output-format",
        "json",
        workspace["prompt"],
    ]
    usage = backend.parse_usage("\n".join(lines))
    assert usage is not None
    assert usage.cost_usd == pytest.approx(0.18342)
    assert (usage.input_tokens, usage.output_tokens) == (1520, 830)
    assert usage.is_error is False
    assert usage.raw is not None and usage.raw["session_id"] == CLAUDE_RESULT["session_id"]


def test_codex_preset_argv(workspace: dict[str, Any]) -> None:
    backend = resolve_agent("codex")

    record, lines = run_agent(backend, workspace)

    assert record["argv"] == ["exec", "--sandbox", "workspace-write", workspace["prompt"]]
    assert backend.parse_usage("\n".join(lines)) is None


def test_aider_preset_argv_reads_the_prompt_file(workspace: dict[str, Any]) -> None:
    backend = resolve_agent("aider")

    record, _ = run_agent(backend, workspace)

    assert record["argv"] == [
        "--message-file",
        workspace["values"]["prompt_file"],
        "--yes-always",
        "--no-check-update",
        "--no-show-release-notes",
        "--no-analytics",
        "--no-gitignore",
        "--no-detect-urls",
        "--no-show-model-warnings",
        "--no-suggest-shell-commands",
        "--no-pretty",
        "--no-fancy-input",
    ]
    assert record["message"] == workspace["prompt"]
    assert backend.scratch == (".aider*",)


def test_command_agent_from_the_plan_keeps_env_timeout_and_retries(workspace: dict[str, Any]) -> None:
    ref = CommandAgent(
        command=["my-agent", "--cluster={cluster}", "--branch", "{branch}", '--opts={"depth": 2}', "{prompt}"],
        env={"AGENT_MODE": "strict"},
        timeout_seconds=90,
        retries=2,
    )
    backend = resolve_agent(ref)

    record, _ = run_agent(backend, workspace)

    assert (backend.name, backend.timeout_seconds, backend.retries) == ("command", 90, 2)
    assert record["argv"] == [
        "--cluster=backend",
        "--branch",
        "clusters/auth-system/backend",
        '--opts={"depth": 2}',
        workspace["prompt"],
    ]
    assert record["env"]["AGENT_MODE"] == "strict"


def test_a_preset_whose_tool_is_missing_starts_nothing(workspace: dict[str, Any]) -> None:
    backend = resolve_agent("codex")

    with pytest.raises(MissingExecutable, match="'codex' not found on PATH; install it or pass --agent-cmd"):
        run_process(
            backend.render(workspace["values"]),
            cwd=workspace["worktree"],
            env={"PATH": str(workspace["tmp"] / "empty")},
            timeout=10,
            hint="install it or pass --agent-cmd",
        )


def test_render_argv_substitutes_only_known_placeholders() -> None:
    values = {"cluster": "api", "plan": "auth", "prompt": "$(rm -rf /); echo {plan} {branch}\n'\""}

    argv = render_argv(
        ["tool", "--id={plan}/{cluster}", '{"cluster": "{cluster}"}', "{0} {unknown} ${cluster}", "{prompt}"],
        values,
    )

    assert argv == [
        "tool",
        "--id=auth/api",
        '{"cluster": "api"}',
        "{0} {unknown} $api",
        "$(rm -rf /); echo {plan} {branch}\n'\"",  # a value is never scanned again
    ]
    assert set(PLACEHOLDERS) == {"prompt", "prompt_file", "cluster", "worktree", "plan", "branch"}


def test_render_argv_rejects_missing_and_unknown_values() -> None:
    with pytest.raises(ValueError, match=r"uses \{worktree\}"):
        render_argv(["tool", "{worktree}"], {"cluster": "api"})
    with pytest.raises(ValueError, match="unknown placeholder"):
        render_argv(["tool"], {"clutser": "api"})


def test_parse_usage_finds_the_last_result_line_among_other_output() -> None:
    older = {**CLAUDE_RESULT, "total_cost_usd": 9.99}
    output = "\n".join(
        [
            "Loading...",
            json.dumps(older),
            '{"type": "system", "subtype": "init"}',
            "  " + json.dumps({**CLAUDE_RESULT, "is_error": True, "subtype": "error_max_turns"}),
            "{not json",
        ]
    )

    usage = ClaudeBackend().parse_usage(output)

    assert usage is not None
    assert usage.cost_usd == pytest.approx(0.18342)
    assert usage.is_error is True


def test_parse_usage_reads_the_older_cost_field_and_tolerates_odd_values() -> None:
    old = ClaudeBackend().parse_usage(json.dumps({"type": "result", "cost_usd": 0.5, "usage": {"input_tokens": 3}}))
    odd = ClaudeBackend().parse_usage(
        json.dumps({"type": "result", "total_cost_usd": "0.5", "usage": {"input_tokens": True, "output_tokens": "7"}})
    )

    assert old is not None and (old.cost_usd, old.input_tokens, old.output_tokens) == (0.5, 3, None)
    assert odd is not None and (odd.cost_usd, odd.input_tokens, odd.output_tokens) == (None, None, None)


@pytest.mark.parametrize(
    "output",
    ["", "Error: not logged in", '{"type": "result", "total_cost', "[1, 2]", '{"type": "assistant"}', "{}"],
)
def test_parse_usage_without_a_result_is_none(output: str) -> None:
    assert ClaudeBackend().parse_usage(output) is None


def test_resolve_presets() -> None:
    assert preset_names() == ["claude", "codex", "aider"]
    assert set(AGENTS) == {"claude", "codex", "aider", "command"}
    assert isinstance(resolve_agent("claude"), ClaudeBackend)
    assert isinstance(resolve_agent("codex"), CodexBackend)
    assert isinstance(resolve_agent("aider"), AiderBackend)
    assert [resolve_agent(name).name for name in preset_names()] == preset_names()


def test_agent_cmd_wins_over_the_plan() -> None:
    backend = resolve_agent("claude", cli_argv=["my-agent", "{prompt_file}"])

    assert isinstance(backend, CommandBackend)
    assert backend.argv == ["my-agent", "{prompt_file}"]
    assert (backend.env, backend.timeout_seconds, backend.retries) == ({}, None, None)


def test_no_agent_is_a_clear_error() -> None:
    with pytest.raises(NoAgent, match="no agent: set `agent:` in the plan or pass --agent / --agent-cmd") as info:
        resolve_agent(None)
    assert isinstance(info.value, WorkClustersError) and info.value.exit_code == 2


def test_unknown_agent_lists_the_presets() -> None:
    with pytest.raises(UnknownAgent, match="unknown agent 'gpt-coder'; use one of claude, codex, aider"):
        resolve_agent("gpt-coder")


def test_command_without_argv_is_bad_input() -> None:
    with pytest.raises(BadInput, match="needs a program to run"):
        resolve_agent("command")
    with pytest.raises(BadInput, match="needs a program to run"):
        resolve_agent(None, cli_argv=[])
