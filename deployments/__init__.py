"""Deploying the flow: the definitions ``prefect.yaml`` also holds, serve and deploy helpers, and
a trigger around ``run_deployment``."""

from prefect_work_clusters.deployments.definitions import FLOW_NAME, NIGHTLY, RUN_PLAN, WORK_POOL
from prefect_work_clusters.deployments.serve import deploy_plans, serve_plans
from prefect_work_clusters.deployments.trigger import trigger

__all__ = ["FLOW_NAME", "NIGHTLY", "RUN_PLAN", "WORK_POOL", "deploy_plans", "serve_plans", "trigger"]
