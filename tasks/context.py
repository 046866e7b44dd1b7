"""What one run knows: the resolved plan, the places it works in, and the records it keeps.

Everything here is plain data passed between Prefect tasks (paths and SHAs, never a ``Repo``
or a lock, which the default cache policy could not hash). Durable state lives on disk in
``<workspace>/.runs/`` so that a killed run can be resumed and reported on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.plan.models import Plan

ClusterStatus = Literal["pending", "succeeded", "failed", "timed_out", "cost_exceeded", "interrupted"]


class RunContext(BaseModel):
    """The inputs of one run, resolved: the plan with overrides applied and absolute paths."""

    model_config = ConfigDict(frozen=True)

    plan: Plan
    plan_file: Path
    repo: Path
    workspace: Path
    rerun: bool = False
    land: bool = False
    approve: bool = False
    keep_worktrees: bool = True
    remote: str | None = Field(default=None, description="the git remote the run clones and pushes to, if any")
    credentials: str | None = Field(default=None, description="the Secret block holding the remote's token")
    dispatch: str | None = Field(default=None, description="the deployment each cluster runs as a flow run of")
    options: RunOptions = Field(default_factory=RunOptions, description="as the caller gave them (for dispatch)")

    @property
    def prefix(self) -> str:
        return f"clusters/{self.plan.name}"

    @property
    def base_branch(self) -> str:
        return f"{self.prefix}/base"

    @property
    def integration_branch(self) -> str:
        return f"{self.prefix}/integration"

    def branch(self, cluster: str) -> str:
        return f"{self.prefix}/{cluster}"

    def worktree(self, cluster: str) -> Path:
        return self.workspace / cluster

    @property
    def integration_worktree(self) -> Path:
        return self.workspace / "integration"

    @property
    def runs_dir(self) -> Path:
        return self.workspace / ".runs"

    def log_file(self, name: str) -> Path:
        return self.runs_dir / "logs" / f"{name}.log"

    def prompt_file(self, name: str, attempt: int) -> Path:
        return self.runs_dir / "prompts" / f"{name}-{attempt}.md"

    def state_file(self, cluster: str) -> Path:
        return self.runs_dir / "clusters" / f"{cluster}.json"


def default_workspace(repo: Path, plan_name: str) -> Path:
    """``<parent of repo>/<repo name>.clusters/<plan>`` (SPEC 3)."""
    return repo.parent / f"{repo.name}.clusters" / plan_name


class CommandResult(BaseModel):
    command: str
    exit_code: int | None
    timed_out: bool = False
    duration: float = 0.0
    output_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class Attempt(BaseModel):
    attempt: int
    exit_code: int | None = None
    timed_out: bool = False
    duration: float = 0.0
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = Field(default=None, description="where the agent prints only a total (Codex)")
    denials: list[str] = Field(default_factory=list, description="tool calls the agent's permissions refused")
    warning: str | None = Field(default=None, description="accepted, but worth a look (contract.on_empty: warn)")
    failure: str | None = Field(default=None, description="why this attempt failed, for the next prompt")
    output_tail: str = ""
    verify: list[CommandResult] = Field(default_factory=list)
    leftovers: list[str] = Field(default_factory=list, description="processes the agent left running, killed")
    refused_writes: list[str] = Field(default_factory=list, description="writes the sandbox refused, as reported")
    tampering: list[str] = Field(default_factory=list, description="shared git dir changes blamed on it (restored)")


class ClusterRecord(BaseModel):
    """One cluster's durable record, rewritten after every attempt."""

    cluster: str
    branch: str
    worktree: Path
    base_sha: str
    status: ClusterStatus = "pending"
    resumed: bool = False
    setup_done: bool = False
    head_sha: str | None = None
    attempts: list[Attempt] = Field(default_factory=list)
    error: str | None = None

    @property
    def duration(self) -> float:
        return sum(a.duration for a in self.attempts)

    @property
    def cost_usd(self) -> float | None:
        costs = [a.cost_usd for a in self.attempts if a.cost_usd is not None]
        return sum(costs) if costs else None

    @property
    def exit_code(self) -> int | None:
        return self.attempts[-1].exit_code if self.attempts else None

    @property
    def verify(self) -> list[CommandResult]:
        return self.attempts[-1].verify if self.attempts else []


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON so that a reader (or a crash) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def save_record(ctx: RunContext, record: ClusterRecord) -> None:
    write_json_atomic(ctx.state_file(record.cluster), record.model_dump(mode="json"))


def load_record(ctx: RunContext, cluster: str) -> ClusterRecord | None:
    path = ctx.state_file(cluster)
    if not path.exists():
        return None
    return ClusterRecord.model_validate_json(path.read_text())
