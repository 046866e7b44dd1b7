"""``work-clusters run``: a plan (or a goal) checked before Prefect starts, then the flow, its
live view and its outcome as an exit status; what ``demo``, ``integrate`` and ``emit-plan`` share
with it."""

from __future__ import annotations

import gc
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from prefect_work_clusters.flows.cli_shared import (
    CredentialsOpt,
    RemoteRepoOpt,
    VerboseOpt,
    WorkspaceOpt,
    err,
    out,
    remember_runs_dir,
    say,
)
from prefect_work_clusters.tasks.errors import BadInput, WorkClustersError
from prefect_work_clusters.tasks.proc import interrupt

if TYPE_CHECKING:
    from prefect.client.schemas.objects import State

    from prefect_work_clusters.tasks.context import RunContext
    from prefect_work_clusters.tasks.options import RunOptions


class Interrupted(WorkClustersError):
    """The run was stopped by SIGINT or SIGTERM; its report says where."""

    exit_code = interrupt.EXIT_CODE


def run(
    plan: Annotated[Path | None, typer.Argument(
        help="Plan file (.yaml, .yml or .md), relative to the current directory; or give --goal.")] = None,
    repo: RemoteRepoOpt = ".",
    goal: Annotated[str | None, typer.Option(help="Instead of a plan: what to build; the plan is suggested "
                                             "from the code (and written by --agent as planner).")] = None,
    agent: Annotated[str | None, typer.Option(help="Agent preset or saved block for every role.")] = None,
    agent_cmd: Annotated[str | None, typer.Option(help="Agent command line (split as a shell would).")] = None,
    integration_agent: Annotated[str | None, typer.Option(help="Agent for the integration role.")] = None,
    integration_agent_cmd: Annotated[str | None, typer.Option(help="Integration agent command line.")] = None,
    base: Annotated[str | None, typer.Option(help="Ref the clusters start from.")] = None,
    workspace: WorkspaceOpt = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Agents running at once.")] = None,
    timeout: Annotated[float | None, typer.Option(min=0.001, help="Seconds per agent attempt.")] = None,
    retries: Annotated[int | None, typer.Option(min=0, help="Further attempts after a failed one.")] = None,
    land: Annotated[bool, typer.Option(help="Fast-forward the base branch when all is green.")] = False,
    rerun: Annotated[bool, typer.Option(help="Run finished clusters' agents again.")] = False,
    keep_worktrees: Annotated[bool, typer.Option(help="Keep cluster worktrees after the run.")] = True,
    sandbox: Annotated[bool, typer.Option(
        "--sandbox", help="Run agents and verify/setup commands under bubblewrap (needs bwrap).")] = False,
    emit_plan: Annotated[Path | None, typer.Option(
        "--emit-plan", help="Investigations: write the build plan (YAML) of the proposed fixes to this file.")] = None,
    dispatch: Annotated[str | None, typer.Option(
        help="With a remote --repo: run each cluster as a flow run of this deployment "
             "(e.g. work-clusters-cluster/cluster) on its work pool.")] = None,
    credentials: CredentialsOpt = None,
    approve: Annotated[bool, typer.Option(
        "--approve", help="Once integrated and verified, wait for `work-clusters approve` before landing.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the whole flow: worktrees, agents in parallel, contract check, integration, report."""
    from prefect_work_clusters.tasks.recovery import run_lock
    from prefect_work_clusters.tasks.resolve import resolve_any

    options = options_of(locals())
    if (plan is None) == (goal is None):
        raise BadInput("give a plan file or --goal (not both): what to run, or what to plan and run")
    if plan is None:
        plan = _plan_for_goal(Path(repo), goal or "", options)
    # Validate before Prefect starts: bad input costs no server start and creates nothing (a remote
    # is cloned here already: the flow fetches into the same clone).
    ctx = resolve_any(plan, repo, options, relative_to=Path.cwd())
    if emit_plan:
        emit_target(ctx, emit_plan)
    with run_lock(ctx, share=True):  # a second run is refused before Prefect starts
        execute(str(ctx.plan_file), ctx.remote or str(ctx.repo), options, ctx.runs_dir, ahead=ctx,
                 after=(lambda: emit(ctx, emit_plan)) if emit_plan else None, goal=goal, verbose=verbose)


def options_of(values: dict[str, object]) -> RunOptions:
    """A command's options; ``--workspace`` as an absolute path (the flow may run elsewhere)."""
    from prefect_work_clusters.tasks.options import RunOptions

    workspace = values.get("workspace")
    return RunOptions.pick({**values, "workspace": str(workspace.resolve()) if isinstance(workspace, Path) else None})


def _plan_for_goal(repo: Path, goal: str, options: RunOptions) -> Path:
    """The plan for ``goal``, made before Prefect starts; the planner's output on stderr."""
    from prefect_work_clusters.tasks.resolve import plan_goal

    path = plan_goal(repo, goal, options,
                     on_line=lambda line: say(f"[planner] {line}"))
    say(f"plan for the goal: {path}")
    return path


def emit_target(ctx: RunContext, target: Path) -> None:
    if not ctx.plan.investigates:
        raise BadInput(f"--emit-plan: plan {ctx.plan.name} builds; only an investigation (kind: investigation) "
                       "has findings to turn into a build plan")
    if target.suffix not in (".yaml", ".yml"):
        raise BadInput(f"--emit-plan {target}: the build plan is YAML; give a file name ending in .yaml or .yml")


def emit(ctx: RunContext, target: Path) -> None:
    """Write the build plan of the findings' proposed fixes and say how to go on."""
    from prefect_work_clusters.tasks.investigation.fixes import emit_plan
    from prefect_work_clusters.tasks.investigation.synthesis import action_plan_file, recorded_findings

    emitted = emit_plan(ctx.plan, recorded_findings(ctx), ctx.repo, target.resolve(), action_plan_file(ctx))
    out.print(f"build plan: {emitted.path} ({len(emitted.clusters)} clusters: "
              + ", ".join(f"{name} ({', '.join(paths)})" for name, paths in emitted.clusters.items()) + ")")
    if emitted.left_out:
        out.print(f"  left out (no proposed fix or no paths): {', '.join(emitted.left_out)}")
    out.print(f"  next: work-clusters validate {emitted.path} --repo {ctx.repo}")


def execute(plan: str, repo: str, options: RunOptions, runs_dir: Path,
             after: Callable[[], None] | None = None, goal: str | None = None, verbose: bool = False,
             ahead: RunContext | None = None) -> None:
    """Run the flow in this process. ``ahead``: the run's context, checked, whose worktrees are
    begun before Prefect is even imported (``head_start.begin_ahead``), for the flow to adopt."""
    from prefect_work_clusters.tasks.head_start import begin_ahead, settle_ahead

    if ahead is not None:  # before Prefect is imported, which takes ~2 s of one core (tasks/head_start.py)
        begin_ahead(ahead)
    try:
        state, since = _run_flow(plan, repo, options, runs_dir, goal, verbose)
    finally:
        if ahead is not None:  # whatever ended the run (a server that never came up, an interrupt), a
            settle_ahead(ahead)  # head start no flow adopted ends before the run lock is let go
    report_outcome(runs_dir, since, state.message, after)


def _run_flow(plan: str, repo: str, options: RunOptions, runs_dir: Path, goal: str | None,
              verbose: bool) -> tuple[State[Any], datetime]:
    """Prefect started, the flow run in this process: its final state, and when it began."""
    from prefect_work_clusters.flows.startup import patient_server, start_server

    start_server()  # it boots on the other core while the flow's modules load (flows/startup.py)
    from prefect_work_clusters.flows.live import hide_prefect_console, live_view
    from prefect_work_clusters.flows.work_clusters import work_clusters

    # What the imports made lives as long as the process: out of the collector's way, a full
    # collection walks only what the run makes (they took ~2% of a 100-cluster run's CPU).
    gc.freeze()
    remember_runs_dir(runs_dir)
    err.print(f"[bold]work-clusters[/bold]: running {plan}"
              + (" (Prefect logs follow)" if verbose else " (Prefect's log lines: --verbose, or the Prefect UI)"))
    interrupt.install(say)
    since = datetime.now(timezone.utc)
    if not verbose:
        hide_prefect_console()
    with patient_server(say=lambda line: say(line)), live_view(err):
        state = work_clusters(plan=plan, repo=repo, goal=goal or "", return_state=True,
                              **options.flow_parameters())
    return state, since


def report_outcome(runs_dir: Path, since: datetime, message: str | None,
                    after: Callable[[], None] | None = None) -> None:
    from prefect_work_clusters.tasks.report import RunReport

    report_file = runs_dir / "report.json"
    report = RunReport.model_validate_json(report_file.read_text()) if report_file.exists() else None
    if report is None or report.started_at < since:
        if interrupt.requested():
            raise Interrupted(f"interrupted before the run wrote its report: {message}")
        raise WorkClustersError(f"the run stopped before writing its report: {message}")
    from prefect_work_clusters.flows.summary import print_summary

    print_summary(out, report, runs_dir)
    if interrupt.requested():
        raise Interrupted(f"interrupted; every agent was stopped; report: {runs_dir / 'merge-report.md'}; "
                          "run the plan again to resume")
    if after:
        after()
    if not report.ok:
        raise typer.Exit(1)
