"""A run resolved from what the caller gave: the plan loaded and validated, the caller's overrides
applied, the places fixed, the agents found; or a goal planned. Nothing here imports Prefect: the
CLI checks its input with it before Prefect is loaded (the identify-clusters task is ``tasks.identify``)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from pathlib import Path

from prefect_work_clusters.tasks import remote
from prefect_work_clusters.tasks.agents.registry import resolve_agent
from prefect_work_clusters.tasks.context import RunContext, default_workspace
from prefect_work_clusters.tasks.errors import BadInput, WorkClustersError
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import remote as gitremote
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.plan.load import load_plan
from prefect_work_clusters.tasks.plan.models import AgentRef, CommandAgent, Plan
from prefect_work_clusters.tasks.plan.rules import sandbox_problem
from prefect_work_clusters.tasks.proc.runner import find_executable


def agent_ref(name: str | None, cmd: str | None, flag: str) -> AgentRef | None:
    """An agent named on the command line: ``cmd`` (split as a shell would) wins over ``name``."""
    if cmd:
        try:
            argv = shlex.split(cmd)
        except ValueError as exc:
            raise BadInput(f"{flag}-cmd: cannot split {cmd!r} ({exc}); quote it as a shell would") from exc
        if not argv:
            raise BadInput(f"{flag}-cmd is empty; give the agent's command line, "
                           "e.g. --agent-cmd 'my-agent {prompt_file}'")
        return CommandAgent(command=argv)
    return name


def apply_overrides(plan: Plan, *, agent: AgentRef | None = None, integration_agent: AgentRef | None = None,
                    concurrency: int | None = None, timeout: float | None = None,
                    retries: int | None = None) -> Plan:
    """The plan as the caller asked to run it. A command-line agent replaces the plan's default
    agent; clusters and the integration keep an agent the plan set for them explicitly."""
    update: dict[str, object] = {}
    if agent is not None:
        update["agent"] = agent
    if integration_agent is not None:
        update["integration"] = plan.integration.model_copy(update={"agent": integration_agent})
    limits: dict[str, object] = {}
    for key, value in (("concurrency", concurrency), ("timeout_seconds", timeout), ("retries", retries)):
        if value is not None:
            limits[key] = value
    if limits:
        update["limits"] = plan.limits.model_validate({**plan.limits.model_dump(), **limits})
    return plan.model_copy(update=update) if update else plan


def check_agents(plan: Plan) -> None:
    """Every cluster's agent must resolve and its executable exist before anything is created."""
    for cluster in plan.clusters:
        backend = resolve_agent(cluster.agent if cluster.agent is not None else plan.agent)
        exe = backend.argv[0]
        if "/" in exe and not exe.startswith("/"):
            continue  # relative to the worktree; checked when the agent starts
        try:
            find_executable(exe, os.environ, hint="install it, or pass --agent / --agent-cmd")
        except WorkClustersError as exc:
            raise BadInput(f"cluster {cluster.name}: {exc}") from exc
    if plan.integration.agent is not None:
        resolve_agent(plan.integration.agent)


def _check_writable(workspace: Path) -> None:
    """The workspace must be creatable: its nearest existing ancestor a writable folder."""
    existing = workspace
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise BadInput(f"workspace {workspace} cannot be created: {existing} is not a folder; "
                       "pass --workspace with a writable folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadInput(f"workspace {workspace} cannot be created: {existing} is not writable; "
                       "pass --workspace with a writable folder")


def resolve_run(plan: str | Path, repo: str | Path, options: RunOptions | None = None, *,
                relative_to: Path | None = None, agents_needed: bool = True) -> RunContext:
    """Everything a run needs, validated; raises BadInput (nothing created) when input is wrong.

    ``relative_to`` is where a relative plan path is taken from: the current directory on the
    command line, the repo for a flow parameter (SPEC 5).
    """
    repo_path = Path(repo).expanduser().resolve()
    if not gitops.is_git_repo(repo_path):
        raise BadInput(f"{repo_path} is not a git repository; pass --repo with the repository to work on")
    repo_path = gitops.toplevel(repo_path)
    plan_path = Path(plan).expanduser()
    if not plan_path.is_absolute():
        plan_path = (relative_to or repo_path) / plan_path
    opts = options or RunOptions()
    loaded = load_plan(plan_path.resolve(), repo_path, base=opts.base)
    loaded = apply_overrides(
        loaded,
        agent=agent_ref(opts.agent, opts.agent_cmd, "--agent"),
        integration_agent=agent_ref(opts.integration_agent, opts.integration_agent_cmd, "--integration-agent"),
        concurrency=opts.concurrency, timeout=opts.timeout, retries=opts.retries,
    )
    if opts.sandbox and not loaded.sandbox.enabled:
        loaded = loaded.model_copy(update={"sandbox": loaded.sandbox.model_copy(update={"enabled": True})})
    if loaded.sandbox.enabled and (problem := sandbox_problem()):
        raise BadInput(f"--sandbox: {problem}")
    if agents_needed:
        check_agents(loaded)
    ws = Path(opts.workspace).expanduser().resolve() if opts.workspace else default_workspace(repo_path, loaded.name)
    if ws == repo_path or repo_path in ws.parents:
        raise BadInput(f"workspace {ws} lies inside the repository; choose a --workspace outside {repo_path}")
    _check_writable(ws)
    return RunContext(plan=loaded, plan_file=plan_path.resolve(), repo=repo_path, workspace=ws,
                      rerun=opts.rerun, land=opts.land or bool(loaded.integration.land),
                      approve=opts.approve or loaded.integration.approve, keep_worktrees=opts.keep_worktrees,
                      options=opts)


def resolve_any(plan: str | Path, repo: str | Path, options: RunOptions | None = None, *,
                relative_to: Path | None = None, agents_needed: bool = True, sub: str | None = None) -> RunContext:
    """``resolve_run`` for a local repository; for a remote (a URL, or a bare repository), the same
    in our own clone of it (``tasks.remote``), which the run then works in and pushes from."""
    opts = options or RunOptions()
    if not gitremote.is_remote(str(repo)):
        if opts.dispatch:
            raise BadInput("dispatch needs a remote repo (a URL or a bare repository): the clusters' flow runs "
                           "clone it and push their branches there")
        return resolve_run(plan, repo, opts, relative_to=relative_to, agents_needed=agents_needed)
    clone, plan_path, base = remote.open_clone(str(plan), str(repo), opts, relative_to=relative_to, sub=sub)
    local = opts.model_copy(update={"workspace": None, "base": base})
    ctx = resolve_run(plan_path, clone, local, agents_needed=agents_needed)
    if opts.base is None and ctx.plan.base and ctx.plan.base != base:  # the plan names its own base
        gitremote.check_out(clone, ctx.plan.base)
        ctx = resolve_run(plan_path, clone, local.model_copy(update={"base": ctx.plan.base}),
                          agents_needed=agents_needed)
    return ctx.model_copy(update={"remote": str(repo), "credentials": opts.credentials, "dispatch": opts.dispatch,
                           "options": opts})


def plan_goal(repo: str | Path, goal: str, options: RunOptions,
              on_line: Callable[[str], None] | None = None) -> Path:
    """The plan for ``goal`` in ``repo``: suggested from the code, and written by the run's agent as
    planner when it has one (``tasks.suggest.planner``). The CLI and the flow both plan this way."""
    from prefect_work_clusters.tasks.suggest.planner import plan_for_goal

    root = Path(repo).expanduser().resolve()
    if not gitops.is_git_repo(root):
        raise BadInput(f"{root} is not a git repository; pass --repo with the repository to work on")
    ref = agent_ref(options.agent, options.agent_cmd, "--agent")
    return plan_for_goal(gitops.toplevel(root), goal, resolve_agent(ref) if ref is not None else None,
                         Path(options.workspace).expanduser().resolve() if options.workspace else None,
                         on_line=on_line)
