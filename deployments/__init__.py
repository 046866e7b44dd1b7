"""Deploying the flow: the definitions ``prefect.yaml`` also holds, serve and deploy helpers, and
a trigger around ``run_deployment``."""

from deployments.definitions import FLOW_NAME, NIGHTLY, RUN_PLAN, WORK_POOL
from deployments.serve import deploy_plans, serve_plans
from deployments.trigger import trigger

__all__ = ["FLOW_NAME", "NIGHTLY", "RUN_PLAN", "WORK_POOL", "deploy_plans", "serve_plans", "trigger"]
