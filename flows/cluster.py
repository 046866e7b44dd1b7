"""A cluster as a flow run: ``work-clusters-cluster`` runs ONE cluster of a plan wherever a work
pool puts it (clone the remote, worktree, the agent's attempts, push its branch); the parent's
side is ``flows.dispatch``.

The attempt is the same as in local mode: the mapped ``run-agent`` task with its retries,
limits, scope check and guard (``flows.agents_phase.run_agents`` over this one cluster).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Completed, Failed

from prefect_work_clusters.flows.agents_phase import run_agents
from prefect_work_clusters.tasks import remote
from prefect_work_clusters.tasks.context import ClusterRecord
from prefect_work_clusters.tasks.options import AgentName, NonEmpty, PlanPath, Retries, RunOptions, Timeout
from prefect_work_clusters.tasks.recovery import run_lock
from prefect_work_clusters.tasks.resolve import resolve_any
from prefect_work_clusters.tasks.worktrees import prepare_one


@flow(name="work-clusters-cluster", log_prints=True)
def work_clusters_cluster(
    repo: NonEmpty,
    plan: PlanPath,
    cluster: NonEmpty,
    base_branch: NonEmpty,
    *,
    agent: AgentName | None = None,
    agent_cmd: NonEmpty | None = None,
    timeout: Timeout | None = None,
    retries: Retries | None = None,
    sandbox: bool = False,
    rerun: bool = False,
    credentials: NonEmpty | None = None,
    workspace: NonEmpty | None = None,
) -> State[Any]:
    """Run one cluster of a plan: clone the remote, make its worktree and branch, run its agent
    (attempts, limits, scope check and guard as in a local run), push its branch.

    Args:
        repo: The git remote (a URL, or a path to a bare repository) the parent run pushed to.
        plan: Path of the plan inside the repository, as committed on the base branch.
        cluster: The cluster to run.
        base_branch: The plan's base branch on the remote (clusters/<plan>/base).
        agent: Agent preset or saved agent block, as the parent run was given.
        agent_cmd: Agent command line instead of a preset.
        timeout: Seconds an agent attempt may run before its process group is killed.
        retries: Further attempts after a failed one.
        sandbox: Run the agent and verify/setup commands under bubblewrap.
        rerun: Run the agent again even if the branch already holds its finished work.
        credentials: Secret block holding the remote's token (else GITHUB_TOKEN and the like).
        workspace: Where this machine keeps its clone; default under $WORK_CLUSTERS_HOME.
    """
    options = RunOptions.pick({**locals(), "base": base_branch})
    ctx = resolve_any(plan, repo, options, sub=f"cluster-{cluster}")
    ctx.plan.cluster(cluster)  # an unknown cluster is refused here, before anything is made
    logger = get_run_logger()
    with run_lock(ctx):
        # Resume from what the remote's branch already holds (a retried or moved flow run).
        notes = remote.catch_up(ctx, [ctx.branch(cluster)])
        prepared = prepare_one(ctx, cluster)
        for note in [*notes, *prepared.notes]:
            logger.warning(note)
        record = run_agents(ctx, prepared)[0]
        if record.head_sha is None or record.status == "pending":
            return Failed(message=f"cluster {cluster}: {record.status}; nothing pushed")
        pushed = remote.push(ctx, [record.branch])
        for note in pushed:
            logger.info(note)
    if pushed and "refused" in pushed[0]:
        return Failed(message=f"cluster {cluster}: {pushed[0]}")
    if record.status != "succeeded":
        return Failed(message=f"cluster {cluster}: {record.status}: {record.error or _last_failure(record)}")
    return Completed(message=f"cluster {cluster} succeeded; {record.branch} pushed")


def _last_failure(record: ClusterRecord) -> str:
    return (record.attempts[-1].failure or "") if record.attempts else ""
