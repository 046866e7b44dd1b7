"""The ``work-clusters`` command line, thin over the plan module and the flows.

Exit status: 0 integrated and verified (or the command did what it says), 1 a run that did not
integrate or an expected failure, 2 bad input (nothing created), 3 an internal error or Prefect
unavailable, 75 refused because a run of the plan is in progress, 130 interrupted.
"""

from __future__ import annotations

import os
import shutil
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

from prefect_work_clusters.flows.cli_review import approve  # noqa: E402
from prefect_work_clusters.flows.cli_run import emit, emit_target, execute, options_of, report_outcome, run  # noqa: E402
from prefect_work_clusters.flows.cli_shared import (  # noqa: E402
    CredentialsOpt,
    PlanArg,
    RemoteRepoOpt,
    RepoOpt,
    VerboseOpt,
    WorkspaceOpt,
    app,
    crash_log,
    err,
    fail,
    out,
    remember_runs_dir,
    say,
)
from prefect_work_clusters.flows.cli_suggest import suggest  # noqa: E402
from prefect_work_clusters.flows.startup import boot_ahead  # noqa: E402
from prefect_work_clusters.tasks.errors import BadInput, WorkClustersError  # noqa: E402
from prefect_work_clusters.tasks.git.core import GitError  # noqa: E402
from prefect_work_clusters.tasks.proc import interrupt  # noqa: E402

if TYPE_CHECKING:
    pass

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


app.command()(run)


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

    execute(str(plan), str(repo), RunOptions(agent_cmd=scripted_agent_cmd("frontend" if fail else None)),
             default_workspace(repo, "auth-system") / ".runs", verbose=verbose)


def _demo_investigation(verbose: bool) -> None:
    from prefect_work_clusters.flows.examples.perf_investigation.build import build_example_repo
    from prefect_work_clusters.tasks.options import RunOptions
    from prefect_work_clusters.tasks.resolve import resolve_run

    dest = Path(tempfile.mkdtemp(prefix="work-clusters-investigation-"))
    repo, plan = build_example_repo(dest)
    err.print(f"example repo: {repo}\n"
              "Its investigation agents are SCRIPTED: small programs that run real tools on the repo (cProfile,\n"
              "SQLite's EXPLAIN QUERY PLAN, gzip) and write what they measured as findings; the synthesis is\n"
              "scripted too, not an LLM. To investigate with a real agent:\n"
              f"  work-clusters run {plan} --repo {repo} --agent claude --integration-agent claude --rerun\n")
    ctx = resolve_run(plan, repo)
    target = dest / f"{ctx.plan.name}-fixes.yaml"
    execute(str(plan), str(repo), RunOptions(), ctx.runs_dir, after=lambda: emit(ctx, target), verbose=verbose)


@app.command("emit-plan")
def emit_plan_command(
    plan: PlanArg,
    output: Annotated[Path, typer.Argument(help="Where to write the build plan (.yaml or .yml).")],
    repo: RepoOpt = Path("."),
    workspace: Annotated[Path | None, typer.Option(help="The workspace of the run, if not the default.")] = None,
) -> None:
    """Write the build plan of an earlier investigation run's proposed fixes, from its findings."""
    from prefect_work_clusters.tasks.options import RunOptions
    from prefect_work_clusters.tasks.resolve import resolve_run

    options = RunOptions(workspace=str(workspace.resolve()) if workspace else None)
    ctx = resolve_run(plan, repo, options, relative_to=Path.cwd(), agents_needed=False)
    emit_target(ctx, output)
    emit(ctx, output)


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
    from prefect_work_clusters.flows.startup import patient_server, start_server
    from prefect_work_clusters.flows.work_clusters import integrate_clusters
    from prefect_work_clusters.tasks.recovery import run_lock
    from prefect_work_clusters.tasks.resolve import resolve_any
    from prefect_work_clusters.tasks.worktrees import recorded

    options = options_of(locals())
    ctx = resolve_any(plan, repo, options, relative_to=Path.cwd(), agents_needed=False)
    remember_runs_dir(ctx.runs_dir)
    with run_lock(ctx, share=True):
        recorded(ctx)  # fail fast, before Prefect starts, when there is nothing to integrate
        start_server()
        since = datetime.now(timezone.utc)
        with patient_server(say=lambda line: say(line)):
            state = integrate_clusters(plan=str(ctx.plan_file), repo=ctx.remote or str(ctx.repo), return_state=True,
                                       **options.flow_parameters())
        report_outcome(ctx.runs_dir, since, state.message)


app.command()(approve)


@app.command()
def status(plan: PlanArg, repo: RemoteRepoOpt = ".", workspace: WorkspaceOpt = None,
           credentials: CredentialsOpt = None) -> None:
    """Show the plan's clusters, branches, worktrees and the last result."""
    from prefect_work_clusters.flows.housekeeping import status_table

    out.print(status_table(plan, repo, options_of(locals())))


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

    for line in clean_plan(plan, repo, branches=branches, force=force, options=options_of(locals())):
        out.print(line)


def main() -> None:
    """Entry point: every failure becomes one clear line and an exit status."""
    boot_ahead(sys.argv[1:])  # a run's temporary server boots while the input is checked (flows/startup.py)
    try:
        app()
    except BadInput as exc:
        fail(f"error: {exc}", exc.exit_code)
    except (WorkClustersError, GitError) as exc:
        fail(f"error: {exc}", getattr(exc, "exit_code", 1))
    except KeyboardInterrupt:
        fail("interrupted", interrupt.EXIT_CODE)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: no bare traceback for users
        log = crash_log(traceback.format_exc())
        fail(f"internal error: {exc.__class__.__name__}: {exc} (traceback in {log}; please report it)", 3)


if __name__ == "__main__":
    main()
