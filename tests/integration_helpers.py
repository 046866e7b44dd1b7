"""Integration tests without Prefect: a real repo, real cluster branches, ``integrate_branches``.

Cluster branches are made by committing straight into each cluster's worktree, the way an agent
would leave them; the integration agent, where a test needs one, is a real script.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from prefect_work_clusters.tasks.checks.rows import ClusterCheck
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.integration.integrate import integrate_branches
from prefect_work_clusters.tasks.integration.models import IntegrationResult
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.resolve import resolve_run
from prefect_work_clusters.tasks.worktrees import prepare
from tests.conftest import git, make_repo

FILES = {
    "README.md": "# shop\n",
    "app/registry.py": "REGISTRY = [\n    'core',\n]\n",
    "app/config.py": "PROFILE = 'dev'\nTIMEOUT = 30\n",
    "api/__init__.py": "",
    "ui/__init__.py": "",
    "db/__init__.py": "",
}


def plan_text(verify: list[str] | None = None, retries: int = 0, agent: str | None = None) -> str:
    checks = "\n".join(f"    - {json.dumps(v)}" for v in (verify or []))  # JSON strings are YAML
    return f"""name: shop
goal: Build the shop
shared: [app/registry.py, app/config.py]
{f'agent: {agent}' if agent else ''}
clusters:
  - name: api
    paths: [api/]
  - name: ui
    paths: [ui/]
  - name: db
    paths: [db/]
integration:
  verify:
{checks or '    []'}
limits: {{timeout_seconds: 60, retries: {retries}, concurrency: 3}}
"""


def setup(root: Path, *, verify: list[str] | None = None, retries: int = 0,
          integration_agent_cmd: str | None = None, extra: dict[str, str] | None = None,
          config: dict[str, str] | None = None) -> tuple[RunContext, str]:
    """The repo (``FILES`` and ``extra``, its git ``config`` set), the plan, the base branch and a
    worktree per cluster; (context, base SHA)."""
    repo = make_repo(root, {**FILES, **(extra or {})})
    for key, value in (config or {}).items():
        git(repo, "config", key, value)
    plan = root / "shop.yaml"
    plan.write_text(plan_text(verify, retries))
    ctx = resolve_run(plan, repo, RunOptions(integration_agent_cmd=integration_agent_cmd), agents_needed=False)
    return ctx, prepare(ctx).base_sha


def commit_cluster(ctx: RunContext, cluster: str, files: dict[str, str]) -> None:
    wt = ctx.worktree(cluster)
    for rel, text in files.items():
        (wt / rel).parent.mkdir(parents=True, exist_ok=True)
        (wt / rel).write_text(text)
    git(wt, "add", "-A")
    git(wt, "commit", "-q", "-m", f"{cluster}: work")


def add_to_registry(ctx: RunContext, cluster: str) -> None:
    """The cluster registers itself in the shared registry, as every cluster does."""
    commit_cluster(ctx, cluster, {"app/registry.py": f"REGISTRY = [\n    'core',\n    '{cluster}',\n]\n",
                                  f"{cluster}/impl.py": f"NAME = {cluster!r}\n"})


def checks(ctx: RunContext, base: str) -> list[ClusterCheck]:
    return [ClusterCheck(cluster=c.name, status="ok", mergeable=True,
                         files_changed=githistory.changed_files(ctx.repo, base, ctx.branch(c.name)),
                         head_sha=gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.branch(c.name)}"))
            for c in ctx.plan.clusters]


def integrate(ctx: RunContext, base: str) -> IntegrationResult:
    return integrate_branches(ctx, base, checks(ctx, base))


def with_integration_agent(ctx: RunContext, argv: str | None) -> RunContext:
    """The same run with another integration agent (``--integration-agent-cmd``), or none."""
    options = RunOptions(integration_agent_cmd=argv)
    agent = resolve_run(ctx.plan_file, ctx.repo, options, agents_needed=False).plan.integration.agent
    return ctx.model_copy(update={"plan": ctx.plan.model_copy(
        update={"integration": ctx.plan.integration.model_copy(update={"agent": agent})})})


def py(code: str) -> str:
    """A verify command running Python code (no shell: split as a shell would, then run)."""
    return f"{sys.executable} -c \"{code}\""
