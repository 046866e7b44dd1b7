"""``work-clusters suggest``: a plan proposed from the code, its history and a goal.

Signals (``signals``) are grouped into clusters (``grouping``) and measured (``fit``); the result
is the YAML of the plan format, its fit figures as comments at the top, which ``validate`` accepts
as it is. When the code is one piece, or too coupled for the split to hold, it says so rather than
force a split (unless a number of clusters is asked for explicitly).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from prefect_work_clusters.tasks.plan.models import Plan, slugify
from prefect_work_clusters.tasks.plan.paths import PathSet
from prefect_work_clusters.tasks.suggest.fit import POOR, Fit, measure_fit
from prefect_work_clusters.tasks.suggest.grouping import Units, build_units, communities
from prefect_work_clusters.tasks.suggest.signals import Signals, measure

MAX_NAME = 30


@dataclass
class Suggestion:
    fit: Fit
    plan: dict[str, Any] | None  # None: no split worth proposing
    signals: Signals
    units: Units
    notes: list[str] = field(default_factory=list)

    def yaml(self) -> str:
        """The plan's YAML, the fit figures and what was measured as comments on top."""
        if self.plan is None:
            return ""
        when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
        head = [f"Suggested by `work-clusters suggest` on {when}, measured on {len(self.signals.files)} files, "
                f"{sum(self.signals.imports.values())} imports and {len(self.signals.commits)} recent commits.",
                *self.fit.lines(), *self.notes,
                "Add contracts (the interfaces the clusters share), tasks, an agent and integration.verify."]
        comments = "".join(f"# {line}\n" for line in head)
        return comments + yaml.safe_dump(self.plan, sort_keys=False, allow_unicode=True, width=100)


def _name(paths: list[str], taken: set[str]) -> str:
    """A cluster's name from its largest path: ``src/app/api/`` -> ``api``."""
    last = [p.rstrip("/").rsplit("/", 1)[-1] for p in paths]
    stem = re.sub(r"\.\w+$", "", last[0]).lstrip("_") or "cluster"
    name = slugify(stem)[:MAX_NAME].strip("-") or "cluster"
    base, n = name, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def suggest(repo: Path, workdir: Path, *, goal: str | None = None, clusters: int | None = None,
            globs: Sequence[str] = ()) -> Suggestion:
    """Measure ``repo`` and propose a plan; ``clusters`` asks for that many (a split is then made
    even where the code is coupled, and the figures say so)."""
    signals = measure(repo, globs, workdir)
    units = build_units(signals)
    groups = communities(units, clusters)
    # Largest unit first within a group: it names the cluster.
    groups = [sorted(g, key=lambda u: -len(units.members[u])) for g in groups]
    taken: set[str] = set()
    names = [_name(g, taken) for g in groups]
    owner = {f: name for name, g in zip(names, groups, strict=True) for u in g for f in units.members[u]}
    owned = PathSet([u for g in groups for u in g])
    shared = sorted(units.hubs) + [f for f in units.hot if not owned.matches(f)]
    fit = measure_fit(signals, owner, names, shared)
    suggestion = Suggestion(fit=fit, plan=None, signals=signals, units=units)
    if units.hubs:
        suggestion.notes.append(f"contract candidates (imported by most clusters): {', '.join(units.hubs)}")
    if units.loose:
        suggestion.notes.append(f"not owned by any cluster (root files): {', '.join(units.loose[:6])}"
                                + (" …" if len(units.loose) > 6 else ""))
    too_coupled = len(groups) < 2 or max(fit.import_share, fit.commit_share) > POOR
    if too_coupled and clusters is None:
        return suggestion
    name = slugify(" ".join((goal or "").split()[:5])) or slugify(repo.name) or "plan"
    suggestion.plan = {
        "name": name[:MAX_NAME].strip("-") or "plan",
        "goal": goal or f"TODO: what the agents build in {repo.name}",
        **({"shared": shared} if shared else {}),
        "clusters": [{"name": n, "paths": sorted(g),
                      "cohesion": _cohesion(c.files, c.imports_inside, c.commits_with.total())}
                     for n, g, c in zip(names, groups, fit.clusters, strict=True)],
    }
    return suggestion


def _cohesion(files: int, inside: int, shared_commits: int) -> str:
    return (f"measured: {files} files, {inside} imports among them, "
            f"{shared_commits} recent commits shared with other clusters")


def plan_fit(plan: Plan, repo: Path, workdir: Path) -> Fit:
    """The same figures for a hand-written plan's clusters (``validate``)."""
    signals = measure(repo, (), workdir)
    sets = [(c.name, PathSet(c.paths)) for c in plan.clusters]
    owner = {f: name for f in signals.files for name, paths in sets if paths.matches(f)}
    return measure_fit(signals, owner, [c.name for c in plan.clusters], list(plan.shared))
