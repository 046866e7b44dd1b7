"""The ``work-clusters`` flow: identify → worktrees → agents (mapped) → contract check →
integrate → report. Each step is a Prefect task; the logic under them lives in ``tasks/``.
A plan of investigation clusters ends in a synthesis instead (``flows.investigation``)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import datetime, timezone
from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State

from prefect_work_clusters.flows import review
from prefect_work_clusters.flows.agents_phase import agents_slots, run_agents
from prefect_work_clusters.flows.dispatch import run_dispatched
from prefect_work_clusters.flows.finish import finish
from prefect_work_clusters.tasks import remote
from prefect_work_clusters.tasks.checks.user_side import read_checkout
from prefect_work_clusters.tasks.context import ClusterRecord, RunContext
from prefect_work_clusters.tasks.create_worktrees import create_worktrees
from prefect_work_clusters.tasks.errors import BadInput, WorkClustersError
from prefect_work_clusters.tasks.failures import (
    failed,
    one_line,
    plan_problems,
    quiet_expected_failures,
)
from prefect_work_clusters.tasks.head_start import head_start
from prefect_work_clusters.tasks.identify import identify
from prefect_work_clusters.tasks.integration.worktree import write_ahead
from prefect_work_clusters.tasks.investigation import check as investigate
from prefect_work_clusters.tasks.options import (
    Count,
    Goal,
    NonEmpty,
    OptionalPlan,
    PlanPath,
    Retries,
    RunOptions,
    Seconds,
    Text,
)
from prefect_work_clusters.tasks.proc import interrupt
from prefect_work_clusters.tasks.recovery import run_lock
from prefect_work_clusters.tasks.report import build_report, publish_report
from prefect_work_clusters.tasks.worktrees import Prepared, recorded

quiet_expected_failures()  # imported by every process that runs our flows: CLI, worker, serve


@flow(name="work-clusters", log_prints=True)
def work_clusters(
    plan: OptionalPlan = "",
    *,
    repo: NonEmpty,
    goal: Goal = "",
    agent: Text = "",
    agent_cmd: Text = "",
    integration_agent: Text = "",
    integration_agent_cmd: Text = "",
    base: Text = "",
    workspace: Text = "",
    concurrency: Count = 0,
    timeout: Seconds = 0,
    retries: Retries | None = None,
    land: bool = False,
    rerun: bool = False,
    keep_worktrees: bool = True,
    sandbox: bool = False,
    dispatch: Text = "",
    credentials: Text = "",
    approve: bool = False,
) -> State[Any]:
    """Run one agent per cluster of a plan in its own worktree, then integrate their branches.

    Args:
        plan: Path of the plan file (.yaml, .yml or .md); a relative path is taken from the repo.
            Leave it empty and give a goal to have the plan suggested from the code.
        repo: Path of the git repository to work on, or a git remote (a URL, or a path to a bare
            repository): the run then works in its own clone and pushes the plan's branches there.
        goal: Instead of a plan: what to build. The plan is suggested from the code's imports and
            history (and written by the agent as planner when there is one), published as the
            plan-<name> artifact and committed on the base branch like a hand-written one. Given
            with a plan: the goal that plan was made for (published the same way).
        agent: Agent for every role the plan does not set otherwise: a preset (claude, codex,
            aider) or a saved agent block's name.
        agent_cmd: An agent command line instead of a preset, split as a shell would; may hold
            {prompt}, {prompt_file}, {cluster}, {worktree}, {plan}, {branch}.
        integration_agent: Agent for the integration role (conflicts, failed verification).
        integration_agent_cmd: Integration agent command line instead of a preset.
        base: Ref the clusters start from; default: the plan's base, else the repo's HEAD.
        workspace: Where worktrees and run records go; default: a folder beside the repo named after
            it and the plan (REPO.clusters/PLAN). With a remote repo: the folder holding the run's
            clone and, beside it, that workspace (default under $WORK_CLUSTERS_HOME).
        concurrency: Agents running at once (overrides the plan's limits.concurrency; 0: the plan's).
        timeout: Seconds an agent attempt may run before its process group is killed (0: the plan's).
        retries: Further attempts after a failed one.
        land: Fast-forward the base branch to the integrated result when all is green.
        rerun: Run every cluster's agent again, even those that finished in an earlier run.
        keep_worktrees: Keep the cluster worktrees after the run (the branches are always kept).
        sandbox: Run every agent and verify/setup command under bubblewrap, able to write only its
            own worktree (as the plan's sandbox.enabled).
        dispatch: With a remote repo: run each cluster as a flow run of this deployment
            (work-clusters-cluster/cluster) on its work pool, instead of here.
        credentials: With a remote repo: the Secret block holding its token (default: the
            GITHUB_TOKEN, GH_TOKEN or GITLAB_TOKEN variable, when set).
        approve: Once integrated and verified, wait for a person's approval (a form on this flow run)
            before landing (as the plan's integration.approve); approving lands it.
    """
    options = RunOptions.pick(locals())
    phases: dict[str, float] = {}
    started = datetime.now(timezone.utc)

    t = time.monotonic()
    try:
        ctx = identify(plan or None, repo, options, goal=goal or None)
    except BadInput as exc:  # a bad plan or bad parameters: nothing was created
        return failed(f"{exc} (the problems are in the {plan_problems(plan or goal or repo, exc)} artifact)")
    phases["identify"] = time.monotonic() - t
    try:
        with run_lock(ctx):  # one run per repo and plan; a second one is refused at once
            return _run(ctx, phases, started)
    except WorkClustersError as exc:  # expected (a run in progress, a moved base): one line, no traceback
        get_run_logger().error("%s", one_line(str(exc)))
        return failed(str(exc))


def _run(ctx: RunContext, phases: dict[str, float], started: datetime) -> State[Any]:
    if (decided := review.resumed(ctx)) is not None:  # a suspended run, resumed: only its decision is left
        return decided
    t = time.monotonic()
    # A rerun investigates the current base, not the one an earlier run's branches grew from.
    restarted = investigate.restart(ctx) if ctx.rerun and ctx.plan.investigates else []
    # From a remote: the plan's branches as the remote holds them (a run resumed elsewhere).
    caught_up = remote.catch_up(ctx) if ctx.remote else []
    # Your checkout's status, the containment watch's baseline, read while the worktrees are made
    # (begun with them by the CLI, when it gave them a head start).
    early = head_start(ctx)
    checkout = None if ctx.dispatch else early.checkout if early and early.checkout else read_checkout(ctx.repo)
    with ExitStack() as stack:
        # The agents' global slots before the worktrees step, for every cluster of the plan (fitted
        # to the unfinished ones after it): on Prefect's SQLite server, a write while the server
        # records the task runs just ended (one write per event) can be answered 503, and Prefect's
        # client then waits 2 s. Measured against a running server: 3 of 12 runs met it with the
        # slots taken after the worktrees step, 0 of 12 with them taken before it.
        t_slots = time.monotonic()
        slots = None if ctx.dispatch else stack.enter_context(agents_slots(ctx, [c.name for c in ctx.plan.clusters]))
        t_slots = time.monotonic() - t_slots
        prepared = create_worktrees(ctx)
        prepared.notes.extend(restarted + caught_up)
        if ctx.remote:  # every cluster, here or in its own flow run, starts from the remote's base branch
            prepared.notes.extend(remote.push_base(ctx))
        # A build's integration worktree is written while the agents work; waiting for it counts here.
        ahead = None if ctx.plan.investigates else write_ahead(ctx, prepared.base_sha)
        phases["worktrees"] = time.monotonic() - t - t_slots + prepared.made_ahead

        t = time.monotonic() - t_slots
        records = run_dispatched(ctx, prepared) if slots is None else run_agents(ctx, prepared, checkout, slots)
    if ctx.remote and not ctx.dispatch:
        prepared.notes.extend(remote.push(ctx, [r.branch for r in records]))
    phases["agents"] = time.monotonic() - t
    if ahead:
        t = time.monotonic()
        ahead.wait()
        phases["worktrees"] += time.monotonic() - t
    if interrupt.requested():
        return _interrupted(ctx, prepared, records, phases, started)
    return finish(ctx, prepared, records, phases, started)


def _interrupted(ctx: RunContext, prepared: Prepared, records: list[ClusterRecord], phases: dict[str, float],
                 started: datetime) -> State[Any]:
    """The report of a run stopped by SIGINT/SIGTERM: every cluster not finished is interrupted,
    nothing is merged; the next run of the plan resumes."""
    records = [r if r.status == "succeeded" else r.model_copy(update={"status": "interrupted"}) for r in records]
    note = "interrupted (SIGINT or SIGTERM): agents stopped, nothing merged; run the plan again to resume"
    report = build_report(ctx, prepared, records, phases, started, False, [*prepared.notes, note],
                          checks=[], integration=None)
    path = publish_report(ctx, report)
    return failed(f"interrupted; report at {path}")


@flow(name="work-clusters-integrate", log_prints=True)
def integrate_clusters(plan: PlanPath, repo: NonEmpty, integration_agent: Text = "",
                       integration_agent_cmd: Text = "", land: bool = False,
                       approve: bool = False, workspace: Text = "", credentials: Text = "") -> State[Any]:
    """Re-run only the integration of a plan from the cluster branches an earlier run recorded.

    Args:
        plan: Path of the plan file; a relative path is taken from the repo.
        repo: Path of the git repository, or the git remote an earlier run pushed to.
        integration_agent: Agent for the integration role.
        integration_agent_cmd: Integration agent command line instead of a preset.
        land: Fast-forward the base branch to the integrated result when all is green.
        approve: Wait for a person's approval before landing.
        workspace: Where the earlier run kept its worktrees and records (or its clone of a remote).
        credentials: With a remote repo: the Secret block holding its token.
    """
    started = datetime.now(timezone.utc)
    t = time.monotonic()
    try:
        ctx = identify(plan, repo, RunOptions.pick(locals()), agents_needed=False)
    except BadInput as exc:
        return failed(f"{exc} (the problems are in the {plan_problems(plan, exc)} artifact)")
    phases = {"identify": time.monotonic() - t, "worktrees": 0.0, "agents": 0.0}
    try:
        with run_lock(ctx):
            notes = remote.catch_up(ctx) if ctx.remote else []  # the branches the remote holds
            if (decided := review.resumed(ctx)) is not None:
                return decided
            prepared = recorded(ctx)
            prepared.notes.extend(notes)
            return finish(ctx, prepared, prepared.records, phases, started)
    except WorkClustersError as exc:
        get_run_logger().error("%s", one_line(str(exc)))
        return failed(str(exc))
