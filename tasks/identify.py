"""Step 1, the identify-clusters task: the run resolved from the plan (``tasks.resolve``), or from a
goal planned first; a goal's plan published as an artifact."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.errors import BadInput
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.resolve import plan_goal, resolve_any


@task(name="identify-clusters", cache_policy=NO_CACHE)
def identify(plan: str | None, repo: str, options: RunOptions, agents_needed: bool = True,
             goal: str | None = None) -> RunContext:
    """Load and validate the plan and resolve the run; a relative plan path is taken from the repo.

    Given a ``goal`` instead of a plan, the plan is suggested from the code (and written by the
    planner agent when the run has an agent), published as the ``plan-<name>`` artifact, then
    loaded like a hand-written one."""
    if plan is None:
        if not goal:
            raise BadInput("give a plan, or a goal to plan for")
        plan = str(_plan_for_goal(repo, goal, options))
    ctx = resolve_any(plan, repo, options, agents_needed=agents_needed)
    if goal:
        _publish_plan(ctx.plan_file, ctx.plan.name, goal)
    return ctx


def _publish_plan(path: Path, name: str, goal: str) -> None:
    """The plan a goal was planned into, as the ``plan-<name>`` artifact."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(key=f"plan-{name}", markdown=f"# Plan `{name}`\n\nFor the goal: {goal}\n\n"
                                                         f"```yaml\n{path.read_text()}```\n",
                             description=f"The plan made for the goal: {goal}")


def _plan_for_goal(repo: str, goal: str, options: RunOptions) -> Path:
    from prefect import get_run_logger

    logger = get_run_logger()
    path = plan_goal(repo, goal, options, on_line=lambda line: logger.info("[planner] %s", line))
    logger.info("plan for the goal: %s", path)
    return path
