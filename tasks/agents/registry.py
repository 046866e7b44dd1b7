"""Agent backends: one module each, one registry.

Adding a backend: write ``tasks/agents/<name>.py`` with a subclass of :class:`AgentBackend`,
add one line to ``AGENTS``, and one test.

>>> resolve_agent("claude").argv[:2]
['claude', '-p']
>>> resolve_agent(None, cli_argv=["my-agent", "{prompt_file}"]).name
'command'
"""

from __future__ import annotations

from typing import Protocol

from prefect_work_clusters.tasks.agents.aider import AiderBackend
from prefect_work_clusters.tasks.agents.base import PLACEHOLDERS, AgentBackend, Usage, render_argv
from prefect_work_clusters.tasks.agents.claude import ClaudeBackend
from prefect_work_clusters.tasks.agents.codex import CodexBackend
from prefect_work_clusters.tasks.agents.command import NAME as COMMAND
from prefect_work_clusters.tasks.agents.command import CommandBackend
from prefect_work_clusters.tasks.errors import BadInput
from prefect_work_clusters.tasks.plan.models import AgentRef, CommandAgent

__all__ = [
    "AGENTS",
    "PLACEHOLDERS",
    "AgentBackend",
    "NoAgent",
    "UnknownAgent",
    "Usage",
    "preset_names",
    "render_argv",
    "resolve_agent",
]


class AgentFactory(Protocol):
    def __call__(
        self,
        *,
        argv: list[str] = ...,
        env: dict[str, str] = ...,
        timeout_seconds: float | None = ...,
        retries: int | None = ...,
    ) -> AgentBackend: ...


AGENTS: dict[str, AgentFactory] = {
    "claude": ClaudeBackend,
    "codex": CodexBackend,
    "aider": AiderBackend,
    COMMAND: CommandBackend,
}


class UnknownAgent(BadInput):
    """An agent name that is neither a preset nor a saved agent block."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"unknown agent {name!r}; use one of {', '.join(preset_names())}, the name of a saved "
            "agent block, or give a command with --agent-cmd or `agent: {command: [...]}`"
        )


class NoAgent(BadInput):
    """Neither the plan nor the command line names an agent."""

    def __init__(self) -> None:
        super().__init__("no agent: set `agent:` in the plan or pass --agent / --agent-cmd")


def preset_names() -> list[str]:
    """The names usable on their own as ``agent:`` or ``--agent`` (``command`` needs an argv)."""
    return [name for name in AGENTS if name != COMMAND]


def resolve_agent(ref: AgentRef | None, *, cli_argv: list[str] | None = None) -> AgentBackend:
    """The backend to run: ``cli_argv`` (from --agent-cmd) wins, then the plan's reference.

    A :class:`CommandAgent` keeps its env, timeout and retries; a name gives that preset.
    """
    if cli_argv is not None:
        return CommandBackend(argv=list(cli_argv))
    if isinstance(ref, CommandAgent):
        return CommandBackend(
            argv=list(ref.command),
            env=dict(ref.env),
            timeout_seconds=ref.timeout_seconds,
            retries=ref.retries,
        )
    if ref is None:
        raise NoAgent()
    factory = AGENTS.get(ref)
    if factory is None:
        # The one place where a name that is no preset is looked up: a saved agent block.
        from prefect_work_clusters.blocks.agent import load_agent

        saved = load_agent(ref)
        if saved is None:
            raise UnknownAgent(ref)
        return saved
    return factory()
