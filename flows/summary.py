"""The terminal summary of a run: the table of clusters, then everything the report warns about,
one line each (a warning only in the merge report is a warning nobody reads), then the verdict."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from prefect_work_clusters.tasks.failures import last_lines
from prefect_work_clusters.tasks.report import STATUS_MARK, RunReport, continue_command


def merge_cells(report: RunReport) -> dict[str, str]:
    """The merge column: a cluster that changed nothing, or whose merge conflicted, says so."""
    empty = {c.cluster for c in report.checks if c.status == "empty"}
    cells: dict[str, str] = {}
    for s in report.integration.steps if report.integration else []:
        notes = (["changed nothing"] if s.cluster in empty else []) + \
            ([f"{len(s.files)} conflict(s) resolved"] if s.files and s.status == "merged" else [])
        cells[s.cluster] = s.status + (f" ({', '.join(notes)})" if notes else "")
    return cells


def summary_lines(report: RunReport) -> list[str]:
    """Every failure, warning and resolved conflict of the run, one line each, after the table."""
    lines = [f"error: {c.cluster}: {c.failure}" + (f"; {printed}" if (printed := last_lines(c.last_output)) else "")
             for c in report.clusters if c.status != "succeeded" and c.failure]
    lines += [f"warning: {r.cluster}: {r.check}: {r.note or ', '.join(r.evidence)}"
             for c in report.checks for r in c.rows if r.status == "warning"]
    lines += [f"warning: integrated tree: {r.check}: {r.note or ', '.join(r.evidence)}"
              for r in report.tree_checks if r.status == "warning"]
    lines += [f"note: {n}" for n in report.notes]
    integ = report.integration
    lines += [f"refused: {report.refused}"] if report.refused else []
    lines += [f"warning: {integ.partial}"] if integ and integ.partial else []
    lines += [f"warning: {moved}" for moved in (integ.moved if integ else [])]
    for s in integ.steps if integ else []:
        lines += [f"conflict: {f.path} merging {s.cluster} onto {', '.join(f.ours) or 'the base'}: "
                  + (f"resolved by {f.resolved_by}" if f.resolved_by else "left for a person") for f in s.files]
    acc = integ.accounting if integ else None
    for i in acc.issues if acc else []:
        verdict = f"explained by {i.explained_by}" if i.reason else "unexplained"
        lines.append(f"{'warning' if i.reason else 'error'}: {i.count} line(s) {i.kind} in {i.path} "
                     f"({', '.join(i.by)}): {verdict}")
    for f in acc.findings if acc else []:
        verdict = f"explained by {f.explained_by}" if f.reason else "unexplained"
        lines.append(f"{'warning' if f.reason else 'error'}: {f.path}:{f.line}: {f.message}: {verdict}")
    if acc and not acc.ok:
        lines.append("see the report's Change accounting section")
    return lines


def print_summary(out: Console, report: RunReport, runs_dir: Path) -> None:
    """The run's table, then every warning, conflict and accounting finding, then the verdict."""
    table = Table(title=f"plan {report.plan}")
    inv = report.investigation
    for col in ("cluster", "status", "attempts", "duration (s)", "findings" if inv else "merge"):
        table.add_column(col)
    merges = merge_cells(report)
    merges.update({d.cluster: f"{d.count} ({d.status})" for d in (inv.documents if inv else [])})
    for c in report.clusters:
        table.add_row(c.cluster, f"{STATUS_MARK.get(c.status, '❌')} {c.status}" + (" (resumed)" if c.resumed else ""),
                      str(c.attempts),
                      f"{c.duration:.1f}", merges.get(c.cluster, ""))
    out.print(table)
    integ = report.integration
    if integ and integ.instructions:
        out.print(integ.instructions)
    for line in summary_lines(report):
        out.print(line, markup=False)
    if report.review:
        out.print(f"review: {report.review.line()}", markup=False)
        if report.review.status == "awaiting":
            out.print(f"  to answer: work-clusters approve {report.plan_file} --repo {report.repo} "
                      "[--reject] [--comment TEXT]", markup=False)
    if report.land:
        out.print(report.land.message, markup=False)
    if inv:
        verdict = "[green]findings synthesized[/green]" if report.ok else "[red]investigation not complete[/red]"
        out.print(f"{verdict}; {len(inv.findings)} typed findings; action plan: {inv.action_plan.file}")
    else:
        verdict = "[green]integrated and verified[/green]" if report.ok else "[red]not integrated[/red]"
        out.print(f"{verdict}; final commit {integ.final_sha if integ and integ.final_sha else 'none'}")
    out.print(f"report: {runs_dir / 'merge-report.md'} (and report.json)")
    if not report.ok and not inv:
        out.print(f"next: {continue_command(report)}", markup=False, highlight=False)
