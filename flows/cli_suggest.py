"""``work-clusters suggest``: a plan proposed from the code (its imports, what changes together,
folders and CODEOWNERS), or written by a planner agent for a goal from that measured proposal."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from prefect_work_clusters.flows.cli_shared import RepoOpt, fail, out, say
from prefect_work_clusters.tasks.errors import BadInput, WorkClustersError

if TYPE_CHECKING:
    from prefect_work_clusters.tasks.plan.models import AgentRef
    from prefect_work_clusters.tasks.suggest.propose import Suggestion


def suggest(
    repo: RepoOpt = Path("."),
    goal: Annotated[str | None, typer.Option(help="What the agents should build; names the plan.")] = None,
    clusters: Annotated[int | None, typer.Option(min=2, help="How many clusters (default: as many as the "
                                                 "code has distinct pieces, at most 6).")] = None,
    paths: Annotated[list[str] | None, typer.Option("--paths", help="Only these files (globs; repeatable).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the plan here (YAML).")] = None,
    agent: Annotated[str | None, typer.Option(help="A planner agent (preset or saved block) that writes "
                                              "the plan for --goal from the measured suggestion.")] = None,
    agent_cmd: Annotated[str | None, typer.Option(help="Planner agent command line (split as a shell would).")] = None,
) -> None:
    """Propose a plan from the code: its imports, what changes together, folders and CODEOWNERS."""
    from prefect_work_clusters.tasks.git import core as gitops
    from prefect_work_clusters.tasks.plan.load import load_plan
    from prefect_work_clusters.tasks.resolve import agent_ref
    from prefect_work_clusters.tasks.suggest.propose import suggest as propose

    root = repo.resolve()
    if not gitops.is_git_repo(root):
        raise BadInput(f"{root} is not a git repository; pass --repo with the repository to split")
    if output is not None and output.suffix not in (".yaml", ".yml"):
        raise BadInput(f"--output {output}: a suggested plan is YAML; give a file name ending in .yaml or .yml")
    planner = agent_ref(agent, agent_cmd, "--agent")
    if planner is not None and not goal:
        raise BadInput("a planner agent plans for a goal: pass --goal with what the agents should build")
    root = gitops.toplevel(root)
    with tempfile.TemporaryDirectory(prefix="work-clusters-suggest-") as work:
        found = propose(root, Path(work), goal=goal, clusters=clusters, globs=paths or ())
        if planner is not None and goal:
            if found.plan is None:  # the planner still starts from the closest measured split
                found = propose(root, Path(work), goal=goal, clusters=clusters or 2, globs=paths or ())
            return _plan_with_agent(root, goal, planner, found, Path(work), output)
        if found.plan is None:
            for line in found.fit.lines() + found.notes:
                say(line)
            fail("not split: the code does not fall into distinct pieces here; run the task with one "
                 "agent, or pass --clusters N to force a split", 1)
        text = found.yaml()
        draft = Path(work) / "suggested.yaml"
        draft.write_text(text)
        load_plan(draft, root)  # what we propose, validate accepts; else nothing is written
        if output is not None:
            output.write_text(text)
    if output is None:
        out.print(text, markup=False, highlight=False, end="")
        return
    for line in found.fit.lines():
        out.print(f"  {line}", markup=False, highlight=False)
    out.print(f"plan: {output} ({len(found.plan['clusters'])} clusters)\n"
              f"  next: work-clusters validate {output} --repo {root}", markup=False, highlight=False)


def _plan_with_agent(repo: Path, goal: str, ref: AgentRef, found: Suggestion, work: Path,
                     output: Path | None) -> None:
    """The planner role writes the plan; on success it goes where the measured one would."""
    from prefect_work_clusters.tasks.agents.registry import resolve_agent
    from prefect_work_clusters.tasks.suggest.planner import plan_with_agent

    draft = work / "suggested.yaml"
    draft.write_text(found.yaml())
    planned = plan_with_agent(repo, goal, resolve_agent(ref), found, draft,
                              on_line=lambda line: say(f"[planner] {line}"))
    for n, why in enumerate(planned.attempts, 1):
        say(f"planner attempt {n} refused: {why}")
    if planned.plan_file is None:
        raise WorkClustersError(f"the planner wrote no valid plan in {len(planned.attempts)} attempt(s); the "
                                "measured suggestion is what `work-clusters suggest` without --agent prints")
    text = planned.plan_file.read_text()
    if output is None:
        out.print(text, markup=False, highlight=False, end="")
        return
    output.write_text(text)
    out.print(f"plan: {output} (written by the planner, attempt {len(planned.attempts) + 1})\n"
              f"  next: work-clusters validate {output} --repo {repo}", markup=False, highlight=False)
