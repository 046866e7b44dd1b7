"""The options of a run: one model for the flow, the CLI, ``resolve_run`` and the identify task.

Each caller keeps its own surface (the flow's typed parameters draw the UI's form, the CLI's
flags draw ``--help``) and hands what it got to :meth:`RunOptions.pick`; everything past that
point sees this model only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

# Parameter types shared by the flows' signatures: the deployment's form in the UI is drawn from
# them, and the server refuses a run whose parameters break them (HTTP 409) before a worker starts.
PlanPath = Annotated[str, Field(min_length=1, pattern=r"\.(ya?ml|md)$", examples=["plans/auth-system.md"])]
# Optional fields of the run form: typed with an empty default rather than ``X | None``, which the
# UI draws behind a type toggle the user must click before typing. Empty (or 0) means "not given".
OptionalPlan = Annotated[str, Field(pattern=r"^$|\.(ya?ml|md)$", examples=["plans/auth-system.md"])]
Text = Annotated[str, Field(examples=[""])]
Count = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]
NonEmpty = Annotated[str, Field(min_length=1)]
AgentName = Annotated[str, Field(min_length=1, examples=["claude"])]
Goal = Annotated[str, Field(max_length=500, examples=["Add single sign-on"])]  # empty: not given
Concurrency = Annotated[int, Field(ge=1)]
Timeout = Annotated[float, Field(gt=0)]
Retries = Annotated[int, Field(ge=0)]


class RunOptions(BaseModel):
    """How to run a plan, beyond the plan itself; None leaves the plan's own setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: AgentName | None = Field(default=None, description="Agent for every role the plan does not set otherwise.")
    agent_cmd: NonEmpty | None = Field(default=None, description="Agent command line instead of a preset.")
    integration_agent: AgentName | None = Field(default=None, description="Agent for the integration role.")
    integration_agent_cmd: NonEmpty | None = Field(default=None, description="Integration agent command line.")
    base: NonEmpty | None = Field(default=None, description="Ref the clusters start from.")
    workspace: NonEmpty | None = Field(default=None, description="Where worktrees and run records go.")
    concurrency: Concurrency | None = Field(default=None, description="Agents running at once.")
    timeout: Timeout | None = Field(default=None, description="Seconds an agent attempt may run.")
    retries: Retries | None = Field(default=None, description="Further attempts after a failed one.")
    land: bool = Field(default=False, description="Fast-forward the base branch when all is green.")
    rerun: bool = Field(default=False, description="Run finished clusters' agents again.")
    keep_worktrees: bool = Field(default=True, description="Keep cluster worktrees after the run.")
    sandbox: bool = Field(default=False, description="Run agents and verify/setup commands under bubblewrap.")
    dispatch: NonEmpty | None = Field(default=None, description="Run each cluster as a flow run of this deployment.")
    credentials: NonEmpty | None = Field(default=None, description="Secret block holding the git remote's token.")
    approve: bool = Field(default=False, description="Wait for a person's approval before landing.")

    @classmethod
    def pick(cls, values: Mapping[str, Any]) -> RunOptions:
        """The options among ``values`` (a caller's ``locals()``); other names are ignored.

        >>> RunOptions.pick({"plan": "p.yaml", "agent": "claude", "land": True}).agent
        'claude'
        """
        # "" and 0 are the run form's "not given" (see OptionalPlan); retries keeps 0 as a value.
        unset = {k for k, v in values.items() if (v == "" or (v == 0 and k in ("concurrency", "timeout")))
                 and v is not False}
        return cls.model_validate({k: v for k, v in values.items() if k in cls.model_fields and k not in unset})

    def flow_parameters(self) -> dict[str, Any]:
        """The options a flow call needs: the ones that differ from their defaults."""
        return self.model_dump(exclude_defaults=True)
