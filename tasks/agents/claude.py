"""Claude Code CLI in print mode: edits accepted, JSON result with cost and usage.

Flags, from the Claude Code CLI reference (https://docs.anthropic.com/en/docs/claude-code/cli-reference)
and the permission-modes page (https://code.claude.com/docs/en/permission-modes):

- ``-p`` / ``--print``: "Print response without interactive mode"; runs the prompt and exits.
- ``--permission-mode acceptEdits``: file edits (and mkdir, touch, mv, cp) run without asking;
  the permission-modes page says the same flag works with ``-p``. Anything that would still need
  approval (other shell commands, network) is denied rather than prompted for in print mode and
  shows up in the result's ``permission_denials``.
- ``--output-format json``: "Single JSON object with the complete result" on stdout, with
  ``type: "result"``, ``is_error``, ``total_cost_usd`` and ``usage.{input,output}_tokens``
  (field names as in the Agent SDK's result message; older releases wrote ``cost_usd``).
- The prompt is the positional argument, as in ``claude -p "query"``, passed as one argv element.
- ``--add-dir DIR``: measured with Claude Code 2.1.197, print mode with ``acceptEdits`` refuses
  writes outside the working directory (they show up in ``permission_denials``), and the files
  a role must write (findings, action plan, decisions) live in ``.runs/``. The option takes
  several values, so it goes right after ``claude`` (``AgentBackend.render``), never before the
  prompt, which it would swallow.
- ``CLAUDE_CODE_MAX_RETRIES`` (set to 2 unless the environment sets it): a bad key otherwise
  makes an attempt retry for about three minutes before it fails.

Uncertain: the prompt must not start with ``-`` (it would be read as an option; our prompt
files start with a heading), and Linux caps one argument at 128 KiB, so a prompt carrying very
large contracts would fail to start with a clear error. ``input_tokens`` is the API's count,
which excludes cached tokens (``cache_read_input_tokens`` and friends are kept in ``raw``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from prefect_work_clusters.tasks.agents.base import AgentBackend, Usage

# Claude Code retries a failing API call for about three minutes by default, a bad key included;
# two retries fail an attempt in seconds. Update checks and telemetry are off: runs are offline-safe.
ENV_DEFAULTS = {"CLAUDE_CODE_MAX_RETRIES": "2", "DISABLE_AUTOUPDATER": "1", "DISABLE_TELEMETRY": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
ARGV = ["claude", "-p", "--permission-mode", "acceptEdits", "--output-format", "json", "{prompt}"]


@dataclass(frozen=True, kw_only=True)
class ClaudeBackend(AgentBackend):
    name: str = "claude"
    argv: list[str] = field(default_factory=lambda: list(ARGV))
    add_dir_after: tuple[str, ...] = ("claude",)
    env_defaults: dict[str, str] = field(default_factory=lambda: dict(ENV_DEFAULTS))

    def parse_usage(self, output: str) -> Usage | None:
        """Read the last ``"type": "result"`` JSON line; anything before it (warnings) is skipped.

        Pass the whole output of the attempt: the result line can be longer than a log tail.
        """
        result = _last_result(output)
        if result is None:
            return None
        usage = result.get("usage")
        tokens: dict[str, Any] = usage if isinstance(usage, dict) else {}
        cost = result.get("total_cost_usd", result.get("cost_usd"))
        is_error = result.get("is_error") is True
        message = result.get("result")
        return Usage(
            cost_usd=_float_or_none(cost),
            input_tokens=_int_or_none(tokens.get("input_tokens")),
            output_tokens=_int_or_none(tokens.get("output_tokens")),
            is_error=is_error,
            raw=result,
            denials=tuple(_denial(d) for d in result.get("permission_denials") or [] if isinstance(d, dict)),
            error=message.strip()[:500] if is_error and isinstance(message, str) and message.strip() else None,
        )


def _denial(entry: dict[str, Any]) -> str:
    """One refused tool call as one line: the tool and what it was asked to do."""
    args = entry.get("tool_input")
    detail = ""
    if isinstance(args, dict):
        detail = str(args.get("command") or args.get("file_path") or args.get("path") or json.dumps(args))
    line = f"{entry.get('tool_name', '?')}: {detail}" if detail else str(entry.get("tool_name", "?"))
    return " ".join(line.split())[:200]


def _last_result(output: str) -> dict[str, Any] | None:
    for line in reversed(output.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and obj.get("type") == "result":
            return obj
    return None


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
