"""Symlinks a cluster commits: one pointing out of the repository, or into another cluster's
paths, would let the cluster write or read where its scope does not reach."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from pathlib import Path

from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.plan.paths import PathSet


def symlink_targets(repo: Path, head: str, paths: list[str]) -> dict[str, str]:
    """Of ``paths`` at ``head``, those that are symlinks, with the target each points to."""
    if not paths:
        return {}
    listing = gitops.out(repo, "ls-tree", "-z", head, "--", *paths)
    links: dict[str, str] = {}
    for entry in listing.split("\0"):
        meta, _, path = entry.partition("\t")
        if meta.startswith("120000 "):
            links[path] = gitops.out(repo, "cat-file", "blob", meta.split()[2])
    return links


def bad_symlinks(repo: Path, head: str, changed: list[str], others: Mapping[str, PathSet]) -> list[str]:
    """One message per changed symlink that leaves the repo or points into another cluster."""
    problems: list[str] = []
    for link, target in symlink_targets(repo, head, changed).items():
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
        if posixpath.isabs(target) or resolved == ".." or resolved.startswith("../"):
            problems.append(f"{link} is a symlink to {target}, outside the repository")
            continue
        owner = next((name for name, paths in others.items() if paths.matches(resolved)
                      or paths.matches(resolved + "/")), None)
        if owner:
            problems.append(f"{link} is a symlink to {target}, inside cluster {owner}'s paths")
    return problems
