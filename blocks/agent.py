"""The agent block: a coding agent saved once in Prefect and named wherever an agent is asked for.

A plan's ``agent: NAME``, the flow's ``agent`` parameter and ``--agent NAME`` all resolve a name
that is no preset by loading the saved :class:`AgentBlock` of that name (see
``tasks.agents.registry.resolve_agent``). Its secret environment is revealed only into the environment of
the agent's process: not into the prompt, the logs, the reports or the artifacts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from prefect.blocks.core import Block
from prefect.blocks.core import schema_extra as block_schema_extra
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings
from pydantic import ConfigDict, Field, SecretStr, ValidationError, model_validator

from prefect_work_clusters.tasks.agents.base import AgentBackend, Usage
from prefect_work_clusters.tasks.agents.command import CommandBackend
from prefect_work_clusters.tasks.agents.registry import AGENTS
from prefect_work_clusters.tasks.errors import BadInput, WorkClustersError

# tests/test_blocks.py keeps this in step with tasks.agents.preset_names().
PresetName = Literal["claude", "codex", "aider"]
# This project's documentation of agents and agent blocks (pyproject's Documentation URL).
DOCS_URL = "https://github.com/prefect-work-clusters/prefect-work-clusters#agents"
# Prefect's rule for block document names; anything else cannot be a saved block.
BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def _schema_extra(schema: dict[str, Any], model: type[Block]) -> None:
    """Block's schema, with every value under ``secret_env`` marked secret (``secret_env.*``):
    Prefect lists a ``dict[str, SecretStr]`` as ``secret_env``, which the server matches against
    the flattened data's keys and so would show the values unmasked."""
    block_schema_extra(schema, model)
    schema["secret_fields"] = [f"{name}.*" if name == "secret_env" else name for name in schema["secret_fields"]]


class AgentBlock(Block):
    """A coding agent for work clusters: a preset or an argv template, its environment and secrets,
    and the limits of one attempt. Name the saved block wherever an agent is asked for: a plan's
    `agent:`, the flow's `agent` parameter, or `work-clusters run --agent NAME`.

    Secret environment values (API keys) are masked in the UI and reach only the agent's process.

    Examples:
        Load a saved agent block (then name it in a plan, or pass `--agent BLOCK_NAME`):
        ```python
        from prefect_work_clusters.blocks import AgentBlock

        agent_block = AgentBlock.load("BLOCK_NAME")
        ```

        Save one, its API key kept secret:
        ```python
        from pydantic import SecretStr
        from prefect_work_clusters.blocks import AgentBlock

        AgentBlock(preset="claude", secret_env={"ANTHROPIC_API_KEY": SecretStr("sk-...")},
                   timeout_seconds=1800, max_cost_usd=5).save("claude-team")
        ```
    """

    _block_type_name: ClassVar[str | None] = "Work Clusters Agent"
    _block_type_slug: ClassVar[str | None] = "work-clusters-agent"
    _documentation_url: ClassVar[Any] = DOCS_URL
    model_config = ConfigDict(json_schema_extra=_schema_extra)

    preset: PresetName | None = Field(
        default=None,
        description="Start from a preset: its argv (unless you give one), its environment defaults and "
        "the reading of its output (cost, tokens, refusals, errors). Leave empty to run your own argv.",
    )
    argv: list[str] = Field(
        default_factory=list,
        title="Argv template",
        description="The agent's command line, one element per argument; no shell sees it. May hold "
        "{prompt}, {prompt_file}, {cluster}, {worktree}, {plan} and {branch}. Empty: the preset's.",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        title="Environment variables",
        description="Extra environment for the agent's process (not secret: shown in the UI).",
    )
    secret_env: dict[str, SecretStr] = Field(
        default_factory=dict,
        title="Secret environment variables",
        description="Environment for the agent's process that must stay secret, such as API keys; "
        "masked in the UI and never written to logs, prompts, reports or artifacts.",
    )
    timeout_seconds: float | None = Field(
        default=None, gt=0,
        description="Seconds one attempt may run before its process group is killed; empty: the plan's.",
    )
    retries: int | None = Field(
        default=None, ge=0, description="Further attempts after a failed one; empty: the plan's.",
    )
    max_cost_usd: float | None = Field(
        default=None, gt=0, title="Cost limit (USD)",
        description="Stop a cluster whose attempts cost more than this (where the agent reports "
        "cost); the lower of this and the plan's limit applies.",
    )

    @model_validator(mode="after")
    def _runs_something(self) -> AgentBlock:
        if self.preset is None and not self.argv:
            raise ValueError("give a preset or an argv template")
        return self

    def backend(self, name: str = "") -> SavedAgent:
        """The backend the flow runs: the preset's (if any) with this block's settings on top.

        ``name`` is the saved block's name, shown where the agent is described.
        """
        base: AgentBackend = AGENTS[self.preset]() if self.preset else CommandBackend(argv=list(self.argv))
        secrets = {key: value.get_secret_value() for key, value in self.secret_env.items()}
        return SavedAgent(
            name=base.name, block=name, argv=list(self.argv or base.argv),
            env={**base.env, **self.env, **secrets}, secret_keys=frozenset(secrets),
            timeout_seconds=self.timeout_seconds, retries=self.retries, scratch=base.scratch,
            add_dir_after=base.add_dir_after, env_defaults=dict(base.env_defaults),
            max_cost_usd=self.max_cost_usd, usage_parser=base,
        )


@dataclass(frozen=True, kw_only=True, repr=False)
class SavedAgent(AgentBackend):
    """An agent loaded from a block. ``env`` holds the revealed secrets for the agent's process;
    ``repr`` masks them, so a traceback or a debug line cannot show one."""

    block: str = ""
    secret_keys: frozenset[str] = frozenset()
    max_cost_usd: float | None = None
    usage_parser: AgentBackend | None = field(default=None, compare=False)

    def parse_usage(self, output: str) -> Usage | None:
        return self.usage_parser.parse_usage(output) if self.usage_parser else None

    def __repr__(self) -> str:
        env = {k: ("**********" if k in self.secret_keys else v) for k, v in self.env.items()}
        return (f"SavedAgent(name={self.name!r}, block={self.block!r}, argv={self.argv!r}, env={env!r}, "
                f"timeout_seconds={self.timeout_seconds!r}, retries={self.retries!r}, "
                f"max_cost_usd={self.max_cost_usd!r})")


def _nothing_saved() -> bool:
    """No server is configured and the local database of Prefect's temporary server does not
    exist: no block can have been saved, and looking would start that server (seconds) for nothing."""
    settings = get_current_settings()
    url = settings.server.database.connection_url
    if settings.api.url or url is None:
        return False
    path = url.get_secret_value().partition(":///")[2]
    return url.get_secret_value().startswith("sqlite") and not Path(path).exists()


def load_agent(name: str) -> SavedAgent | None:
    """The saved agent block ``name`` as a backend, or None when no block of that name is saved.

    >>> load_agent("Not A Block Name") is None  # no lookup: no block can have this name
    True
    """
    if not BLOCK_NAME.fullmatch(name) or _nothing_saved():
        return None
    try:
        block = AgentBlock.load(name, _sync=True)  # type: ignore[call-arg]
    except Exception as exc:  # noqa: BLE001 - sorted below; the lookup is for a user's input
        invalid = exc if isinstance(exc, ValidationError) else exc.__cause__
        if isinstance(invalid, ValidationError):
            # Neither the error's text nor the error as a cause: it quotes the input, secrets and all.
            fields = ", ".join(".".join(str(p) for p in e["loc"]) or "(block)" for e in invalid.errors())
            raise BadInput(f"saved agent block {name!r} no longer validates ({fields}); "
                           "open it in the Prefect UI and save it again") from None
        if isinstance(exc, ValueError) and isinstance(exc.__cause__, ObjectNotFound):
            return None
        raise WorkClustersError(f"agent {name!r} is no preset, and looking it up as a saved agent block "
                                f"failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(block, AgentBlock):
        return None
    return block.backend(name)
