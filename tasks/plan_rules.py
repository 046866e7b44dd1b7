"""The plan's rules (SPEC 2) beyond what the models check, run on the raw plan data.

They read the raw mapping rather than a ``Plan`` so they still run when the model refused the
plan: a typo in one field does not hide overlapping paths in another. Each rule yields
``(field, message)``; ``tasks.plan_load`` adds the file and line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks import gitops
from tasks.paths import cone_problem, container, first_overlap, is_glob, path_problem
from tasks.plan import SLUG_PATTERN

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
        wanted = [("name", "base"), ("name", "integration")]
        wanted += [(f"clusters.{i}.name", c["name"]) for i, c in clusters(data)
                   if isinstance(c.get("name"), str) and re.match(SLUG_PATTERN, c["name"])]
        for where, leaf in wanted:
            branch = f"clusters/{plan}/{leaf}"
            if not gitops.branch_name_ok(root, branch):
                found.append((where, f"git refuses the branch name {branch!r}; choose another name"))
    return found
