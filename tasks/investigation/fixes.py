"""From typed findings to fixes: grouped by the paths they concern, ordered into an action plan,
and written out as the next wave's build plan (``--emit-plan``).

Two findings whose paths overlap (the plan rules' own overlap test) concern the same code, so
their fixes belong to one cluster; groups are merged until no two overlap, which makes the
emitted clusters' owned paths disjoint, as ``validate`` requires.

Example::

    result = emit_plan(plan, findings, repo, Path("plans/fixes.yaml"))
    load_plan(result.path, repo)  # validates
"""

from __future__ import annotations

import posixpath
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from prefect_work_clusters.tasks.errors import PlanError, WorkClustersError
from prefect_work_clusters.tasks.investigation.findings import TypedFinding
from prefect_work_clusters.tasks.plan.load import load_plan
from prefect_work_clusters.tasks.plan.models import Plan, slugify
from prefect_work_clusters.tasks.plan.paths import container, first_overlap, is_glob, normalize
from prefect_work_clusters.tasks.plan.rules import RESERVED

MAX_NAME = 40


def fixable(findings: list[TypedFinding]) -> tuple[list[TypedFinding], list[TypedFinding]]:
    """(findings with a proposed fix and the paths it concerns, the others)."""
    good = [f for f in findings if f.proposed_fix.strip() and f.paths]
    return good, [f for f in findings if f not in good]


def as_folders(findings: list[TypedFinding], repo: Path | None) -> list[TypedFinding]:
    """The findings with every path that names a folder of ``repo`` spelled as one (``app/db`` is
    ``app/db/``), so it overlaps the files inside it, as the plan rules want."""
    if repo is None:
        return findings

    def spelled(p: str) -> str:
        return p + "/" if not is_glob(p) and not p.endswith("/") and (repo / p).is_dir() else p

    return [f.model_copy(update={"paths": [spelled(p) for p in f.paths]}) for f in findings]


def group_by_paths(findings: list[TypedFinding]) -> list[list[TypedFinding]]:
    """Findings whose paths overlap, directly or through others, in one group; the groups ordered
    by their most severe finding, then by how many clusters saw them, then by first id."""
    parent = list(range(len(findings)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, a in enumerate(findings):
        for j in range(i + 1, len(findings)):
            if first_overlap(a.paths, findings[j].paths):
                parent[root(j)] = root(i)
    groups: dict[int, list[TypedFinding]] = {}
    for i, f in enumerate(findings):
        groups.setdefault(root(i), []).append(f)
    ordered = [sorted(g, key=lambda f: f.rank) for g in groups.values()]
    return sorted(ordered, key=lambda g: (g[0].rank, -len({f.cluster for f in g}), findings.index(g[0])))


def group_paths(group: list[TypedFinding]) -> list[str]:
    """The group's paths, each once, none inside another."""
    paths: list[str] = []
    for p in (normalize(p) for f in group for p in f.paths):
        if p not in paths:
            paths.append(p)
    return [p for p in paths if not container(p, [o for o in paths if o != p])]


def _name(paths: list[str], taken: set[str]) -> str:
    parts = []
    for p in paths[:2]:
        fixed = p.rstrip("/").split("*")[0].rstrip("/") or "all"
        parts.append("-".join(posixpath.splitext(s)[0] for s in fixed.split("/")[-2:]))
    base = ("fix-" + slugify(" ".join(parts)))[:MAX_NAME].rstrip("-")
    name, n = base, 2
    while name in taken or name in RESERVED:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def _line(text: str) -> str:
    return " ".join(text.split())


def fix_task(f: TypedFinding) -> str:
    where = f" at {_line(f.location)}" if f.location.strip() else ""
    return f"{_line(f.proposed_fix)} ({f.id}, {f.severity}: {_line(f.title)}{where})"


# -- the action plan a person reads --------------------------------------------------------------


def _evidence(f: TypedFinding) -> list[str]:
    lines = [f"- **{f.id}** ({f.cluster}, {f.severity}): {_line(f.title)}"]
    if f.location.strip():
        lines.append(f"  - location: {_line(f.location)}")
    if f.evidence.strip():
        lines += ["  - evidence:", *[f"    > {ln}".rstrip() for ln in f.evidence.strip().splitlines()]]
    if f.proposed_fix.strip():
        lines.append(f"  - proposed fix: {_line(f.proposed_fix)}")
    return lines


def render_action_plan(findings: list[TypedFinding], title: str, note: str, repo: Path | None = None) -> str:
    """An action plan ordered by the findings alone: fixes grouped by the paths they concern (in
    ``repo``), most severe first, each with its evidence. Used when no synthesis agent is set, and
    by scripted ones."""
    good, other = fixable(as_folders(findings, repo))
    lines = [f"# {title}", "", note, ""]
    for n, group in enumerate(group_by_paths(good), start=1):
        seen_by = sorted({f.cluster for f in group})
        lines += [f"## {n}. {_line(group[0].proposed_fix)}", "",
                  f"Priority: **{group[0].severity}** · paths: {', '.join(f'`{p}`' for p in group_paths(group))}"
                  f" · seen by: {', '.join(seen_by)}", ""]
        for f in group:
            lines += _evidence(f)
        lines.append("")
    if other:
        lines += ["## Findings without a fix to place", "",
                  "They propose no fix, or name no paths for it; read them before planning.", ""]
        for f in sorted(other, key=lambda f: f.rank):
            lines += _evidence(f)
        lines.append("")
    if not findings:
        lines += ["No typed findings were reported.", ""]
    return "\n".join(lines)


# -- the next wave's build plan ------------------------------------------------------------------


@dataclass
class Emitted:
    """What ``emit_plan`` wrote."""

    path: Path
    clusters: dict[str, list[str]]
    left_out: list[str] = field(default_factory=list)


def build_plan_data(plan: Plan, findings: list[TypedFinding], repo: Path | None = None) -> dict[str, Any]:
    """The build plan's fields: one cluster per group of overlapping fixes."""
    good, _ = fixable(as_folders(findings, repo))
    taken: set[str] = set()
    clusters: list[dict[str, Any]] = []
    for group in group_by_paths(good):
        paths = group_paths(group)
        clusters.append({"name": _name(paths, taken), "paths": paths, "tasks": [fix_task(f) for f in group],
                         "cohesion": f"fixes for {', '.join(f.id for f in group)}, which concern "
                                     f"{', '.join(paths)}"})
    data: dict[str, Any] = {"name": f"{plan.name}-fixes"[:60].rstrip("-"),
                               "goal": _line(f"Fix what investigation {plan.name} found: {plan.goal or plan.name}")}
    if plan.base:
        data["base"] = plan.base
    if isinstance(plan.agent, str):
        data["agent"] = plan.agent
    data["clusters"] = clusters
    return data


def emit_plan(plan: Plan, findings: list[TypedFinding], repo: Path, out: Path,
              action_plan: Path | None = None) -> Emitted:
    """Write the build plan of the findings' proposed fixes to ``out`` (YAML) after checking that
    it validates against ``repo``. Raises WorkClustersError when the fixes cannot make a plan."""
    _, left_out = fixable(findings)
    data = build_plan_data(plan, findings, repo)
    clusters: dict[str, list[str]] = {c["name"]: c["paths"] for c in data["clusters"]}
    if len(clusters) < 2:
        what = ("no finding proposes a fix and names the paths it concerns" if not clusters else
                f"the proposed fixes all concern overlapping paths ({', '.join(next(iter(clusters.values())))}), "
                "so they make one cluster")
        where = f"; follow the action plan ({action_plan})" if action_plan else ""
        raise WorkClustersError(f"cannot emit a build plan: {what}, and a plan needs 2 or more; "
                                f"run one agent on these fixes instead{where}")
    header = [
        f"Build plan emitted by work-clusters from investigation {plan.name!r} "
        f"({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC).",
        "Clusters: the proposed fixes, grouped by the paths they concern (overlapping groups merged).",
        *([f"Action plan: {action_plan}"] if action_plan else []),
        *([f"Left out (no proposed fix or no paths): {', '.join(f.id for f in left_out)}"] if left_out else []),
        "Before running it: check each cluster's paths and tasks, add contracts, shared files and",
        "integration.verify (your test command), and an agent; then validate and run it:",
        f"  work-clusters validate {out.name} --repo {repo}",
    ]
    text = "".join(f"# {line}\n" for line in header) + "\n"
    text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)
    with tempfile.TemporaryDirectory(prefix="wc-emit-") as tmp:
        probe = Path(tmp) / (out.name if out.suffix in (".yaml", ".yml") else "plan.yaml")
        probe.write_text(text)
        try:
            load_plan(probe, repo)
        except PlanError as exc:
            raise WorkClustersError(f"the emitted build plan does not validate (please report this): {exc}") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return Emitted(path=out, clusters=clusters, left_out=[f.id for f in left_out])
