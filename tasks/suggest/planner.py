"""The planner role: an agent writes the plan for a goal, from the measured suggestion.

It runs like every other role (``tasks.agents.call.invoke``): ``WC_ROLE=planner``, its prompt from
``templates/planner.md.j2`` (the goal, a map of the repository, the measured suggestion with its
fit figures), and ``WC_PLAN_FILE``, where it writes the YAML plan. It works in a detached worktree
of HEAD beside the repository (never in the user's checkout), removed afterwards; what it changes
there is not kept. Its plan is validated as any plan is; a refused plan is retried with the
problems as feedback, within ``1 + retries`` attempts.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prefect_work_clusters.tasks.agents.call import Call, invoke, max_attempts
from prefect_work_clusters.tasks.agents.prompts import PROMPTS
from prefect_work_clusters.tasks.agents.registry import AgentBackend
from prefect_work_clusters.tasks.context import RunContext, default_workspace
from prefect_work_clusters.tasks.errors import PlanError, WorkClustersError
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.plan.load import load_plan
from prefect_work_clusters.tasks.suggest.grouping import unit_of
from prefect_work_clusters.tasks.suggest.propose import Suggestion

ROLE = "planner"
MAP_LINES = 60


@dataclass
class Planned:
    plan_file: Path | None  # the accepted plan, or None
    attempts: list[str] = field(default_factory=list)  # why each refused attempt was refused


def repo_map(suggestion: Suggestion) -> str:
    """The repository's units with their file counts, largest first: what the planner splits."""
    base = suggestion.units.base
    counts = Counter(unit_of(f, base) or f for f in suggestion.signals.files)
    lines = [f"- `{unit}`: {n} file{'s' if n != 1 else ''}" for unit, n in counts.most_common(MAP_LINES)]
    more = len(counts) - MAP_LINES
    return "\n".join(lines + ([f"- … and {more} more"] if more > 0 else []))


def plan_with_agent(repo: Path, goal: str, backend: AgentBackend, suggestion: Suggestion, draft: Path,
                    on_line: Callable[[str], None] | None = None) -> Planned:
    """Let ``backend`` write the plan; ``draft`` is the measured suggestion's file (a valid plan,
    which names the run's workspace and logs)."""
    stand_in = load_plan(draft, repo)
    ws = default_workspace(repo, stand_in.name)
    ctx = RunContext(plan=stand_in, plan_file=draft, repo=repo, workspace=ws)
    wt = ws / ROLE
    if wt.exists():
        raise WorkClustersError(f"{wt} exists from an earlier planner run; remove it "
                                f"(git worktree remove --force {wt}) and run suggest again")
    with gitworktrees.worktree_lock(repo):
        gitops.run(repo, "worktree", "add", "-q", "--detach", str(wt), "HEAD")
    plan_file = ctx.runs_dir / "planner" / f"{stand_in.name}.yaml"
    plan_file.parent.mkdir(parents=True, exist_ok=True)
    planned, feedback = Planned(None), ""
    try:
        for attempt in range(1, max_attempts(ctx, backend) + 1):
            plan_file.unlink(missing_ok=True)
            prompt = PROMPTS.get_template("planner.md.j2").render(
                goal=goal, name=stand_in.name, plan_file=str(plan_file), feedback=feedback,
                repo_map=repo_map(suggestion), suggestion=suggestion.yaml().rstrip())
            call = Call(role=ROLE, name=ROLE, label=ROLE, worktree=wt, branch="HEAD", attempt=attempt, owned=[],
                        extra_env={"WC_PLAN_FILE": str(plan_file)}, hint="install it, or pass --agent / --agent-cmd")
            res, _usage = invoke(ctx, backend, call, prompt, feedback,
                                 backend.timeout_seconds or ctx.plan.limits.timeout_seconds, on_line)
            why = _refusal(res.exit_code, res.timed_out, plan_file, repo)
            if why is None:
                planned.plan_file = plan_file
                return planned
            planned.attempts.append(why)
            feedback = f"Attempt {attempt} was refused: {why}"
    finally:
        gitworktrees.remove_worktree(repo, wt, force=True)
        shutil.rmtree(wt, ignore_errors=True)
    return planned


def _refusal(exit_code: int | None, timed_out: bool, plan_file: Path, repo: Path) -> str | None:
    if timed_out:
        return "the planner ran past its timeout and was killed"
    if exit_code != 0:
        return f"the planner exited with status {exit_code}"
    if not plan_file.is_file():
        return f"the planner exited 0 but wrote no plan to {plan_file}"
    try:
        load_plan(plan_file, repo)
    except PlanError as exc:
        return str(exc)
    return None


def plan_for_goal(repo: Path, goal: str, backend: AgentBackend | None, workspace: Path | None,
                  on_line: Callable[[str], None] | None = None) -> Path:
    """A plan for ``goal``, written where the run's records go: by the planner agent when there is
    one (from the measured suggestion), else the measured suggestion itself. Raises when there is
    no plan to run (the code is one piece and no agent planned it, or the planner never wrote a
    valid one)."""
    from prefect_work_clusters.tasks.suggest.propose import suggest

    with tempfile.TemporaryDirectory(prefix="work-clusters-suggest-") as tmp:
        found = suggest(repo, Path(tmp), goal=goal)
        if found.plan is None and backend is None:
            raise WorkClustersError(f"no plan for the goal: {found.fit.verdict()}; write a plan by hand, or pass "
                                    "an agent to plan it")
        if found.plan is None:
            found = suggest(repo, Path(tmp), goal=goal, clusters=2)
        assert found.plan is not None
        ws = workspace or default_workspace(repo, found.plan["name"])
        target = ws / ".runs" / "goal" / f"{found.plan['name']}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(found.yaml())
        if backend is None:
            return target
        planned = plan_with_agent(repo, goal, backend, found, target, on_line)
    if planned.plan_file is None:
        raise WorkClustersError("the planner wrote no valid plan in "
                                f"{len(planned.attempts)} attempt(s): {planned.attempts[-1]}")
    name = load_plan(planned.plan_file, repo).name  # the planner may have named it otherwise
    final = (workspace or default_workspace(repo, name)) / ".runs" / "goal" / f"{name}.yaml"
    final.parent.mkdir(parents=True, exist_ok=True)
    final.write_text(planned.plan_file.read_text())
    return final
