"""The deployments of the ``work-clusters`` flow, as ``prefect.yaml`` declares them.

``prefect.yaml`` (for ``prefect deploy``) and the Python helpers here (``serve_plans``,
``deploy_plans``) describe the same deployments; tests/test_blocks.py keeps them in step.
"""

from __future__ import annotations

from typing import Any

from prefect.schedules import Cron, Schedule
from prefect.types.entrypoint import EntrypointType

from prefect_work_clusters.flows.crashes import CLUSTER_FLOW, heartbeat_env

FLOW_NAME = "work-clusters"
# A module path: workers import the flow from the installed package, from any directory.
ENTRYPOINT = "prefect_work_clusters.flows.work_clusters.work_clusters"
WORK_POOL = "work-clusters"
RUN_PLAN = "run-plan"
NIGHTLY = "nightly"
NIGHTLY_CRON = "0 2 * * *"
TIMEZONE = "UTC"
INVESTIGATION = "weekly-investigation"
INVESTIGATION_CRON = "0 6 * * 1"
TAGS = ["work-clusters"]
# The flow of one cluster (``--dispatch work-clusters-cluster/cluster``): deploy it on every pool
# whose workers should run agents.
CLUSTER_FLOW_NAME = CLUSTER_FLOW
CLUSTER_ENTRYPOINT = "prefect_work_clusters.flows.cluster.work_clusters_cluster"
CLUSTER = "cluster"


def deployment_options(nightly: dict[str, Any] | None = None,
                       investigation: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Keyword arguments of ``Flow.to_deployment`` for ``run-plan``, ``nightly`` and
    ``weekly-investigation`` (a plan of investigation clusters, rerun against the current base;
    ``investigation`` holds its ``plan`` and ``repo``, as ``nightly`` does).

    ``nightly`` holds the scheduled run's parameters (at least ``plan`` and ``repo``); without
    them its schedule is created inactive, as in ``prefect.yaml``.
    """
    schedule: Schedule = Cron(NIGHTLY_CRON, timezone=TIMEZONE, active=nightly is not None)
    module: dict[str, Any] = {"entrypoint_type": EntrypointType.MODULE_PATH}
    return [
        {"name": RUN_PLAN, "tags": TAGS, **module,
         "description": "Run a plan: one agent per cluster in its own worktree, then integrate."},
        {"name": NIGHTLY, "tags": TAGS, **module, "schedules": [schedule], "parameters": dict(nightly or {}),
         "description": f"Run a plan every day at {NIGHTLY_CRON} ({TIMEZONE}); finished clusters are kept."},
        {"name": INVESTIGATION, "tags": TAGS, **module,
         "schedules": [Cron(INVESTIGATION_CRON, timezone=TIMEZONE, active=investigation is not None)],
         "parameters": {"rerun": True, **(investigation or {})},
         "description": f"Run an investigation plan every Monday at {INVESTIGATION_CRON} ({TIMEZONE}) on the "
                        "current base; its findings and action plan are artifacts."},
    ]


def cluster_deployment_options() -> dict[str, Any]:
    """Keyword arguments of ``Flow.to_deployment`` for ``cluster``: the flow runs a ``--dispatch``
    run starts, one per cluster. Its parameters come from the parent run; its heartbeats let the
    server see a run whose machine died (``flows.crashes``)."""
    return {"name": CLUSTER, "tags": TAGS, "entrypoint_type": EntrypointType.MODULE_PATH,
            "job_variables": {"env": heartbeat_env()},
            "description": "Run one cluster of a plan (started by a run with dispatch): clone the remote, "
                           "run the agent in its worktree, push its branch."}
