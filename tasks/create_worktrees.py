"""Step 2, the create-worktrees task: the base branch and one worktree per cluster
(``tasks.worktrees``), or the ones a CLI run began ahead (``tasks.head_start``), adopted."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.head_start import adopt
from prefect_work_clusters.tasks.worktrees import Prepared, prepare


@task(name="create-worktrees", cache_policy=NO_CACHE)
def create_worktrees(ctx: RunContext) -> Prepared:
    """Commit the plan and contracts to the base branch and give every cluster its worktree."""
    logger = get_run_logger()
    prepared = adopt(ctx)
    if prepared is not None:
        logger.info("worktrees made by the CLI while Prefect started, in %.1f s before this flow run began",
                    prepared.made_ahead)
    else:
        prepared = prepare(ctx)
    for note in prepared.notes:
        logger.warning(note)
    for rec in prepared.records:
        state = "resumed: finished earlier" if rec.resumed else "ready"
        logger.info("worktree %s on %s from %s (%s)", rec.worktree, rec.branch, rec.base_sha[:12], state)
    return prepared
