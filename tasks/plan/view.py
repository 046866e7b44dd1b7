"""The plan as people read it: the seed's cluster tree, and how well the plan fits the pattern."""

from __future__ import annotations

from rich.text import Text
from rich.tree import Tree

from prefect_work_clusters.tasks.plan.models import Cluster, Plan


def _title(name: str) -> str:
    return name.replace("-", " ").title()


def _cluster_label(number: int, cluster: Cluster) -> Text:
    # Text, not markup: a glob such as "src/[ab]*/" must not be read as a rich style.
    label = Text(f"Cluster {number}: {_title(cluster.name)} ({', '.join(cluster.paths)})")
    notes: list[str] = [cluster.kind] if cluster.kind != "build" else []
    notes += [f"after {', '.join(cluster.depends_on)}"] if cluster.depends_on else []
    if notes:
        label.append(f"  [{'; '.join(notes)}]", style="dim")
    return label


def render_tree(plan: Plan) -> Tree:
    """The plan in the seed's shape::

        Orchestrator: "Build auth system"
        ├── Cluster 1: Backend (auth_api/)
        │   ├── API routes: /login, /register, /me
        │   └── JWT token handling
        └── Integration Agent: merge branches, resolve conflicts, verify
            └── verify: pytest -q
    """
    tree = Tree(Text(f'Orchestrator: "{plan.goal or plan.name}"', style="bold"))
    for number, cluster in enumerate(plan.clusters, start=1):
        branch = tree.add(_cluster_label(number, cluster))
        for task in cluster.tasks:
            branch.add(Text(task))
        for command in cluster.verify:
            branch.add(Text(f"verify: {command}", style="dim"))
    role = ("synthesize findings, prioritize fixes, create action plan" if plan.investigates  # the seed's wording
            else "merge branches, resolve conflicts, verify")
    integration = tree.add(Text(f"Integration Agent: {role}", style="bold"))
    for command in plan.integration.verify:
        integration.add(Text(f"verify: {command}"))
    if plan.integration.land:
        integration.add(Text(f"land: fast-forward {plan.base or 'HEAD'} when all is green"))
    return tree


def fit_assessment(plan: Plan) -> list[str]:
    """Short lines on how well the plan fits the pattern, after the seed's "When to Use"."""
    count = len(plan.clusters)
    lines = [
        f"{count} clusters: a good fit (3 or more semantically distinct pieces)" if count >= 3 else
        f"{count} clusters: borderline; the pattern pays off from 3 distinct pieces, "
        "below that the integration overhead may outweigh the parallel work",
        "Boundaries are clear: no owned path overlaps another cluster's (checked when the plan loaded)",
    ]
    for cluster in plan.clusters:
        if not cluster.tasks:
            lines.append(f"Cluster {cluster.name!r} lists no tasks: its agent has only the goal to go on")
        elif len(cluster.tasks) == 1:
            lines.append(f"Cluster {cluster.name!r} has a single task: it may be smaller than worth an "
                         "agent of its own (tasks under 30 minutes are a poor fit)")
    if plan.contracts:
        lines.append(f"Contracts: {', '.join(plan.contracts)}, committed before the agents start and "
                     "frozen for them")
    else:
        lines.append("No contracts: the agents share no interface; consider writing one before they "
                     "start, so the integration has something to check against")
    return lines
