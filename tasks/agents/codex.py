"""OpenAI Codex CLI, ``codex exec``: one non-interactive run that may write in the worktree.

Flags, from openai/codex ``docs/exec.md`` (non-interactive mode), the flag definitions in
``codex-rs/exec/src/cli.rs`` and ``codex-rs/utils/cli/src/shared_options.rs``, and
https://developers.openai.com/codex/noninteractive:

- ``exec``: "Codex does not ask for command or edit approvals"; it streams progress to stderr
  and prints the final message on stdout, then exits.
- ``--sandbox workspace-write``: exec defaults to ``read-only``; this allows edits inside the
  working directory. It replaces ``--full-auto``, which current releases keep only as a
  "legacy compatibility trap" that warns "use `--sandbox workspace-write` instead" (cli.rs).
- The prompt is the positional ``[PROMPT]``, passed as one argv element. Stdin is /dev/null
  (the runner's default), so exec's "read the prompt from stdin" path never waits.

Uncertain: in a linked git worktree the repository's metadata lives outside the worktree, so
the sandbox may refuse ``git commit``; the agent's uncommitted work is committed after it
exits anyway. Codex reports tokens only with ``--json`` and no cost, so no usage is parsed.
The prompt must not start with ``-``, and Linux caps one argument at 128 KiB.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect_work_clusters.tasks.agents.base import AgentBackend

ARGV = ["codex", "exec", "--sandbox", "workspace-write", "{prompt}"]


@dataclass(frozen=True, kw_only=True)
class CodexBackend(AgentBackend):
    name: str = "codex"
    argv: list[str] = field(default_factory=lambda: list(ARGV))
