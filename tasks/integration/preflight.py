"""Preflight: predict every conflict of the integration before the integration worktree is touched.

Each branch is merged, in merge order, onto the predicted result of the merges before it with
``git merge-tree --write-tree`` (objects only: no worktree, no index, no ref). The predicted
result becomes a dangling commit so the next prediction builds on it, as the real merges will.
After a predicted conflict the chain goes on from git's tree with markers in it, so later
predictions in the same files are marked approximate: a resolver may well settle them.

Example::

    pf = predict(repo, base_sha, [("api", "clusters/shop/api"), ("ui", "clusters/shop/ui")],
                 touched={"api": ["app/registry.py"], "ui": ["app/registry.py"]})
    [m.status for m in pf.merges]   # ['clean', 'conflict']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, PrivateAttr

from prefect_work_clusters.tasks.git import merge as gitmerge

PredictedStatus = Literal["clean", "conflict", "already-merged"]


class PredictedConflict(BaseModel):
    path: str
    kinds: list[str] = Field(default_factory=list)
    ours: list[str] = Field(default_factory=list, description="clusters merged earlier that changed the file")


class PredictedMerge(BaseModel):
    cluster: str
    branch: str
    status: PredictedStatus
    conflicts: list[PredictedConflict] = Field(default_factory=list)
    approximate: bool = False


class Preflight(BaseModel):
    start: str
    merges: list[PredictedMerge]
    seconds: float = 0.0
    # cluster -> (ours, theirs, commit) of each clean predicted merge: commit objects as real as
    # the integration's own, which it takes instead of merging again (``merged_commit``).
    _commits: dict[str, tuple[str, str, str]] = PrivateAttr(default_factory=dict)

    def merged_commit(self, cluster: str, ours: str, theirs: str) -> str | None:
        """The predicted merge of ``theirs`` onto ``ours``, when the prediction made exactly that
        merge cleanly (same two parents; its message is the caller's when ``predict`` was given one)."""
        found = self._commits.get(cluster)
        return found[2] if found and found[:2] == (ours, theirs) else None

    @property
    def conflict_count(self) -> int:
        return sum(len(m.conflicts) for m in self.merges)

    def for_cluster(self, cluster: str) -> PredictedMerge | None:
        return next((m for m in self.merges if m.cluster == cluster), None)


def predict(repo: Path, start: str, branches: Sequence[tuple[str, str]],
            touched: Mapping[str, Sequence[str]] | None = None,
            commits: Mapping[str, str] | None = None,
            message: Callable[[str, str, str], str] | None = None) -> Preflight:
    """Predict merging ``branches`` ((cluster, branch) in merge order) one by one onto ``start``.
    ``touched`` (cluster -> files its branch changed) names the clusters on our side of a conflict;
    ``commits`` (cluster -> SHA) is what is merged instead of the branch's current head;
    ``message(cluster, branch, commit)`` the message of each predicted merge commit. ``repo`` is
    where git runs: the integration worktree, so merge-tree reads the attributes its merges will."""
    t0 = time.monotonic()
    touched = touched or {}
    revs = {cluster: (commits or {}).get(cluster, branch) for cluster, branch in branches}
    current = start
    merged: list[str] = []
    conflicted: set[str] = set()
    merges: list[PredictedMerge] = []
    made: dict[str, tuple[str, str, str]] = {}
    # A branch not contained in the start cannot be contained in a prediction built from it
    # before it is merged itself, so one look-up serves the whole chain.
    earlier = (gitmerge.contained_commits(repo, start, list(revs.values())) if commits
               else gitmerge.contained(repo, start, list(revs.values())))
    for cluster, branch in branches:
        if revs[cluster] in earlier:
            merges.append(PredictedMerge(cluster=cluster, branch=branch, status="already-merged"))
            merged.append(cluster)
            continue
        pred = gitmerge.merge_tree(repo, current, revs[cluster])
        conflicts = [PredictedConflict(path=path, kinds=kinds,
                                       ours=[c for c in merged if path in touched.get(c, ())])
                     for path, kinds in sorted(pred.conflicts.items())]
        approximate = any(c.path in conflicted for c in conflicts)
        merges.append(PredictedMerge(cluster=cluster, branch=branch, status="conflict" if conflicts else "clean",
                                     conflicts=conflicts, approximate=approximate))
        conflicted.update(pred.conflicts)
        text = message(cluster, branch, revs[cluster]) if message else f"work-clusters preflight: {cluster}"
        ours, current = current, gitmerge.commit_tree(repo, pred.tree, [current, revs[cluster]], text)
        if pred.clean:  # as the integration's own merge_commit judges it
            made[cluster] = (ours, revs[cluster], current)
        merged.append(cluster)
    found = Preflight(start=start, merges=merges, seconds=round(time.monotonic() - t0, 4))
    found._commits = made
    return found
