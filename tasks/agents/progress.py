"""Live progress of a run: the ``progress-<plan>`` artifact, updated as each cluster finishes.

The artifact's value is the share of clusters finished (successfully or not); its description,
which the UI shows beside the bar, says which cluster is where. Only names and statuses go in:
never output, which could hold anything an agent printed.
"""

from __future__ import annotations

from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact


class ClusterProgress:
    """The progress artifact of one run.

    >>> ClusterProgress.describe({"api": "succeeded", "ui": "running"})
    '**1 of 2 clusters finished**\\n\\n| cluster | status |\\n|---|---|\\n| api | succeeded |\\n| ui | running |'
    """

    def __init__(self, plan: str, statuses: dict[str, str]) -> None:
        """Publish the artifact; ``statuses`` maps every cluster, in plan order, to where it is."""
        self.statuses = dict(statuses)
        # cast: the sync/async dispatching decorator types the result as either
        self.artifact_id = cast(UUID, create_progress_artifact(
            progress=self.percent(), key=f"progress-{plan}", description=self.describe(self.statuses)))

    def percent(self) -> float:
        done = sum(1 for s in self.statuses.values() if s not in ("pending", "running"))
        return round(100.0 * done / len(self.statuses), 1) if self.statuses else 100.0

    def update(self, cluster: str, status: str) -> None:
        """Record that ``cluster`` reached ``status`` and update the artifact."""
        self.statuses[cluster] = status
        update_progress_artifact(self.artifact_id, progress=self.percent(),
                                 description=self.describe(self.statuses))

    @staticmethod
    def describe(statuses: dict[str, str]) -> str:
        done = sum(1 for s in statuses.values() if s not in ("pending", "running"))
        rows = [f"| {name} | {status} |" for name, status in statuses.items()]
        return "\n".join([f"**{done} of {len(statuses)} clusters finished**", "", "| cluster | status |",
                          "|---|---|", *rows])
