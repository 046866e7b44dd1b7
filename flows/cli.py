"""The ``work-clusters`` command line, thin over the plan module and the flows.

Exit status: 0 integrated and verified (or the command did what it says), 1 a run that did not
integrate or an expected failure, 2 bad input (nothing created), 3 an internal error or Prefect
unavailable, 75 refused because a run of the plan is in progress, 130 interrupted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

# The temporary local server must not try to phone home from machines without a network.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import typer  # noqa: E402

from prefect_work_clusters.flows.cli_review import approve  # noqa: E402
from prefect_work_clusters.flows.cli_shared import (  # noqa: E402
    CredentialsOpt,
    PlanArg,
    RemoteRepoOpt,
    RepoOpt,
    VerboseOpt,
    WorkspaceOpt,
    app,
    err,
    fail,
    out,
    say,
)
from prefect_work_clusters.flows.cli_suggest import suggest  # noqa: E402
from prefect_work_clusters.tasks.errors import BadInput, WorkClustersError  # noqa: E402
from prefect_work_clusters.tasks.git.core import GitError  # noqa: E402
from prefect_work_clusters.tasks.proc import interrupt  # noqa: E402

if TYPE_CHECKING:
    from prefect_work_clusters.tasks.context import RunContext
    from prefect_work_clusters.tasks.options import RunOptions

# The .runs/ folder of the run this process works on, once known: where a crash's traceback goes.
_runs_dir: Path | None = None


class Interrupted(WorkClustersError):
    """The run was stopped by SIGINT or SIGTERM; its report says where."""

    exit_code = interrupt.EXIT_CODE


@app.command()
def validate(plan: PlanArg, repo: RepoOpt = Path(".")) -> None:
    """Parse and validate a plan; print its cluster tree and how well it fits the pattern."""
    from prefect_work_clusters.tasks.plan.load import load_plan
    from prefect_work_clusters.tasks.plan.view import fit_assessment, render_tree
    from prefect_work_clusters.tasks.suggest.propose import plan_fit

    loaded = load_plan(plan.resolve(), repo.resolve())
    out.print(render_tree(loaded))
    out.print()
    for line in fit_assessment(loaded):
        out.print(f"  {line}")
    out.print("\nmeasured on the code and its history:")
    for line in _measured(lambda work: plan_fit(loaded, repo.resolve(), work).lines()):
        out.print(f"  {line}", markup=False)
    out.print(f"\n[green]valid[/green]: {plan}")


def _measured(figures: Callable[[Path], list[str]]) -> list[str]:
    """``figures`` computed in a scratch folder of their own (grimp's output), removed after."""
    with tempfile.TemporaryDirectory(prefix="work-clusters-measure-") as work:
        return figures(Path(work))


app.command()(suggest)  # commands of their own modules, in the order the help lists them


@app.command()
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
    from prefect_work_clusters.tasks.identify import resolve_any
    from prefect_work_clusters.tasks.recovery import run_lock

    options = _options(locals())
    if (plan is None) == (goal is None):
        raise BadInput("give a plan file or --goal (not both): what to run, or what to plan and run")
    if plan is None:
        plan = _plan_for_goal(Path(repo), goal or "", options)
    # Validate before Prefect starts: bad input costs no server start and creates nothing (a remote
    # is cloned here already: the flow fetches into the same clone).
    ctx = resolve_any(plan, repo, options, relative_to=Path.cwd())
    if emit_plan:
        _emit_target(ctx, emit_plan)
    with run_lock(ctx, share=True):  # a second run is refused before Prefect starts
        _execute(str(ctx.plan_file), ctx.remote or str(ctx.repo), options, ctx.runs_dir,
                 after=(lambda: _emit(ctx, emit_plan)) if emit_plan else None, goal=goal, verbose=verbose)


def _options(values: dict[str, object]) -> RunOptions:
    """A command's options; ``--workspace`` as an absolute path (the flow may run elsewhere)."""
    from prefect_work_clusters.tasks.options import RunOptions

    workspace = values.get("workspace")
    return RunOptions.pick({**values, "workspace": str(workspace.resolve()) if isinstance(workspace, Path) else None})


def _plan_for_goal(repo: Path, goal: str, options: RunOptions) -> Path:
    """The plan for ``goal``, made before Prefect starts; the planner's output on stderr."""
    from prefect_work_clusters.tasks.identify import plan_goal

    path = plan_goal(repo, goal, options,
                     on_line=lambda line: say(f"[planner] {line}"))
    say(f"plan for the goal: {path}")
    return path


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
             after: Callable[[], None] | None = None, goal: str | None = None, verbose: bool = False) -> None:
    from prefect_work_clusters.flows.startup import patient_server, start_server

    start_server()  # it boots on the other core while the flow's modules load (flows/startup.py)
    from prefect_work_clusters.flows.live import hide_prefect_console, live_view
    from prefect_work_clusters.flows.work_clusters import work_clusters

    global _runs_dir
    _runs_dir = runs_dir
    err.print(f"[bold]work-clusters[/bold]: running {plan}"
              + (" (Prefect logs follow)" if verbose else " (Prefect's log lines: --verbose, or the Prefect UI)"))
    interrupt.install(say)
    since = datetime.now(timezone.utc)
    if not verbose:
        hide_prefect_console()
    with patient_server(say=lambda line: say(line)), live_view(err):
        state = work_clusters(plan=plan, repo=repo, goal=goal or "", return_state=True, **options.flow_parameters())
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
    from prefect_work_clusters.flows.summary import print_summary

    print_summary(out, report, runs_dir)
    if interrupt.requested():
        raise Interrupted(f"interrupted; every agent was stopped; report: {runs_dir / 'merge-report.md'}; "
                          "run the plan again to resume")
    if after:
        after()
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    keep: Annotated[bool, typer.Option(help="Keep the demo's temp dir.")] = True,
    investigation: Annotated[bool, typer.Option(
        "--investigation", help="The investigation example instead: a slow report, three investigators, "
                                "a synthesis and the emitted build plan.")] = False,
    typescript: Annotated[bool, typer.Option(
        "--typescript", help="The pattern's own example in TypeScript: its contract checked by tsc, "
                             "its tests run by node.")] = False,
    fail: Annotated[bool, typer.Option(
        "--fail", help="Make the frontend cluster's agent fail, to see a failed run end to end.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Build a small example repo in a temp dir and run the whole flow on it with a scripted agent."""
    from prefect_work_clusters.flows.demo.build import build_demo_repo, scripted_agent_cmd

    if investigation:
        return _demo_investigation(verbose)
    if typescript:
        missing = [tool for tool in ("tsc", "node") if shutil.which(tool) is None]
        if missing:
            raise BadInput(f"demo --typescript needs {' and '.join(missing)} on PATH: install Node.js, then "
                           "`npm install -g typescript`")
    dest = Path(tempfile.mkdtemp(prefix="work-clusters-demo-"))
    repo, plan = build_demo_repo(dest, typescript=typescript)
    err.print(f"demo repo: {repo}\n"
              "The agent in this demo is SCRIPTED: a small program that writes prepared code for each\n"
              "cluster, not an LLM. To run the same plan with a real agent:\n"
              f"  work-clusters run {plan} --repo {repo} --agent claude   (or codex, aider, --agent-cmd ...)\n")
    from prefect_work_clusters.tasks.context import default_workspace
    from prefect_work_clusters.tasks.options import RunOptions

    _execute(str(plan), str(repo), RunOptions(agent_cmd=scripted_agent_cmd("frontend" if fail else None)),
             default_workspace(repo, "auth-system") / ".runs", verbose=verbose)


def _demo_investigation(verbose: bool) -> None:
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
    _execute(str(plan), str(repo), RunOptions(), ctx.runs_dir, after=lambda: _emit(ctx, target), verbose=verbose)


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
    repo: RemoteRepoOpt = ".",
    workspace: WorkspaceOpt = None,
    credentials: CredentialsOpt = None,
    integration_agent: Annotated[str | None, typer.Option(help="Agent for the integration role.")] = None,
    integration_agent_cmd: Annotated[str | None, typer.Option(help="Integration agent command line.")] = None,
    land: Annotated[bool, typer.Option(help="Fast-forward the base branch when all is green.")] = False,
    approve: Annotated[bool, typer.Option(
        "--approve", help="Once integrated and verified, wait for `work-clusters approve` before landing.")] = False,
) -> None:
    """Re-run only the integration from the cluster branches an earlier run recorded."""
    from prefect_work_clusters.flows.startup import patient_server
    from prefect_work_clusters.flows.work_clusters import integrate_clusters
    from prefect_work_clusters.tasks.identify import resolve_any
    from prefect_work_clusters.tasks.recovery import run_lock
    from prefect_work_clusters.tasks.worktrees import recorded

    options = _options(locals())
    ctx = resolve_any(plan, repo, options, relative_to=Path.cwd(), agents_needed=False)
    global _runs_dir
    _runs_dir = ctx.runs_dir
    with run_lock(ctx, share=True):
        recorded(ctx)  # fail fast, before Prefect starts, when there is nothing to integrate
        since = datetime.now(timezone.utc)
        with patient_server(say=lambda line: say(line)):
            state = integrate_clusters(plan=str(ctx.plan_file), repo=ctx.remote or str(ctx.repo), return_state=True,
                                       **options.flow_parameters())
        _report_outcome(ctx.runs_dir, since, state.message)


app.command()(approve)


@app.command()
def status(plan: PlanArg, repo: RemoteRepoOpt = ".", workspace: WorkspaceOpt = None,
           credentials: CredentialsOpt = None) -> None:
    """Show the plan's clusters, branches, worktrees and the last result."""
    from prefect_work_clusters.flows.housekeeping import status_table

    out.print(status_table(plan, repo, _options(locals())))


@app.command()
def clean(
    plan: PlanArg,
    repo: RemoteRepoOpt = ".",
    workspace: WorkspaceOpt = None,
    credentials: CredentialsOpt = None,
    branches: Annotated[bool, typer.Option("--branches", help="Also delete the plan's branches.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Delete branches even with unmerged commits.")] = False,
) -> None:
    """Remove the plan's worktrees (and, with --branches, its branches); nothing else."""
    from prefect_work_clusters.flows.housekeeping import clean_plan

    for line in clean_plan(plan, repo, branches=branches, force=force, options=_options(locals())):
        out.print(line)


def main() -> None:
    """Entry point: every failure becomes one clear line and an exit status."""
    try:
        app()
    except BadInput as exc:
        fail(f"error: {exc}", exc.exit_code)
    except (WorkClustersError, GitError) as exc:
        fail(f"error: {exc}", getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        fail("interrupted", interrupt.EXIT_CODE)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no bare traceback for users
        log = _crash_log(traceback.format_exc())
        fail(f"internal error: {exc.__class__.__name__}: {exc} (traceback in {log}; please report it)", 3)


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
