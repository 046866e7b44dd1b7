"""The plan: what the clusters are, what they own, and how the run is bounded.

Two spellings (YAML and the seed's markdown) load into these models; see
``tasks.plan.load.load_plan``. The models reject unknown fields, so a typo in a plan is an
error rather than a silently ignored option.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
Slug = Annotated[str, StringConstraints(pattern=SLUG_PATTERN)]


def slugify(text: str) -> str:
    """The slug a title or file stem stands for: ``"Auth System!"`` -> ``"auth-system"``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CommandAgent(StrictModel):
    """An agent given as an argv template: ``agent: {command: [...]}``."""

    command: list[str] = Field(min_length=1, description="argv template; no shell sees it")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment")
    timeout_seconds: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0)


# A preset name (claude, codex, aider), a saved agent block's name, or an inline command.
AgentRef = str | CommandAgent


class Cluster(StrictModel):
    name: Slug
    paths: list[str] = Field(default_factory=list, description="owned folders (trailing /) or globs")
    tasks: list[str] = Field(default_factory=list)
    cohesion: str = ""
    agent: AgentRef | None = None
    verify: list[str] = Field(default_factory=list)
    kind: Literal["build", "investigation"] = "build"
    depends_on: list[str] = Field(default_factory=list)


class ContractPolicy(StrictModel):
    on_violation: Literal["retry", "fail", "warn"] = "retry"
    # A build cluster whose agent exits 0 having changed nothing: a failed attempt (retry), or
    # accepted with a warning (warn). aider, for one, exits 0 when the model API fails.
    on_empty: Literal["retry", "warn"] = "retry"
    independent: bool = False


class WorktreeOptions(StrictModel):
    checkout: Literal["full", "sparse"] = "full"
    copy_files: list[str] = Field(default_factory=list, alias="copy")
    setup: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Limits(StrictModel):
    timeout_seconds: float = Field(default=1800, gt=0)
    retries: int = Field(default=2, ge=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    concurrency: int = Field(default=4, ge=1)


REPOSITORY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$"


class PullRequestOptions(StrictModel):
    """Where ``land: pull_request`` pushes the integration branch and opens its pull request."""

    remote: str = Field(default="origin", min_length=1, description="remote name or URL to push to")
    base: str | None = Field(default=None, min_length=1, description="the pull request's base branch; "
                             "default: the plan's base, else the repo's current branch")
    draft: bool = Field(default=True, description="open it as a draft")
    repository: str = Field(pattern=REPOSITORY_PATTERN, description="owner/name on GitHub")
    labels: list[str] = Field(default_factory=list)
    credentials: str | None = Field(default=None, min_length=1, description="name of a Prefect Secret (or "
                                    "GitHubCredentials) block holding the token; default: $GITHUB_TOKEN")


class IntegrationOptions(StrictModel):
    agent: AgentRef | None = None
    verify: list[str] = Field(default_factory=list)
    # true: fast-forward the base branch; pull_request: push and open (or update) a pull request.
    land: bool | Literal["pull_request"] = False
    pull_request: PullRequestOptions | None = None
    approve: bool = Field(default=False, description="wait for a person's approval before landing")
    # On a server, how long a run suspended for a person's turn (a conflict no tier resolved) waits.
    person_timeout_seconds: float = Field(default=86_400, gt=0)


class SandboxOptions(StrictModel):
    enabled: bool = Field(default=False, description="run agents and verify/setup commands under bubblewrap")


class Plan(StrictModel):
    name: Slug
    goal: str = ""
    base: str | None = None
    contracts: list[str] = Field(default_factory=list)
    shared: list[str] = Field(default_factory=list)
    agent: AgentRef | None = None
    clusters: list[Cluster]
    provides: dict[str, str] = Field(default_factory=dict)
    contract: ContractPolicy = Field(default_factory=ContractPolicy)
    worktree: WorktreeOptions = Field(default_factory=WorktreeOptions)
    limits: Limits = Field(default_factory=Limits)
    integration: IntegrationOptions = Field(default_factory=IntegrationOptions)
    sandbox: SandboxOptions = Field(default_factory=SandboxOptions)

    @property
    def investigates(self) -> bool:
        """Whether the plan investigates (all clusters ``kind: investigation``) rather than builds;
        the rules refuse a mix (``tasks.plan.rules``)."""
        return all(c.kind == "investigation" for c in self.clusters)

    def cluster(self, name: str) -> Cluster:
        for cluster in self.clusters:
            if cluster.name == name:
                return cluster
        raise KeyError(name)

    def merge_order(self) -> list[Cluster]:
        """Clusters ordered so every cluster comes after its ``depends_on``, then plan order."""
        done: set[str] = set()
        ordered: list[Cluster] = []
        pending = list(self.clusters)
        while pending:
            ready = next(c for c in pending if all(d in done for d in c.depends_on))
            ordered.append(ready)
            done.add(ready.name)
            pending.remove(ready)
        return ordered
