"""What the integration records: each merge, each conflicted file and the tiers tried on it, the
integration agent's calls, the decisions per conflict hunk, verification rounds and the change
accounting.

Plain pydantic data: it goes into ``report.json`` as it is, and the merge report is drawn from it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from prefect_work_clusters.tasks.context import CommandResult
from prefect_work_clusters.tasks.failures import last_lines
from prefect_work_clusters.tasks.integration.accounting import Accounting
from prefect_work_clusters.tasks.integration.decisions import AgentDecision
from prefect_work_clusters.tasks.integration.preflight import Preflight

MergeStatus = Literal["merged", "conflict", "skipped", "not-reached"]
Tier = Literal["git", "additive", "mergiraf", "agent", "person"]
Outcome = Literal["resolved", "unresolved", "rejected", "not-applicable", "failed", "unavailable"]
TIERS: tuple[Tier, ...] = ("git", "additive", "mergiraf", "agent", "person")


class TierAttempt(BaseModel):
    """One resolver tried on one file."""

    tier: Tier
    outcome: Outcome
    detail: str = ""


class HunkInfo(BaseModel):
    """One conflict hunk as git left it (diff3 style), trimmed for the report."""

    index: int
    line: int
    ours: str
    base: str
    theirs: str


class ConflictFile(BaseModel):
    path: str
    theirs: str = Field(description="the cluster being merged")
    ours: list[str] = Field(default_factory=list, description="clusters merged before it that changed the file")
    kinds: list[str] = Field(default_factory=list, description="conflict kinds git reported (contents, add/add...)")
    hunks: list[HunkInfo] = Field(default_factory=list)
    attempts: list[TierAttempt] = Field(default_factory=list)
    resolved_by: Tier | None = None


class MergeStep(BaseModel):
    cluster: str
    branch: str
    status: MergeStatus
    reason: str = ""
    commit: str | None = None
    conflicts: list[str] = Field(default_factory=list, description="every path that conflicted")
    files: list[ConflictFile] = Field(default_factory=list)
    diffstat: str = ""
    checked: str | None = Field(default=None, description="the commit the contract check passed, the one merged")
    moved: str = Field(default="", description="where the branch went after the check (not merged); empty if not")

    @property
    def remaining(self) -> list[str]:
        return [f.path for f in self.files if f.resolved_by is None]


class AgentCall(BaseModel):
    """One run of the integration agent."""

    purpose: Literal["conflict", "verification"]
    label: str
    attempt: int
    exit_code: int | None = None
    timed_out: bool = False
    duration: float = 0.0
    failure: str | None = None
    prompt_file: str = ""
    decisions_file: str = ""
    output_tail: str = ""
    cost_usd: float | None = None
    total_tokens: int | None = None
    denials: list[str] = Field(default_factory=list, description="tool calls the agent's permissions refused")
    decisions: list[AgentDecision] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failure is None


class Decision(BaseModel):
    """How one conflict hunk was resolved, and the evidence that the result works."""

    file: str
    hunk: int | None
    ours: list[str]
    theirs: str
    tier: Tier
    reason: str
    verification: str = "not run"


class VerifyRound(BaseModel):
    round: int
    after: str
    head: str
    results: list[CommandResult]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


class IntegrationResult(BaseModel):
    branch: str
    worktree: str
    base_sha: str
    steps: list[MergeStep]
    verify: list[CommandResult] = Field(default_factory=list)
    final_sha: str | None = None
    instructions: str = ""
    merge_seconds: float = 0.0
    checkout_seconds: float = Field(default=0.0, description="of the merges, bringing the worktree's files up to them")
    verify_seconds: float = 0.0
    accounting_seconds: float = 0.0
    preflight: Preflight | None = None
    agent_calls: list[AgentCall] = Field(default_factory=list)
    verify_rounds: list[VerifyRound] = Field(default_factory=list)
    decisions: list[Decision] = Field(default_factory=list)
    accounting: Accounting | None = None

    @property
    def all_merged(self) -> bool:
        return all(s.status == "merged" for s in self.steps)

    @property
    def verified(self) -> bool:
        return all(v.ok for v in self.verify)

    @property
    def partial(self) -> str:
        """Why the merged tree is partial (clusters missing), or "" when every cluster merged."""
        missing = [s.cluster for s in self.steps if s.status != "merged"]
        if not missing or self.instructions:
            return ""
        return (f"partial integration: {', '.join(missing)} not merged. The others were merged for inspection and "
                "verified, but the integration agent was not asked to fix a partial tree (it would be paid to "
                "write the missing clusters' code); run the plan again to resume once they succeed")

    @property
    def moved(self) -> list[str]:
        """One line per branch that moved after the contract check: its move was not merged."""
        return [f"{s.branch} moved after the contract check, to {s.moved}; merged {s.checked[:12]}, the commit "
                f"that was checked, not the move" for s in self.steps if s.moved and s.checked]

    @property
    def accounted(self) -> bool:
        """Every change of every merged cluster accounted for, or explained by a decision."""
        return self.accounting is None or self.accounting.ok

    @property
    def ok(self) -> bool:
        return self.all_merged and self.verified and self.accounted and self.final_sha is not None

    @property
    def failure(self) -> str | None:
        """Why the integration is not done, in one line (None when it is): the conflict, the failed
        verify command with its last output, the unaccounted changes, the clusters not merged."""
        stopped = next((s for s in self.steps if s.status not in ("merged", "skipped", "not-reached")), None)
        missing = [s.cluster for s in self.steps if s.status != "merged"]
        bad = next((v for v in self.verify if not v.ok), None)
        if self.instructions:
            return f"the merge of {stopped.cluster if stopped else 'a cluster'} stopped on a conflict left for a person"
        if bad is not None:
            printed = last_lines(bad.output_tail)
            return (f"integration verification failed: `{bad.command}` exited {bad.exit_code}"
                    + (f" on a partial tree ({', '.join(missing)} not merged)" if missing else "")
                    + (f"; {printed}" if printed else ""))
        if not self.accounted and self.accounting:
            return f"changes not accounted for: {self.accounting.summary()}"
        if missing:
            return f"not merged: {', '.join(missing)}"
        return None if self.ok else "the integration did not finish"
