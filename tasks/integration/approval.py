"""Approval before landing: what a person decides, and where the run keeps it.

A run with ``integration.approve`` stops after integration and verification pass. The decision
is kept in ``.runs/review.json`` so that it outlives the run: a flow run suspended on a server is
resumed in a new process, and a local run (which Prefect cannot suspend: a flow run without a
deployment is refused) is landed later by ``work-clusters approve``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from prefect.input import RunInput
from pydantic import BaseModel, Field

from prefect_work_clusters.tasks.context import RunContext, write_json_atomic

# A suspended run waits this long for a decision; then Prefect fails it and nothing lands.
TIMEOUT_SECONDS = 7 * 24 * 3600
PAUSE_KEY = "approval"  # the same key on the resumed run's second call makes Prefect hand back the input


class Approval(RunInput):
    """The form a person fills in, in the Prefect UI or through ``work-clusters approve``."""

    approve: bool = Field(default=False, description="Land the integrated result (or open its pull request).")
    comment: str = Field(default="", description="Why; kept in the merge report.")
    approved_by: str = Field(default="", description="Who decides (Prefect does not tell us).")


class Review(BaseModel):
    """The state of a run's approval, kept in ``.runs/review.json``."""

    status: Literal["awaiting", "approved", "rejected"]
    final_sha: str = Field(description="the integrated commit a person is asked about")
    requested_at: datetime
    flow_run_id: str | None = Field(default=None, description="the suspended flow run, on a server")
    decided_at: datetime | None = None
    comment: str = ""
    approved_by: str = ""
    via: str = Field(default="", description="where the decision came from: the Prefect UI or API, or the CLI")

    def decided(self, answer: Approval, via: str) -> Review:
        return self.model_copy(update={
            "status": "approved" if answer.approve else "rejected", "decided_at": datetime.now(timezone.utc),
            "comment": answer.comment, "approved_by": answer.approved_by, "via": via})

    def line(self) -> str:
        """One line for the report and the terminal."""
        if self.status == "awaiting":
            where = f"flow run {self.flow_run_id}" if self.flow_run_id else "this machine"
            return f"awaiting approval of {self.final_sha[:12]} (since {self.requested_at:%Y-%m-%d %H:%M} UTC, {where})"
        who = f" by {self.approved_by}" if self.approved_by else ""
        when = f" at {self.decided_at:%Y-%m-%d %H:%M:%S} UTC" if self.decided_at else ""
        said = f": {self.comment}" if self.comment else ""
        return f"{self.status}{who}{when} via {self.via or '-'}{said}"


def review_file(ctx: RunContext) -> Path:
    return ctx.runs_dir / "review.json"


def load_review(ctx: RunContext) -> Review | None:
    path = review_file(ctx)
    return Review.model_validate_json(path.read_text()) if path.exists() else None


def save_review(ctx: RunContext, review: Review) -> None:
    write_json_atomic(review_file(ctx), review.model_dump(mode="json"))


def description(plan: str, report_markdown: str, limit: int = 20_000) -> str:
    """The text above the form: what is asked, then the merge report (the UI shows markdown)."""
    head = (f"**Approve landing plan {plan}?** Approve lands it (or opens its pull request); reject keeps "
            "everything on its branches. The whole report is the `merge-report` artifact.\n\n")
    body = report_markdown if len(report_markdown) <= limit else report_markdown[:limit] + "\n\n… (cut)"
    return head + body
