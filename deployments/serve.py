"""Serve or deploy the flow from Python: the same deployments as ``prefect.yaml``.

``serve_plans`` runs them in this process (no work pool, no worker: good on one machine);
``deploy_plans`` registers them on a work pool for ``prefect worker start`` to run.

Example::

    from prefect_work_clusters.deployments import deploy_plans
    deploy_plans(nightly={"plan": "plans/auth-system.md", "repo": "/srv/app"})
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect import deploy, serve

from prefect_work_clusters.deployments.definitions import WORK_POOL, cluster_deployment_options, deployment_options


def _deployments(nightly: dict[str, Any] | None, investigation: dict[str, Any] | None) -> list[Any]:
    """Every deployment of ``prefect.yaml``: the plan runs, and ``cluster`` for dispatched clusters."""
    from prefect_work_clusters.flows.cluster import work_clusters_cluster
    from prefect_work_clusters.flows.work_clusters import work_clusters

    flow: Any = work_clusters  # to_deployment is typed as sync-or-async; here it is sync
    cluster: Any = work_clusters_cluster
    return [*(flow.to_deployment(**each) for each in deployment_options(nightly, investigation)),
            cluster.to_deployment(**cluster_deployment_options())]


def serve_plans(nightly: dict[str, Any] | None = None, investigation: dict[str, Any] | None = None,
                limit: int | None = None) -> None:
    """Serve the deployments of ``prefect.yaml`` until interrupted; ``nightly`` and
    ``investigation`` hold those schedules' ``plan`` and ``repo`` (their schedules are on only
    when given); ``limit`` caps the runs at once."""
    serve(*_deployments(nightly, investigation), limit=limit)


def deploy_plans(work_pool: str = WORK_POOL, nightly: dict[str, Any] | None = None,
                 investigation: dict[str, Any] | None = None) -> list[UUID]:
    """Create or update the deployments of ``prefect.yaml`` on ``work_pool`` (which must exist),
    as ``serve_plans`` describes them; a worker imports the flow from the installed package.
    Returns the deployment ids."""
    ids = deploy(*_deployments(nightly, investigation), work_pool_name=work_pool, print_next_steps_message=False,
                 ignore_warnings=True)
    return cast(list[UUID], ids)
