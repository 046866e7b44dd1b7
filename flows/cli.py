"""The ``work-clusters`` command line, thin over the plan module and the flows.

Exit status: 0 integrated and verified (or the command did what it says), 1 a run that did not
integrate or an expected failure, 2 bad input (nothing created), 3 an internal error or Prefect
unavailable, 75 refused because a run of the plan is in progress, 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

# The temporary local server must not try to phone home from machines without a network.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

from prefect_work_clusters.tasks.errors import BadInput, WorkClustersError  # noqa: E402
from prefect_work_clusters.tasks.git.core import GitError  # noqa: E402
from prefect_work_clusters.tasks.proc import interrupt  # noqa: E402

if TYPE_CHECKING:
    from prefect_work_clusters.tasks.context import RunContext
    from prefect_work_clusters.tasks.options import RunOptions

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Run one coding agent per work cluster in its own git worktree, then integrate.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
# The .runs/ folder of the run this process works on, once known: where a crash's traceback goes.
_runs_dir: Path | None = None



class Interrupted(WorkClustersError):
    """The run was stopped by SIGINT or SIGTERM; its report says where."""

    exit_code = interrupt.EXIT_CODE


PlanArg = Annotated[Path, typer.Argument(help="Plan file (.yaml, .yml or .md), relative to the current directory.")]
RepoOpt = Annotated[Path, typer.Option("--repo", help="The git repository to work on.")]


@app.command()
def validate(plan: PlanArg, repo: RepoOpt = Path(".")) -> None:
    """Parse and validate a plan; print its cluster tree and how well it fits the pattern."""
    from prefect_work_clusters.tasks.plan.load import load_plan
    from prefect_work_clusters.tasks.plan.view import fit_assessment, render_tree

    loaded = load_plan(plan.resolve(), repo.resolve())
    out.print(render_tree(loaded))
    out.print()
    for line in fit_assessment(loaded):
        out.print(f"  {line}")
    out.print(f"\n[green]valid[/green]: {plan}")


@app.command()
def run(
    plan: PlanArg,
    repo: RepoOpt = Path("."),
    agent: Annotated[str | None, typer.Option(help="Agent preset or saved block for every role.")] = None,
    agent_cmd: Annotated[str | None, typer.Option(help="Agent command line (split as a shell would).")] = None,
    integration_agent: Annotated[str | None, typer.Option(help="Agent for the integration role.")] = None,
    integration_agent_cmd: Annotated[str | None, typer.Option(help="Integration agent command line.")] = None,
    base: Annotated[str | None, typer.Option(help="Ref the clusters start from.")] = None,
    workspace: Annotated[Path | None, typer.Option(help="Where worktrees and run records go.")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Agents running at once.")] = None,
    timeout: Annotated[float | None, typer.Option(min=0.001, help="Seconds per agent attempt.")] = None,
    retries: Annotated[int | None, typer.Option(min=0, help="Further attempts after a failed one.")] = None,
    land: Annotated[bool, typer.Option(help="Fast-forward the base branch when all is green.")] = False,
    rerun: Annotated[bool, typer.Option(help="Run finished clusters' agents again.")] = False,
    keep_worktrees: Annotated[bool, typer.Option(help="Keep cluster worktrees after the run.")] = True,
    emit_plan: Annotated[Path | None, typer.Option(
        "--emit-plan", help="Investigations: write the build plan (YAML) of the proposed fixes to this file.")] = None,
) -> None:
    """Run the whole flow: worktrees, agents in parallel, contract check, integration, report."""
    from prefect_work_clusters.tasks.identify import resolve_run
    from prefect_work_clusters.tasks.options import RunOptions
    from prefect_work_clusters.tasks.recovery import run_lock

    options = RunOptions.pick({**locals(), "workspace": str(workspace.resolve()) if workspace else None})
    # Validate before Prefect starts: bad input costs no server start and creates nothing.
    ctx = resolve_run(plan, repo, options, relative_to=Path.cwd())
    if emit_plan:
        _emit_target(ctx, emit_plan)
    with run_lock(ctx, share=True):  # a second run is refused before Prefect starts
        _execute(str(ctx.plan_file), str(ctx.repo), options, ctx.runs_dir,
                 after=(lambda: _emit(ctx, emit_plan)) if emit_plan else None)


def _emit_target(ctx: RunContext, target: Path) -> None:
    if not ctx.plan.investigates:
        raise BadInput(f"--emit-plan: plan {ctx.plan.name} builds; only an investigation (kind: investigation) "
                       "has findings to turn into a build plan")
    if target.suffix not in (".yaml", ".yml"):
        raise BadInput(f"--emit-plan {target}: the build plan is YAML; give a file name ending in .yaml or .yml")


def _emit(ctx: RunContext, target: Path) -> None:
    """Write the build plan of the findings' proposed fixes and say how to go on."""
    from prefect_work_clusters.tasks.investigation.fixes import emit_plan
    from prefect_work_clusters.tasks.investigation.synthesis import action_plan_file, recorded_findings

    emitted = emit_plan(ctx.plan, recorded_findings(ctx), ctx.repo, target.resolve(), action_plan_file(ctx))
    out.print(f"build plan: {emitted.path} ({len(emitted.clusters)} clusters: "
              + ", ".join(f"{name} ({', '.join(paths)})" for name, paths in emitted.clusters.items()) + ")")
    if emitted.left_out:
        out.print(f"  left out (no proposed fix or no paths): {', '.join(emitted.left_out)}")
    out.print(f"  next: work-clusters validate {emitted.path} --repo {ctx.repo}")


def _execute(plan: str, repo: str, options: RunOptions, runs_dir: Path,
             after: Callable[[], None] | None = None) -> None:
    from prefect_work_clusters.flows.startup import patient_server
    from prefect_work_clusters.flows.work_clusters import work_clusters

    global _runs_dir
    _runs_dir = runs_dir
    err.print(f"[bold]work-clusters[/bold]: running {plan} (Prefect logs follow)")
    interrupt.install(lambda text: err.print(text, highlight=False, markup=False))
    since = datetime.now(timezone.utc)
    with patient_server():
        state = work_clusters(plan=plan, repo=repo, return_state=True, **options.flow_parameters())
    _report_outcome(runs_dir, since, state.message, after)


def _report_outcome(runs_dir: Path, since: datetime, message: str | None,
                    after: Callable[[], None] | None = None) -> None:
    from prefect_work_clusters.tasks.report import RunReport

    report_file = runs_dir / "report.json"
    report = RunReport.model_validate_json(report_file.read_text()) if report_file.exists() else None
    if report is None or report.started_at < since:
        if interrupt.requested():
            raise Interrupted(f"interrupted before the run wrote its report: {message}")
        raise WorkClustersError(f"the run stopped before writing its report: {message}")
    _print_summary(report, runs_dir)
    if interrupt.requested():
        raise Interrupted(f"interrupted; every agent was stopped; report: {runs_dir / 'merge-report.md'}; "
                          "run the plan again to resume")
    if after:
        after()
    if not report.ok:
        raise typer.Exit(1)


def _print_summary(report: object, runs_dir: Path) -> None:
    from rich.table import Table

    from prefect_work_clusters.tasks.report import RunReport

    assert isinstance(report, RunReport)
    table = Table(title=f"plan {report.plan}")
    inv = report.investigation
    for col in ("cluster", "status", "attempts", "duration (s)", "findings" if inv else "merge"):
        table.add_column(col)
    merges: dict[str, str] = {s.cluster: s.status for s in (report.integration.steps if report.integration else [])}
    merges.update({d.cluster: f"{d.count} ({d.status})" for d in (inv.documents if inv else [])})
    for c in report.clusters:
        table.add_row(c.cluster, c.status + (" (resumed)" if c.resumed else ""), str(c.attempts),
                      f"{c.duration:.1f}", merges.get(c.cluster, "-"))
    out.print(table)
    integ = report.integration
    if integ and integ.instructions:
        out.print(integ.instructions)
    for lost in integ.lost if integ else []:
        out.print(f"[red]lost[/red]: {lost.lost_count} line(s) of {lost.cluster} in "
                  + ", ".join(f.path for f in lost.lost) + " (see the report's Survival section)")
    if report.land:
        out.print(report.land.message, markup=False)
    if inv:
        verdict = "[green]findings synthesized[/green]" if report.ok else "[red]investigation not complete[/red]"
        out.print(f"{verdict}; {len(inv.findings)} typed findings; action plan: {inv.action_plan.file}")
    else:
        verdict = "[green]integrated and verified[/green]" if report.ok else "[red]not integrated[/red]"
        out.print(f"{verdict}; final commit {integ.final_sha if integ and integ.final_sha else '-'}")
    out.print(f"report: {runs_dir / 'merge-report.md'} (and report.json)")


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="Keep the demo's temp dir.")] = True,
    investigation: Annotated[bool, typer.Option(
        "--investigation", help="The investigation example instead: a slow report, three investigators, "
                                "a synthesis and the emitted build plan.")] = False,
) -> None:
    """Build a small example repo in a temp dir and run the whole flow on it with a scripted agent."""
    from prefect_work_clusters.flows.demo.build import build_demo_repo, scripted_agent_cmd

    if investigation:
        return _demo_investigation()
    dest = Path(tempfile.mkdtemp(prefix="work-clusters-demo-"))
    repo, plan = build_demo_repo(dest)
    err.print(f"demo repo: {repo}\n"
              "The agent in this demo is SCRIPTED: a small program that writes prepared code for each\n"
              "cluster, not an LLM. To run the same plan with a real agent:\n"
              f"  work-clusters run {plan} --repo {repo} --agent claude   (or codex, aider, --agent-cmd ...)\n")
    from prefect_work_clusters.tasks.context import default_workspace
    from prefect_work_clusters.tasks.options import RunOptions

    _execute(str(plan), str(repo), RunOptions(agent_cmd=scripted_agent_cmd()),
             default_workspace(repo, "auth-system") / ".runs")


def _demo_investigation() -> None:
    from prefect_work_clusters.flows.examples.perf_investigation.build import build_example_repo
    from prefect_work_clusters.tasks.identify import resolve_run
    from prefect_work_clusters.tasks.options import RunOptions

    dest = Path(tempfile.mkdtemp(prefix="work-clusters-investigation-"))
    repo, plan = build_example_repo(dest)
    err.print(f"example repo: {repo}\n"
              "Its investigation agents are SCRIPTED: small programs that run real tools on the repo (cProfile,\n"
              "SQLite's EXPLAIN QUERY PLAN, gzip) and write what they measured as findings; the synthesis is\n"
              "scripted too, not an LLM. To investigate with a real agent:\n"
              f"  work-clusters run {plan} --repo {repo} --agent claude --integration-agent claude --rerun\n")
    ctx = resolve_run(plan, repo)
    target = dest / f"{ctx.plan.name}-fixes.yaml"
    _execute(str(plan), str(repo), RunOptions(), ctx.runs_dir, after=lambda: _emit(ctx, target))


@app.command("emit-plan")
def emit_plan_command(
    plan: PlanArg,
    output: Annotated[Path, typer.Argument(help="Where to write the build plan (.yaml or .yml).")],
    repo: RepoOpt = Path("."),
    workspace: Annotated[Path | None, typer.Option(help="The workspace of the run, if not the default.")] = None,
) -> None:
    """Write the build plan of an earlier investigation run's proposed fixes, from its findings."""
    from prefect_work_clusters.tasks.identify import resolve_run
    from prefect_work_clusters.tasks.options import RunOptions

    options = RunOptions(workspace=str(workspace.resolve()) if workspace else None)
    ctx = resolve_run(plan, repo, options, relative_to=Path.cwd(), agents_needed=False)
    _emit_target(ctx, output)
    _emit(ctx, output)


@app.command()
def integrate(
    plan: PlanArg,
    repo: RepoOpt = Path("."),
    integration_agent: Annotated[str | None, typer.Option(help="Agent for the integration role.")] = None,
    integration_agent_cmd: Annotated[str | None, typer.Option(help="Integration agent command line.")] = None,
    land: Annotated[bool, typer.Option(help="Fast-forward the base branch when all is green.")] = False,
) -> None:
    """Re-run only the integration from the cluster branches an earlier run recorded."""
    from prefect_work_clusters.flows.startup import patient_server
    from prefect_work_clusters.flows.work_clusters import integrate_clusters
    from prefect_work_clusters.tasks.identify import resolve_run
    from prefect_work_clusters.tasks.options import RunOptions
    from prefect_work_clusters.tasks.recovery import run_lock
    from prefect_work_clusters.tasks.worktrees import recorded

    options = RunOptions.pick(locals())
    ctx = resolve_run(plan, repo, options, relative_to=Path.cwd(), agents_needed=False)
    global _runs_dir
    _runs_dir = ctx.runs_dir
    with run_lock(ctx, share=True):
        recorded(ctx)  # fail fast, before Prefect starts, when there is nothing to integrate
        since = datetime.now(timezone.utc)
        with patient_server():
            state = integrate_clusters(plan=str(ctx.plan_file), repo=str(ctx.repo), return_state=True,
                                       **options.flow_parameters())
        _report_outcome(ctx.runs_dir, since, state.message)


@app.command()
def status(plan: PlanArg, repo: RepoOpt = Path(".")) -> None:
    """Show the plan's clusters, branches, worktrees and the last result."""
    from prefect_work_clusters.flows.housekeeping import status_table

    out.print(status_table(plan, repo))


@app.command()
def clean(
    plan: PlanArg,
    repo: RepoOpt = Path("."),
    branches: Annotated[bool, typer.Option("--branches", help="Also delete the plan's branches.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Delete branches even with unmerged commits.")] = False,
) -> None:
    """Remove the plan's worktrees (and, with --branches, its branches); nothing else."""
    from prefect_work_clusters.flows.housekeeping import clean_plan

    for line in clean_plan(plan, repo, branches=branches, force=force):
        out.print(line)


def main() -> None:
    """Entry point: every failure becomes one clear line and an exit status."""
    try:
        app()
    except BadInput as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(exc.exit_code)
    except (WorkClustersError, GitError) as exc:
        err.print(f"error: {exc}", highlight=False, markup=False)
        sys.exit(getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(interrupt.EXIT_CODE)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no bare traceback for users
        log = _crash_log(traceback.format_exc())
        err.print(f"internal error: {exc.__class__.__name__}: {exc} (traceback in {log}; please report it)",
                  highlight=False, markup=False)
        sys.exit(3)


def _crash_log(text: str) -> Path:
    """The traceback, kept in the run's .runs/ folder when there is one, else in a private temp
    file of its own (never a fixed shared path that other runs overwrite)."""
    if _runs_dir is not None and _runs_dir.is_dir():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = _runs_dir / f"crash-{stamp}-{os.getpid()}.log"
        path.write_text(text)
        return path
    fd, name = tempfile.mkstemp(prefix="work-clusters-crash-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return Path(name)


if __name__ == "__main__":
    main()
