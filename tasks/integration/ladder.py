"""The conflict ladder: merge one cluster branch, then try each resolver on what still conflicts.

Per conflicted file, in order, every attempt recorded on its ``ConflictFile``:

a. git itself, with rerere (a resolution recorded for the same conflict earlier is replayed);
b. the additive resolver (``tasks.integration.resolvers``);
c. mergiraf as a merge driver, when it is on PATH;
d. the integration agent, ``1 + retries`` attempts, each judged by ``git diff --check`` and ``ast``;
e. a person: the worktree is left mid-merge with the conflicts as git wrote them (diff3), the
   automatic resolutions staged, and nothing of a rejected attempt left behind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prefect_work_clusters.tasks.agents.call import max_attempts
from prefect_work_clusters.tasks.agents.registry import AgentBackend
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import merge as gitmerge
from prefect_work_clusters.tasks.git.core import GitError
from prefect_work_clusters.tasks.integration import resolvers as resolve
from prefect_work_clusters.tasks.integration.agent import discard_decisions, run_integration_agent
from prefect_work_clusters.tasks.integration.models import AgentCall, ConflictFile, HunkInfo, MergeStep, TierAttempt

EXCERPT = 400


def _excerpt(lines: Sequence[str] | None) -> str:
    text = "".join(lines or [])
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "…"


def hunk_infos(file: Path) -> list[HunkInfo]:
    if not file.is_file():
        return []
    return [HunkInfo(index=h.index, line=h.line, ours=_excerpt(h.ours), base=_excerpt(h.base),
                     theirs=_excerpt(h.theirs)) for h in resolve.hunks(file.read_text(errors="replace"))]


def merge_message(ctx: RunContext, cluster: str, branch: str, commit: str) -> str:
    """The message of a cluster's merge commit, however it is made."""
    return f"work-clusters: merge {cluster} ({branch} at {commit[:12]}) into {ctx.plan.name}"


@dataclass
class Ladder:
    """Merges branches into the integration worktree; ``calls`` collects the agent's runs."""

    ctx: RunContext
    backend: AgentBackend | None
    on_line: Callable[[str], None] | None = None
    calls: list[AgentCall] = field(default_factory=list)

    @property
    def wt(self) -> Path:
        return self.ctx.integration_worktree

    def merge(self, cluster: str, branch: str, commit: str, pre: str, merged: Sequence[str],
              touched: Mapping[str, Sequence[str]], kinds: Mapping[str, list[str]]) -> MergeStep:
        """Merge ``commit`` (``branch``'s head the contract check passed; never the name, which may
        have moved since) onto ``pre`` (the worktree's HEAD, holding the ``merged`` clusters); on
        conflict climb the ladder. ``touched`` (cluster -> files it changed) names our side of each
        conflict, ``kinds`` the preflight's conflict kinds. Returns the step, merged or stopped."""
        message = merge_message(self.ctx, cluster, branch, commit)
        try:
            start = gitmerge.start_merge(self.wt, commit, message)
        except GitError as exc:  # e.g. an untracked file in the way: the worktree is left as it was
            return MergeStep(cluster=cluster, branch=branch, status="conflict",
                             reason=f"git refused to merge: {exc.stderr.splitlines()[0] if exc.stderr else exc}")
        if start.committed:
            return MergeStep(cluster=cluster, branch=branch, status="merged", commit=gitops.head(self.wt))
        files = {p: ConflictFile(path=p, theirs=cluster, ours=[m for m in merged if p in touched.get(m, ())],
                                 kinds=list(kinds.get(p, [])))
                 for p in sorted({*start.unmerged, *start.replayed})}
        self._git(pre, start.replayed, files)
        settled = self._deterministic(pre, files)
        committed = False
        if self._open(files):
            if self.backend is None:
                for f in self._open(files):
                    f.attempts.append(TierAttempt(tier="agent", outcome="unavailable",
                                                  detail="no integration agent is configured"))
            else:
                committed = self._agent(self.backend, pre, cluster, commit, message, files, settled, merged)
        step = MergeStep(cluster=cluster, branch=branch, status="merged", conflicts=list(files),
                         files=list(files.values()))
        left = self._open(files)
        if left:
            for f in left:
                f.attempts.append(TierAttempt(tier="person", outcome="unresolved", detail="left for a person"))
            step.status, step.reason = "conflict", f"{len(left)} file(s) left for a person"
            return step
        step.commit = gitops.head(self.wt) if committed else gitmerge.commit_merge(self.wt)
        step.reason = "conflicts resolved: " + ", ".join(f"{f.path} ({f.resolved_by})" for f in files.values())
        return step

    @staticmethod
    def _open(files: Mapping[str, ConflictFile]) -> list[ConflictFile]:
        return [f for f in files.values() if f.resolved_by is None]

    def _git(self, pre: str, replayed: Sequence[str], files: Mapping[str, ConflictFile]) -> None:
        """Tier a: what git's merge (with rerere) settled, checked like every automatic result."""
        for path, f in files.items():
            if path in replayed:
                rejected = resolve.validate(self.wt, pre, path)
                if rejected:
                    gitmerge.restore_conflict(self.wt, [path])
                    f.attempts.append(TierAttempt(tier="git", outcome="rejected",
                                                  detail=f"rerere's recorded resolution: {rejected}"))
                else:
                    f.attempts.append(TierAttempt(tier="git", outcome="resolved",
                                                  detail="rerere replayed a resolution recorded earlier"))
                    f.resolved_by = "git"
            else:
                f.attempts.append(TierAttempt(tier="git", outcome="unresolved",
                                              detail="git's merge left it conflicted"))
            if f.resolved_by is None:
                f.hunks = hunk_infos(self.wt / path)

    def _deterministic(self, pre: str, files: Mapping[str, ConflictFile]) -> dict[str, bytes]:
        """Tiers b and c. Returns what they settled, to be re-applied if the merge must restart."""
        settled: dict[str, bytes] = {}
        for f in self._open(files):
            attempt = resolve.additive_tier(self.wt, pre, f.path)
            f.attempts.append(attempt)
            if attempt.outcome == "resolved":
                f.resolved_by, settled[f.path] = "additive", (self.wt / f.path).read_bytes()
        left = [f.path for f in self._open(files)]
        if left:
            for path, attempt in resolve.mergiraf_tier(self.wt, pre, left).items():
                files[path].attempts.append(attempt)
                if attempt.outcome == "resolved":
                    files[path].resolved_by, settled[path] = "mergiraf", (self.wt / path).read_bytes()
        return settled

    def _agent(self, backend: AgentBackend, pre: str, cluster: str, commit: str, message: str,
               files: Mapping[str, ConflictFile], settled: Mapping[str, bytes], merged: Sequence[str]) -> bool:
        """Tier d. True when the agent concluded the merge commit itself (and it checked out)."""
        feedback, keep = "", gitchanges.untracked(self.wt)
        for attempt in range(1, max_attempts(self.ctx, backend) + 1):
            left = self._open(files)
            call = run_integration_agent(self.ctx, backend, purpose="conflict", label=f"merge-{cluster}",
                                         attempt=attempt, conflicts=left, merging=cluster, merged=merged,
                                         feedback=feedback, on_line=self.on_line)
            self.calls.append(call)
            problem, committed, broken = self._judge(backend, pre, commit, [f.path for f in left], call, keep)
            if problem is None:
                for f in left:
                    f.attempts.append(TierAttempt(tier="agent", outcome="resolved", detail=f"attempt {attempt}"))
                    f.resolved_by = "agent"
                return committed
            for f in left:
                f.attempts.append(TierAttempt(tier="agent", outcome="failed" if call.failure else "rejected",
                                              detail=f"attempt {attempt}: {problem}"))
            tail = call.output_tail[-1500:].strip()
            feedback = problem + (f"\n\nLast output:\n\n```\n{tail}\n```" if tail else "")
            if broken:
                self._restart(pre, commit, message, settled, keep)
        # A person gets the conflicts as git wrote them, not a rejected attempt's half-edit.
        self._restart(pre, commit, message, settled, keep)
        for call in self.calls:
            if call.label == f"merge-{cluster}":
                discard_decisions(call)
        return False

    def _judge(self, backend: AgentBackend, pre: str, commit: str, paths: list[str], call: AgentCall,
               keep: set[str]) -> tuple[str | None, bool, bool]:
        """(why the attempt is not accepted or None, whether the agent committed the merge,
        whether the merge state is broken and must be restarted)."""
        if not gitchanges.merge_in_progress(self.wt):
            if gitmerge.parents(self.wt, "HEAD") != [pre, commit]:
                return "the agent ended the merge without committing it (work-clusters commits it)", False, True
            problems = [f"{p}: {why}" for p in paths if (why := resolve.validate(self.wt, pre, p))]
            if problems or call.failure:
                return "; ".join([*([call.failure] if call.failure else []), *problems]), False, True
            return None, True, False
        if gitops.head(self.wt) != pre:
            return "the agent moved the integration branch during the merge", False, True
        problems = [f"{p}: {why}" for p in paths if (why := resolve.validate(self.wt, pre, p))]
        if call.failure or problems:
            return "; ".join([*([call.failure] if call.failure else []), *problems]), False, False
        gitchanges.stage_all(self.wt, backend.scratch_globs(), keep)
        return None, False, False

    def _restart(self, pre: str, commit: str, message: str, settled: Mapping[str, bytes], keep: set[str]) -> None:
        """The merge again from ``pre``, with the deterministic tiers' results re-applied."""
        gitchanges.reset_to(self.wt, pre, keep)
        start = gitmerge.start_merge(self.wt, commit, message)
        bad = [p for p in start.replayed if resolve.validate(self.wt, pre, p)]
        gitmerge.restore_conflict(self.wt, bad)
        for path, content in settled.items():
            (self.wt / path).write_bytes(content)
        gitmerge.stage(self.wt, list(settled))
