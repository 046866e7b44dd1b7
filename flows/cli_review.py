"""``work-clusters approve``: a person's answer to a run waiting for approval."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prefect_work_clusters.flows.cli_shared import PlanArg, RepoOpt, out


def approve(
    plan: PlanArg,
    repo: RepoOpt = Path("."),
    reject: Annotated[bool, typer.Option("--reject", help="Do not land; the run ends not landed.")] = False,
    comment: Annotated[str, typer.Option(help="Why; kept in the merge report.")] = "",
    by: Annotated[str | None, typer.Option(help="Who decides (default: your user name).")] = None,
) -> None:
    """Answer a run waiting for approval: land it (or open its pull request), or --reject it. A run on
    a server is resumed there (PREFECT_API_URL); a local run is landed here."""
    import getpass

    from prefect_work_clusters.flows.review import approve_run
    from prefect_work_clusters.tasks.integration.approval import Approval
    from prefect_work_clusters.tasks.recovery import run_lock
    from prefect_work_clusters.tasks.resolve import resolve_run

    ctx = resolve_run(plan, repo, relative_to=Path.cwd(), agents_needed=False)
    answer = Approval(approve=not reject, comment=comment, approved_by=by or getpass.getuser())
    with run_lock(ctx):
        lines = approve_run(ctx, answer)
    for line in lines:
        out.print(line, markup=False, highlight=False)
