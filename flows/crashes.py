"""A cluster's flow run whose machine dies (its worker, container or node gone with it) is marked
Crashed by Prefect's own zombie detection, as Prefect documents it ("detect zombie flows"):

- every cluster flow run sends a ``prefect.flow-run.heartbeat`` event every
  ``HEARTBEAT_SECONDS`` (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``, set in the ``cluster``
  deployment's environment; Prefect refuses less than 30 s);
- an automation on the server (``ensure_crash_detection``) marks a ``work-clusters-cluster``
  run Crashed once neither a heartbeat nor a final state came for ``CRASH_AFTER_SECONDS``.

A run whose process dies while its worker lives is marked Crashed by the worker at once. Prefect
starts a Crashed run again by no rule of its own (flow ``retries`` act on Failed only, inside a
live process): the parent (``flows.dispatch``) does, as a new flow run of the deployment.
"""

from __future__ import annotations

from datetime import timedelta

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

CLUSTER_FLOW = "work-clusters-cluster"
HEARTBEAT_SECONDS = 30  # Prefect's minimum (PREFECT_FLOWS_HEARTBEAT_FREQUENCY)
CRASH_AFTER_SECONDS = 90.0  # three heartbeats missed: a loaded machine may send one late
AUTOMATION = "work-clusters: crash silent cluster runs"


def heartbeat_env() -> dict[str, str]:
    """The environment a cluster flow run needs to send heartbeats (a job variable ``env``)."""
    return {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}


def crash_automation(within: float = CRASH_AFTER_SECONDS) -> AutomationCore:
    """Prefect's documented zombie-flow automation, for cluster flow runs only (a plan's own run,
    deployed with Prefect's default heartbeat of 180 s, must not be judged by this window)."""
    final = {f"prefect.flow-run.{s}" for s in ("Completed", "Failed", "Cancelled", "Crashed")}
    return AutomationCore(
        name=AUTOMATION,
        description=f"Marks a {CLUSTER_FLOW} flow run Crashed when it sent no heartbeat for {within:.0f} s "
                    "(its worker or machine died); the plan's run then starts the cluster again.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *final},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification({"prefect.resource.role": "flow",
                                                 "prefect.resource.name": CLUSTER_FLOW}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within),
        ),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, name="Crashed", force=False,
                                    message=f"no heartbeat for {within:.0f} s: its worker or machine died")],
    )


def ensure_crash_detection(within: float = CRASH_AFTER_SECONDS) -> bool:
    """Create the automation on the server unless one of its name exists (then it is the user's to
    tune or disable, as a global concurrency limit is). Returns whether it was created."""
    with get_client(sync_client=True) as client:
        if client.read_automations_by_name(AUTOMATION):
            return False
        client.create_automation(crash_automation(within))
    return True
