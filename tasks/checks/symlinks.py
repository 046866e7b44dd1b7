"""Symlinks a cluster commits: one pointing out of the repository, or into another cluster's
paths, would let the cluster write or read where its scope does not reach."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from pathlib import Path

from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.plan.paths import PathSet


def symlink_targets(repo: Path, head: str, paths: list[str]) -> dict[str, str]:
    """Of ``paths`` at ``head``, those that are symlinks, with the target each points to. When
    ``paths`` is what ``changed_files`` found for ``head``, its diff already said which they are."""
    if not paths:
        return {}
    if isinstance(paths, githistory.ChangedFiles):
        blobs = paths.symlinks
    else:
        listing = gitops.out(repo, "ls-tree", "-z", head, "--", *paths)
        blobs = {path: meta.split()[2] for meta, _, path in (e.partition("\t") for e in listing.split("\0"))
                 if meta.startswith("120000 ")}
    return {path: gitops.out(repo, "cat-file", "blob", blob) for path, blob in blobs.items()}


def bad_symlinks(repo: Path, head: str, changed: list[str], others: Callable[[], Mapping[str, PathSet]]) -> list[str]:
    """One message per changed symlink that leaves the repo or points into another cluster
    (``others`` builds the other clusters' paths, called only when a symlink changed: 99
    clusters' patterns built for each of 100 clusters took about a second)."""
    problems: list[str] = []
    links = symlink_targets(repo, head, changed)
    owners = others() if links else {}
    for link, target in links.items():
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
        if posixpath.isabs(target) or resolved == ".." or resolved.startswith("../"):
            problems.append(f"{link} is a symlink to {target}, outside the repository")
            continue
        owner = next((name for name, paths in owners.items() if paths.matches(resolved)
                      or paths.matches(resolved + "/")), None)
        if owner:
            problems.append(f"{link} is a symlink to {target}, inside cluster {owner}'s paths")
    return problems
