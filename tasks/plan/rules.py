"""The plan's rules (SPEC 2) beyond what the models check, run on the raw plan data.

They read the raw mapping rather than a ``Plan`` so they still run when the model refused the
plan: a typo in one field does not hide overlapping paths in another. Each rule yields
``(field, message)``; ``tasks.plan.load`` adds the file and line.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.plan.models import SLUG_PATTERN
from prefect_work_clusters.tasks.plan.paths import (
    cone_problem,
    container,
    first_overlap,
    glob_prefix,
    is_glob,
    path_problem,
)
from prefect_work_clusters.tasks.plan.refs import module_paths, ref_problem

Found = tuple[str, str]  # (field, message)
RESERVED = ("base", "integration")  # cluster names that would take the plan's own branches


def clusters(data: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    items = data.get("clusters")
    return [(i, c) for i, c in enumerate(items) if isinstance(c, dict)] if isinstance(items, list) else []


def _strings(value: Any) -> list[tuple[int, str]]:
    return [(i, v) for i, v in enumerate(value) if isinstance(v, str)] if isinstance(value, list) else []


def path_lists(data: dict[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    """Every list of repo paths in the raw plan, with its field path."""
    for key in ("contracts", "shared"):
        if isinstance(data.get(key), list):
            yield key, data[key]
    worktree = data.get("worktree")
    for key in ("copy", "copy_files"):
        if isinstance(worktree, dict) and isinstance(worktree.get(key), list):
            yield f"worktree.{key}", worktree[key]
    for index, cluster in clusters(data):
        if isinstance(cluster.get("paths"), list):
            yield f"clusters.{index}.paths", cluster["paths"]


def _good_paths(data: dict[str, Any], where: str) -> list[tuple[int, str]]:
    """The paths at ``where`` that are well spelled (the others are reported once, elsewhere)."""
    return [(i, p) for i, p in _strings(dict(path_lists(data)).get(where)) if path_problem(p) is None]


def _name(cluster: dict[str, Any], index: int) -> str:
    name = cluster.get("name")
    return name if isinstance(name, str) else f"#{index}"


def check_rules(data: dict[str, Any]) -> list[Found]:
    """Every rule that needs no repository."""
    found: list[Found] = []
    items = data.get("clusters")
    if isinstance(items, list) and len(items) < 2:
        found.append(("clusters", f"a plan needs at least 2 clusters, found {len(items)}; "
                                  "for a single piece of work, run one agent instead"))
    for where, paths in path_lists(data):
        found += [(f"{where}.{i}", problem) for i, p in _strings(paths) if (problem := path_problem(p))]
    seen: dict[str, int] = {}
    for i, cluster in clusters(data):
        name = cluster.get("name")
        if isinstance(name, str) and name in seen:
            found.append((f"clusters.{i}.name", f"{name!r} is already the name of clusters.{seen[name]}; "
                                                "cluster names must be unique"))
        elif isinstance(name, str) and name in RESERVED:
            found.append((f"clusters.{i}.name", f"{name!r} is reserved for the plan's own "
                                                f"clusters/<plan>/{name} branch; choose another name"))
        if isinstance(name, str):
            seen.setdefault(name, i)
        if cluster.get("paths", []) == []:
            found.append((f"clusters.{i}.paths", f"cluster {_name(cluster, i)!r} owns no paths; list the "
                                                 "folders (ending in '/') or globs it may edit"))
    found += _overlaps(data)
    found += _dependencies(data)
    found += _provides(data)
    found += _kinds(data)
    found += _landing(data)
    worktree = data.get("worktree")
    if isinstance(worktree, dict) and worktree.get("checkout") == "sparse":
        for where in [f"clusters.{i}.paths" for i, _ in clusters(data)] + ["shared"]:
            found += [(f"{where}.{k}", f"{problem}; give it a folder or use checkout: full")
                      for k, p in _good_paths(data, where) if (problem := cone_problem(p))]
    return found


def _overlaps(data: dict[str, Any]) -> list[Found]:
    found: list[Found] = []
    named = clusters(data)
    owned = {i: _good_paths(data, f"clusters.{i}.paths") for i, _ in named}
    patterns = {i: [p for _, p in owned[i]] for i, _ in named}
    for n, (i, first) in enumerate(named):
        for j, _ in named[n + 1:]:
            pair = first_overlap(patterns[i], patterns[j])
            if pair:
                k = next(k for k, p in owned[j] if p == pair[1])
                found.append((f"clusters.{j}.paths.{k}",
                              f"{pair[1]!r} overlaps {pair[0]!r}, owned by cluster {_name(first, i)!r}; a "
                              "path belongs to one cluster: narrow one of them, or list the common files "
                              "under shared"))
    for key, why in (("shared", "every cluster may edit a shared path"),
                     ("contracts", "contract files are frozen for every cluster")):
        for k, p in _good_paths(data, key):
            for i, cluster in named:
                owner = container(p, patterns[i])
                if owner:
                    found.append((f"{key}.{k}", f"{p!r} lies inside {owner!r}, owned by cluster "
                                                f"{_name(cluster, i)!r}; {why}, so none may own it"))
    return found


def _provides(data: dict[str, Any]) -> list[Found]:
    """``provides`` maps ``module.path:Name`` to ``module.path:Name``; a contract type lives in a
    contract file, so it is committed and frozen before the agents start."""
    provides = data.get("provides")
    if not isinstance(provides, dict):
        return []
    contracts = {p for _, p in _good_paths(data, "contracts")}
    found: list[Found] = []
    for impl, contract in provides.items():
        where = f"provides.{impl}"
        problems = [ref_problem(str(impl)), ref_problem(contract) if isinstance(contract, str) else None]
        found += [(where, problem) for problem in problems if problem]
        if not any(problems) and isinstance(contract, str):
            module = contract.split(":")[0]
            if not contracts & set(module_paths(module)):
                found.append((where, f"{module} is not one of the contract files; list its file "
                                     f"({module_paths(module)[0]}) under contracts"))
    return found


def _kinds(data: dict[str, Any]) -> list[Found]:
    """A plan builds or investigates, never both: an investigation's branches are never merged and
    it ends in a synthesis, not an integration (README, "Investigation clusters")."""
    kinds = [(i, c, c.get("kind", "build")) for i, c in clusters(data)]
    kinds = [k for k in kinds if k[2] in ("build", "investigation")]  # another kind is the model's to report
    if not any(kind == "investigation" for _, _, kind in kinds):
        return []
    first = kinds[0][2]
    odd = next(((i, c, kind) for i, c, kind in kinds if kind != first), None)
    if odd:
        return [(f"clusters.{odd[0]}.kind", f"cluster {_name(odd[1], odd[0])!r} is kind {odd[2]} in a plan of "
                 f"{first} clusters; a plan is all build or all investigation: put the investigation in a plan "
                 "of its own (`run --emit-plan` turns its fixes into the build plan)")]
    raw = data.get("integration")
    integration: dict[str, Any] = raw if isinstance(raw, dict) else {}
    meaningless = [("provides", data.get("provides"), "it implements nothing"),
                   ("integration.verify", integration.get("verify"), "it merges nothing, so there is no merged tree"),
                   ("integration.land", integration.get("land"), "it changes nothing, so there is nothing to land"),
                   ("integration.approve", integration.get("approve"), "it lands nothing, so nothing to approve")]
    meaningless += [(f"clusters.{i}.depends_on", c.get("depends_on"), "its clusters are never merged, so need no order")
                    for i, c in clusters(data)]
    return [(where, f"has no meaning in an investigation: {why}; remove it")
            for where, value, why in meaningless if value]


def _landing(data: dict[str, Any]) -> list[Found]:
    """``land: pull_request`` needs to know where the pull request goes; its settings alone do nothing."""
    raw = data.get("integration")
    integration: dict[str, Any] = raw if isinstance(raw, dict) else {}
    wants, given = integration.get("land") == "pull_request", integration.get("pull_request") is not None
    if wants and not given:
        return [("integration.pull_request", "is required with land: pull_request: give at least "
                 "repository: owner/name (remote: origin, draft: true and the plan's base are the defaults)")]
    if given and not wants:
        return [("integration.pull_request", "has no effect unless integration.land is pull_request; "
                 "set land: pull_request or remove it")]
    return []


def _dependencies(data: dict[str, Any]) -> list[Found]:
    found: list[Found] = []
    names = {c["name"]: i for i, c in reversed(clusters(data)) if isinstance(c.get("name"), str)}
    graph: dict[str, list[str]] = {}
    for i, cluster in clusters(data):
        for k, dep in _strings(cluster.get("depends_on")):
            if dep not in names:
                found.append((f"clusters.{i}.depends_on.{k}", f"names no cluster: {dep!r}; the clusters "
                                                              f"are {', '.join(names) or 'none'}"))
            elif isinstance(cluster.get("name"), str):
                graph.setdefault(cluster["name"], []).append(dep)
    cycle = _cycle(graph)
    if cycle:
        found.append((f"clusters.{names[cycle[0]]}.depends_on",
                      f"depends_on forms a cycle ({' -> '.join(cycle)}), so no merge order exists; "
                      "remove one of these dependencies"))
    return found


def _cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One cycle in ``graph`` as ``[a, b, a]``, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in graph.get(node, []):
            found = visit(nxt, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    return next((c for c in (visit(n, []) for n in graph) if c), None)


def _symlink_escapes(data: dict[str, Any], root: Path) -> list[Found]:
    """A plan path that leads out of the repository through a symlink: an agent told to edit
    it would write outside the repo, and the scope check could not see it; a ``worktree.copy``
    source would copy a file from outside the repo (a secret) into every worktree."""
    found: list[Found] = []
    lists = ["contracts", "shared", "worktree.copy", "worktree.copy_files"] + \
        [f"clusters.{i}.paths" for i, _ in clusters(data)]
    real_root = root.resolve()
    for where in lists:
        for k, path in _good_paths(data, where):
            fixed = glob_prefix(path) if is_glob(path) else path.rstrip("/")
            if not fixed:
                continue
            target = (root / fixed).resolve()
            if target != real_root and real_root not in target.parents:
                found.append((f"{where}.{k}", f"{path!r} leads out of the repository through a symlink "
                                              f"(to {target}); name a path inside the repo"))
    return found


def sandbox_problem() -> str | None:
    """Why the sandbox cannot run on this machine (one line, with what to do), or None."""
    if shutil.which("bwrap") is None:
        return ("the sandbox needs bubblewrap and `bwrap` is not on PATH; install it "
                "(Debian/Ubuntu: apt-get install bubblewrap) or turn the sandbox off")
    return None


def check_repo(data: dict[str, Any], repo: Path) -> list[Found]:
    """The rules that need the repository. Only asks git questions; creates nothing."""
    if not gitops.is_git_repo(repo):
        return [("repo", f"{repo} is not a git repository; pass the repository the plan is for")]
    root = gitops.toplevel(repo)
    found: list[Found] = []
    for k, path in _good_paths(data, "contracts"):
        if not (root / path).is_file():
            found.append((f"contracts.{k}", f"{path!r} does not exist in {root}; write the contract file "
                                            "first (the run commits it to the base branch for you)"))
    for i, _ in clusters(data):
        for k, path in _good_paths(data, f"clusters.{i}.paths"):
            if not is_glob(path) and not path.endswith("/") and (root / path).is_dir():
                found.append((f"clusters.{i}.paths.{k}", f"{path!r} is a folder; write it as '{path}/' "
                                                         "so the cluster owns what is inside it"))
    found += _symlink_escapes(data, root)
    sandbox = data.get("sandbox")
    if isinstance(sandbox, dict) and sandbox.get("enabled") is True and (problem := sandbox_problem()):
        found.append(("sandbox.enabled", problem))
    ref = data.get("base")
    if isinstance(ref, str) and gitops.resolve_ref(root, ref) is None:
        found.append(("base", f"{ref!r} names no commit in {root}; give a branch, tag or SHA that exists"))
    elif ref is None and gitops.resolve_ref(root, "HEAD") is None:
        found.append(("base", f"{root} has no commit yet, so there is nothing to start from; "
                              "commit something first or set base"))
    plan = data.get("name")
    if isinstance(plan, str) and re.match(SLUG_PATTERN, plan):
        # A branch "clusters" or "clusters/<plan>" is a file where git needs a folder of refs.
        for prefix in ("clusters", f"clusters/{plan}"):
            if gitops.branch_exists(root, prefix):
                found.append(("name", f"git cannot create the plan's branches under '{prefix}/' while a "
                                      f"branch named {prefix!r} exists; rename that branch or the plan"))
        # Asked of git for the plan's own two branches. A cluster's branch differs from them only
        # in its last part, a slug as well (its name is checked against SLUG_PATTERN): no '.',
        # '~', '^', ':', '?', '*', '[', '\\', '@{' or space in it, and no '-' first. So git takes
        # it when it takes these, and asking again per cluster (a git process each, 100 in a
        # 100-cluster plan, checked twice per run) would tell nothing more.
        for leaf in ("base", "integration"):
            branch = f"clusters/{plan}/{leaf}"
            if not gitops.branch_name_ok(root, branch):
                found.append(("name", f"git refuses the branch name {branch!r}; choose another name"))
    return found
