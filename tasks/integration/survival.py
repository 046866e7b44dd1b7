"""Survival check: did every line each cluster added make it into the integrated tree?

For each merged cluster, the lines its branch added against the base it started from are looked
up, per file and whitespace-normalized, in the same file of the integrated commit. A missing
line is lost work, unless a decision (``tasks.integration.decisions``) names that file and says why: then
it is listed as dropped on purpose. Blank lines are not counted; a line present once satisfies
every cluster that added it (the additive resolver keeps an identical line once).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, Field

from prefect_work_clusters.tasks.git import merge as gitmerge
from prefect_work_clusters.tasks.integration.decisions import AgentDecision

SHOWN_PER_FILE = 20


class FileLoss(BaseModel):
    path: str
    lines: list[str]
    count: int
    reason: str = Field(default="", description="the decision that excuses the loss, if any")


class ClusterSurvival(BaseModel):
    cluster: str
    branch: str
    added: int
    kept: int
    lost: list[FileLoss] = Field(default_factory=list)
    excused: list[FileLoss] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost

    @property
    def lost_count(self) -> int:
        return sum(f.count for f in self.lost)


def normalize(line: str) -> str:
    """Whitespace-normalized: re-indenting or re-wrapping spaces is not a loss."""
    return " ".join(line.split())


def check_cluster(repo: Path, cluster: str, branch: str, base: str, final: str,
                  decisions: Sequence[AgentDecision], cache: dict[str, set[str] | None]) -> ClusterSurvival:
    """One cluster's survival in ``final``; ``cache`` holds each final file's normalized lines."""
    reasons: dict[str, str] = {}
    for d in decisions:
        reasons[d.file] = f"{reasons[d.file]}; {d.reason}" if d.file in reasons else d.reason
    added = kept = 0
    result = ClusterSurvival(cluster=cluster, branch=branch, added=0, kept=0)
    for path, lines in sorted(gitmerge.added_lines(repo, base, branch).items()):
        wanted = [line for line in lines if normalize(line)]
        if not wanted:
            continue
        if path not in cache:
            text = gitmerge.show_blob(repo, final, path)
            cache[path] = None if text is None else {normalize(x) for x in text.splitlines()}
        present = cache[path] or set()
        missing = [line for line in wanted if normalize(line) not in present]
        added += len(wanted)
        kept += len(wanted) - len(missing)
        if missing:
            loss = FileLoss(path=path, lines=[m.strip() for m in missing[:SHOWN_PER_FILE]], count=len(missing))
            if path in reasons:
                result.excused.append(loss.model_copy(update={"reason": reasons[path]}))
            else:
                result.lost.append(loss)
    result.added, result.kept = added, kept
    return result


def check_survival(repo: Path, final: str, clusters: Sequence[tuple[str, str, str]],
                   decisions: Sequence[AgentDecision]) -> list[ClusterSurvival]:
    """Survival of every (cluster, branch, base) in the integrated commit ``final``."""
    cache: dict[str, set[str] | None] = {}
    return [check_cluster(repo, name, branch, base, final, decisions, cache) for name, branch, base in clusters]
