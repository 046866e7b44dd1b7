"""Start a deployed plan run from Python (``run_deployment`` with the project's defaults).

Example::

    from prefect_work_clusters.deployments import trigger
    run = trigger("plans/auth-system.md", "/srv/app", agent="claude-team")
    print(run.state.name)  # Completed when every cluster merged and verification passed
"""

from __future__ import annotations

from typing import Any, cast

from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from prefect_work_clusters.deployments.definitions import FLOW_NAME, RUN_PLAN
from prefect_work_clusters.tasks.errors import BadInput


def trigger(plan: str, repo: str, *, deployment: str = f"{FLOW_NAME}/{RUN_PLAN}", wait: bool = True,
            timeout: float | None = None, poll_interval: float = 2, **parameters: Any) -> FlowRun:
    """Run ``plan`` on ``repo`` through ``deployment``; other flow parameters as keywords (None
    ones are left out). With ``wait``, return when the run is final (or after ``timeout`` s),
    else at once. Parameters the deployment's schema refuses raise BadInput with the server's
    reason, and no run is created."""
    params = {"plan": plan, "repo": repo, **{k: v for k, v in parameters.items() if v is not None}}
    try:
        run = cast(FlowRun, run_deployment(deployment, parameters=params, timeout=timeout if wait else 0,
                                           poll_interval=poll_interval, as_subflow=False))
    except ObjectNotFound:
        raise BadInput(f"no deployment {deployment!r} on this server; deploy it first "
                       "(`prefect --no-prompt deploy --all` in this project)") from None
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 409:
            raise
        raise BadInput(f"deployment {deployment!r} refused the parameters: {_detail(exc)}") from None
    return run


def _detail(exc: PrefectHTTPStatusError) -> str:
    try:
        detail = exc.response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail or exc.response.text)
