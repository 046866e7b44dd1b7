"""What the agent presets add around the real CLIs (issue 14), checked without them: where
``--add-dir`` goes, which scratch files stay out of the leftover commit, what is read from each
CLI's output (captured from Claude Code 2.1.197, Codex 0.171 and aider 0.86), and an attempt
that exits 0 having changed nothing (``contract.on_empty``). The real CLIs run in
``tests/test_real_agents.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from prefect_work_clusters.blocks.agent import AgentBlock
from prefect_work_clusters.tasks.agents.aider import AiderBackend
from prefect_work_clusters.tasks.agents.attempt import AgentFailed, run_attempt
from prefect_work_clusters.tasks.agents.call import writable_dirs
from prefect_work_clusters.tasks.agents.claude import ClaudeBackend
from prefect_work_clusters.tasks.agents.codex import CodexBackend
from prefect_work_clusters.tasks.agents.command import CommandBackend
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.report import ClusterSummary, RunReport, render_markdown
from prefect_work_clusters.tasks.resolve import resolve_run
from prefect_work_clusters.tasks.worktrees import prepare
from tests.conftest import git, make_repo, write_agent
from tests.loop_helpers import plan_yaml, shop_repo

VALUES = {"prompt": "# Work cluster `api`", "prompt_file": "/w/.runs/prompts/api-1.md", "cluster": "api",
          "worktree": "/w/api", "plan": "shop", "branch": "clusters/shop/api"}

# Captured from the real CLIs against tests/model_server.py.
CLAUDE_DENIED = {"type": "result", "subtype": "success", "is_error": False, "num_turns": 4, "result": "done",
                 "total_cost_usd": 0.032, "usage": {"input_tokens": 4800, "output_tokens": 320},
                 "permission_denials": [{"tool_name": "Bash", "tool_use_id": "toolu_0003",
                                         "tool_input": {"command": "curl http://example.com", "description": "x"}}]}
CLAUDE_401 = {"type": "result", "subtype": "success", "is_error": True, "api_error_status": 401, "num_turns": 1,
              "result": "Invalid API key · Fix external API key", "total_cost_usd": 0,
              "usage": {"input_tokens": 0, "output_tokens": 0}, "permission_denials": []}
CODEX_OUT = """OpenAI Codex v0.171.0
--------
workdir: /tmp/agents-try/cwt
sandbox: workspace-write [workdir, /tmp, $TMPDIR, /w/.runs/integration/decisions]
--------
exec
/bin/bash -lc "mkdir -p api" in /tmp/agents-try/cwt
 succeeded in 1209ms:
codex
done
tokens used
2,560
"""
CODEX_401 = """warning: Model metadata for `gpt-5-codex` not found.
ERROR: unexpected status 401 Unauthorized: invalid key, url: http://127.0.0.1:36387/v1/responses
"""
AIDER_OUT = """Aider v0.86.2
Main model: gpt-4o with diff edit format
Tokens: 2.1k sent, 24 received. Cost: $0.0055 message, $0.0055 session.
Applied edit to api/impl.py
Commit d85c212 feat: add api impl
"""
AIDER_401 = ("Aider v0.86.2\nRepo-map: using 4096 tokens, auto refresh\n\n"
             "litellm.AuthenticationError: AuthenticationError: OpenAIException - invalid \n"  # aider wraps here
             "x-api-key: scripted\nThe API provider is not able to authenticate you. Check your API key.\n\n")


def test_add_dir_follows_the_program_so_it_cannot_swallow_the_prompt() -> None:
    runs = [Path("/w/.runs/findings"), Path("/w/.runs/findings")]
    assert ClaudeBackend().render(VALUES, runs) == [
        "claude", "--add-dir", "/w/.runs/findings", "-p", "--permission-mode", "acceptEdits",
        "--output-format", "json", "# Work cluster `api`"]
    assert CodexBackend().render(VALUES, runs)[:5] == ["codex", "exec", "--add-dir", "/w/.runs/findings", "--sandbox"]
    assert ClaudeBackend().render(VALUES) == ClaudeBackend().render(VALUES, [])  # nothing to add: as before
    # A user's own argv, even one naming another program, is never rewritten; aider takes no such option.
    assert CommandBackend(argv=["my-claude", "{prompt}"]).render(VALUES, runs) == ["my-claude", VALUES["prompt"]]
    assert "--add-dir" not in AiderBackend().render(VALUES, runs)
    saved = AgentBlock(preset="claude", secret_env={"ANTHROPIC_API_KEY": SecretStr("sk-x")}).backend("team")
    assert saved.render(VALUES, runs)[:3] == ["claude", "--add-dir", "/w/.runs/findings"]
    assert saved.env_defaults["CLAUDE_CODE_MAX_RETRIES"] == "2"


def test_only_output_files_outside_the_worktree_are_made_writable(tmp_path: Path) -> None:
    wt = tmp_path / "api"
    env = {"WC_FINDINGS_FILE": str(tmp_path / ".runs/findings/api.md"), "WC_FEEDBACK_FILE": str(tmp_path / "x/f.md"),
           "WC_DECISIONS_FILE": str(wt / "inside/decisions.md")}
    assert writable_dirs(wt, env) == [tmp_path / ".runs/findings"]


def test_aiders_scratch_folder_stays_out_of_the_leftover_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"README.md": "# r\n"})
    for rel in (".aider.tags.cache.v4/cache.db", ".aider.chat.history.md", "sub/.aider.input.history",
                "api/impl.py"):
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text("x\n")
    git(repo, "checkout", "-q", "-b", "work")
    gitchanges.commit_all(repo, "leftovers", exclude=AiderBackend().scratch_globs())
    assert git(repo, "show", "--name-only", "--format=", "HEAD").splitlines() == ["api/impl.py"]
    git(repo, "checkout", "-q", "main")
    git(repo, "branch", "-D", "work")
    git(repo, "clean", "-fdxq")


def test_usage_and_errors_are_read_from_each_clis_real_output() -> None:
    claude = ClaudeBackend().parse_usage(json.dumps(CLAUDE_DENIED))
    assert claude is not None and claude.denials == ("Bash: curl http://example.com",) and claude.error is None
    assert claude.cost_usd == 0.032 and claude.input_tokens == 4800
    bad = ClaudeBackend().parse_usage(json.dumps(CLAUDE_401))
    assert bad is not None and bad.is_error and bad.error == "Invalid API key · Fix external API key"
    codex = CodexBackend().parse_usage(CODEX_OUT)
    assert codex is not None and codex.total_tokens == 2560 and codex.cost_usd is None and codex.error is None
    codex_bad = CodexBackend().parse_usage(CODEX_401)
    assert codex_bad is not None and codex_bad.error and codex_bad.error.startswith("unexpected status 401")
    aider = AiderBackend().parse_usage(AIDER_OUT)
    assert aider is not None and (aider.input_tokens, aider.output_tokens, aider.cost_usd) == (2100, 24, 0.0055)
    aider_bad = AiderBackend().parse_usage(AIDER_401)
    assert aider_bad is not None and aider_bad.error == (
        "litellm.AuthenticationError: AuthenticationError: OpenAIException - invalid x-api-key: scripted "
        "The API provider is not able to authenticate you. Check your API key.")
    assert CodexBackend().parse_usage("nothing here") is None and AiderBackend().parse_usage("") is None


NOTHING = """
print("Nothing to do: the API said 401.")
"""


@pytest.mark.parametrize("policy", ["retry", "warn"])
def test_exit_0_and_no_change(tmp_path: Path, policy: str) -> None:
    """``retry``: a failed attempt, the reason and the agent's last lines in the next prompt and the
    report. ``warn``: accepted, with a warning on the attempt."""
    extra = f"contract: {{on_empty: {policy}}}\n" if policy == "warn" else ""
    repo, plan = shop_repo(tmp_path, plan_yaml(extra=extra, verify="true").replace("retries: 0", "retries: 1"))
    ctx = resolve_run(plan, repo, RunOptions(agent_cmd=write_agent(tmp_path, NOTHING)))
    prepare(ctx)
    if policy == "warn":
        record = run_attempt(ctx, "api", 1)
        assert record.status == "succeeded" and "changed no file" in (record.attempts[0].warning or "")
        return
    with pytest.raises(AgentFailed, match="exited 0 but changed no file") as failed:
        run_attempt(ctx, "api", 1)
    assert failed.value.retryable
    with pytest.raises(AgentFailed):
        run_attempt(ctx, "api", 2)
    feedback = ctx.prompt_file("api", 2).read_text()
    assert "changed no file" in feedback and "Nothing to do: the API said 401." in feedback
    summary = ClusterSummary.of(ctx, failed.value.record)
    assert "Nothing to do: the API said 401." in summary.last_output
    assert [a.attempt for a in summary.per_attempt] == [1]
    report = RunReport.model_construct(plan="shop", goal="", repo=str(repo), workspace="", base_ref="HEAD",
                                       base_ref_sha="0" * 40, base_sha="0" * 40, ok=False, phases={},
                                       clusters=[summary], checks=[], tree_checks=[], integration=None,
                                       investigation=None, land=None, notes=[], total_cost_usd=None)
    md = render_markdown(report)
    assert "The agent's last output" in md and "  Nothing to do: the API said 401." in md
    assert "- **api** attempt 1: exit 0" in md
