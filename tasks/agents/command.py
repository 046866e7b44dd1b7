"""Any program the user names: ``--agent-cmd "prog args"`` or ``agent: {command: [...]}``.

The argv is used as given, with the placeholders of :func:`tasks.agents.base.render_argv`
filled in; no shell ever sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect_work_clusters.tasks.agents.base import AgentBackend
from prefect_work_clusters.tasks.errors import BadInput

NAME = "command"


@dataclass(frozen=True, kw_only=True)
class CommandBackend(AgentBackend):
    name: str = NAME
    argv: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.argv or not self.argv[0]:
            raise BadInput(
                "the command agent needs a program to run: pass --agent-cmd 'PROGRAM ARGS' or set "
                "`agent: {command: [PROGRAM, ARGS...]}` in the plan"
            )
