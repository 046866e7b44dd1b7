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
(``.aider*``) land in the worktree; they are listed as ``scratch`` so they are not committed.
Uncertain: a model that needs an interactive login or key prompt would fail rather than ask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect_work_clusters.tasks.agents.base import AgentBackend

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
