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

- ``--add-dir DIR``: the ``workspace-write`` sandbox makes everything outside the working
  directory read-only except ``/tmp`` and ``$TMPDIR`` (measured with Codex 0.171), so the files a
  role must write in ``.runs/`` need it. It goes right after ``exec``.

Measured: Codex can never commit in its sandbox (``.git`` of a linked worktree is outside it and
read-only); the agent's uncommitted work is committed after it exits. It prints no cost, only
"tokens used" and the total on the next line, which is parsed. Once bubblewrap is installed
Codex runs its commands through it and needs ``codex-linux-sandbox`` on PATH (it makes that
link itself under ``$CODEX_HOME``, but not when that is under ``/tmp``). A user-defined model
provider takes ``request_max_retries`` and ``stream_max_retries``; a 401 is not retried.
The prompt must not start with ``-``, and Linux caps one argument at 128 KiB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prefect_work_clusters.tasks.agents.base import AgentBackend, Usage

_TOKENS = re.compile(r"^tokens used:?\s*\n?\s*([\d,]+)\s*$", re.MULTILINE)
_ERROR = re.compile(r"^ERROR:\s*(.+)$", re.MULTILINE)

ARGV = ["codex", "exec", "--sandbox", "workspace-write", "{prompt}"]


@dataclass(frozen=True, kw_only=True)
class CodexBackend(AgentBackend):
    name: str = "codex"
    argv: list[str] = field(default_factory=lambda: list(ARGV))
    add_dir_after: tuple[str, ...] = ("codex", "exec")

    def parse_usage(self, output: str) -> Usage | None:
        """The total of the last "tokens used" line, and the last ``ERROR:`` line as the error.

        >>> CodexBackend().parse_usage("codex\\ndone\\ntokens used\\n2,560\\n").total_tokens
        2560
        """
        tokens = _TOKENS.findall(output)
        errors = _ERROR.findall(output)
        if not tokens and not errors:
            return None
        return Usage(cost_usd=None, input_tokens=None, output_tokens=None,
                     total_tokens=int(tokens[-1].replace(",", "")) if tokens else None,
                     error=errors[-1].strip()[:500] if errors else None)
