"""Aider with a message file: one request, edits applied, no questions asked.

Flags, from Aider-AI/aider ``aider/website/docs/config/options.md`` (https://aider.chat/docs/config/options.html)
and https://aider.chat/docs/scripting.html, checked against ``aider/main.py`` (v0.86.3.dev):

- ``--message-file {prompt_file}``: "Specify a file containing the message to send the LLM,
  process reply, then exit (disables chat mode)". No argument-length limit, no shell.
- ``--yes-always``: "Always say yes to every confirmation". Because of it, every confirmation
  aider would ask must be switched off where "yes" does harm:
- ``--no-check-update``: otherwise a newer release on PyPI is *installed* (yes) and aider exits.
- ``--no-show-release-notes``: otherwise the first run of a new version offers to open a browser.
- ``--no-analytics``: otherwise the first run asks to opt in to analytics (yes).
- ``--no-gitignore``: otherwise ``.aider*`` is appended to the repo's ``.gitignore``, a file the
  cluster does not own.
- ``--no-detect-urls``: otherwise URLs in the prompt are scraped (and playwright offered).
- ``--no-show-model-warnings``: otherwise a model without metadata offers to open its docs page.
- ``--no-suggest-shell-commands``: shell commands need an explicit yes, which --yes-always
  does not give; not suggesting them saves a turn.
- ``--no-pretty``, ``--no-fancy-input``: plain output for the log, no terminal features.

Aider commits its own edits (auto-commits stay on). Its chat/input history and tag cache files
(``.aider*``, and the ``.aider.tags.cache.v4/`` folder) land in the worktree; they are listed as
``scratch`` so they are not committed.

Measured with aider 0.86: it exits 0 when the model API fails (a bad key, a 500), so an attempt
that changed nothing is failed by ``contract.on_empty`` and the error it printed (e.g.
``litellm.AuthenticationError: ...``, wrapped over lines) is kept.
It prints ``Tokens: 1.2k sent, 80 received. Cost: $0.0031 message, $0.0031 session.`` after
each answer (cost only for a model it knows the price of); the last such line is parsed.
Uncertain: a model that needs an interactive login or key prompt would fail rather than ask.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from prefect_work_clusters.tasks.agents.base import AgentBackend, Usage

_TOKENS = re.compile(r"^Tokens: ([\d.]+)([kM]?) sent(?:, [^,.]*? cache \w+)*, ([\d.]+)([kM]?) received\."
                     r"(?: Cost: \$([\d.]+) message, \$([\d.]+) session\.)?", re.MULTILINE)
# aider wraps its lines even without a terminal: an error runs on until the next blank line.
_ERROR = re.compile(r"^((?:litellm\.)?\w*(?:Error|Exception):.*(?:\n.+)*)", re.MULTILINE)
_SCALE = {"": 1, "k": 1_000, "M": 1_000_000}


def _count(number: str, suffix: str) -> int:
    return round(float(number) * _SCALE[suffix])

ARGV = [
    "aider",
    "--message-file",
    "{prompt_file}",
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


@dataclass(frozen=True, kw_only=True)
class AiderBackend(AgentBackend):
    name: str = "aider"
    argv: list[str] = field(default_factory=lambda: list(ARGV))
    scratch: tuple[str, ...] = (".aider*",)

    def parse_usage(self, output: str) -> Usage | None:
        """Tokens and the session's cost from aider's last ``Tokens:`` line; its last error line.

        >>> u = AiderBackend().parse_usage("Tokens: 1.2k sent, 80 received. Cost: $0.01 message, $0.02 session.")
        >>> (u.input_tokens, u.output_tokens, u.cost_usd)
        (1200, 80, 0.02)
        """
        lines = _TOKENS.findall(output)
        errors = _ERROR.findall(output)
        if not lines and not errors:
            return None
        sent, sent_scale, received, received_scale, _, session = lines[-1] if lines else ("0", "", "0", "", "", "")
        return Usage(cost_usd=float(session) if session else None,
                     input_tokens=_count(sent, sent_scale) if lines else None,
                     output_tokens=_count(received, received_scale) if lines else None,
                     error=" ".join(errors[-1].split())[:500] if errors else None)
