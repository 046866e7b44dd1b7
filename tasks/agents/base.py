"""What every agent backend is: an argv template, extra environment, limits, and a usage parser.

A backend module subclasses :class:`AgentBackend`, giving its ``name`` and ``argv`` defaults and,
when the tool reports cost or tokens, a ``parse_usage``. The registry in ``tasks.agents`` maps
names to these classes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLACEHOLDERS = ("prompt", "prompt_file", "cluster", "worktree", "plan", "branch")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def render_argv(template: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """Substitute the known placeholders inside each argv element; nothing else is touched.

    Every other brace (JSON in an argument, ``{0}``) stays as it is, and a value is never
    scanned again, so a prompt that mentions ``{cluster}`` arrives unchanged. No shell ever
    sees the result.

    >>> render_argv(["tool", "--name={cluster}", '{"keep": 1}'], {"cluster": "api"})
    ['tool', '--name=api', '{"keep": 1}']
    """
    unknown = sorted(set(values) - set(PLACEHOLDERS))
    if unknown:
        raise ValueError(f"unknown placeholder value(s) {unknown}; known: {list(PLACEHOLDERS)}")

    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise ValueError(f"the agent's argv uses {{{key}}} but no value for it was given")
        return values[key]

    return [_PLACEHOLDER.sub(substitute, element) for element in template]


@dataclass(frozen=True)
class Usage:
    """What an agent run cost and what it was refused, as far as the tool reports it.

    ``denials`` are the tool calls the agent's own permission rules refused (Claude Code's
    ``permission_denials``), one short line each: the report shows them, because a refused write
    often explains an attempt that "did nothing".
    """

    cost_usd: float | None
    input_tokens: int | None
    output_tokens: int | None
    is_error: bool = False
    raw: dict[str, Any] | None = None
    total_tokens: int | None = None
    denials: tuple[str, ...] = ()
    error: str | None = None  # the tool's own words when it reports a failed run (a bad key)


@dataclass(frozen=True, kw_only=True)
class AgentBackend:
    """An agent: the argv template to run in a worktree, and what to add around it.

    ``timeout_seconds`` and ``retries`` of None mean "use the run's defaults". ``scratch`` lists
    gitignore-style patterns of files the tool writes into the worktree for itself (history,
    caches); they are not the agent's work and must not be committed. ``env_defaults`` are set
    only where the environment does not already set them (update checks and telemetry off, the
    tool's own retries capped): the user's own setting wins.
    """

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None
    retries: int | None = None
    scratch: tuple[str, ...] = ()
    env_defaults: dict[str, str] = field(default_factory=dict)
    add_dir_after: tuple[str, ...] = ()

    def render(self, values: Mapping[str, str], writable: Sequence[Path] = ()) -> list[str]:
        """This backend's argv with the placeholders filled in, and ``--add-dir DIR`` for each of
        the ``writable`` folders outside the worktree when the tool takes it.

        ``add_dir_after`` is the argv prefix the option follows (``claude``; ``codex exec``): right
        after the program, never just before the prompt, because Claude Code's ``--add-dir``
        takes several values and would swallow a prompt that followed it. An argv that does not
        start with that prefix (a user's own) is left as it is.
        """
        argv = render_argv(self.argv, values)
        cut = len(self.add_dir_after)
        if not cut or argv[:cut] != list(self.add_dir_after):
            return argv
        extra = [arg for folder in dict.fromkeys(str(w) for w in writable) for arg in ("--add-dir", folder)]
        return [*argv[:cut], *extra, *argv[cut:]]

    def scratch_globs(self) -> list[str]:
        """``scratch`` as exclude globs anywhere in the tree, files and folders alike: in a
        ``:(glob)`` pathspec ``*`` stops at ``/``, so ``**/.aider*`` alone misses
        ``.aider.tags.cache.v4/cache.db``."""
        return [glob for p in self.scratch for glob in (f"**/{p}", f"**/{p}/**")]

    def parse_usage(self, output: str) -> Usage | None:
        """Cost and tokens from the run's output, or None when the tool does not report them."""
        return None
