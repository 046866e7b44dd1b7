"""What an agent must not do to git, checked after every attempt and after all agents.

An agent runs with full access to its worktree, and through it to the repository's refs. It
could rewrite the worktree's ``.git`` link, switch or delete its branch, reset it to before the
base, or move another cluster's branch. None of that may cost another cluster its work: each
branch's head is recorded after every attempt and restored when something else moved it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from prefect_work_clusters.tasks.context import ClusterRecord, RunContext, save_record
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import files as gitfiles
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import refs as gitrefs


def git_link(worktree: Path) -> str | None:
    """The content of the worktree's ``.git`` file (the link to its git dir); a FIFO or the like
    there (git would hang reading it) is never opened to wait, and reads as no link."""
    try:
        data = gitfiles.read_nowait(str(worktree / ".git"), follow=False)[1]
    except OSError:
        return None
    return None if data is None else data.decode("utf-8", errors="surrogateescape")


def check_attempt(ctx: RunContext, record: ClusterRecord, link_before: str | None,
                  head_before: str) -> tuple[str | None, bool]:
    """After an attempt: (why it must fail for tampering with git or None, whether its leftovers
    may be committed on its branch). Repairs what it can (the ``.git`` link, a deleted branch,
    history reset to before the base) so later attempts and other clusters can go on."""
    wt, branch = record.worktree, record.branch
    reasons: list[str] = []
    if link_before is not None and git_link(wt) != link_before:
        dotgit = wt / ".git"
        if dotgit.is_dir() and not dotgit.is_symlink():
            shutil.rmtree(dotgit)
        else:
            dotgit.unlink(missing_ok=True)  # never written through: a symlink, or a FIFO that blocks a writer
        dotgit.write_text(link_before)
        reasons.append("the agent changed the worktree's .git link (restored); agents must not touch .git")
    # The refs as the comparison just before this read them: no git call unless a ref moved.
    tip = gitrefs.read(ctx.repo).get(f"refs/heads/{branch}")
    if tip is None and not gitops.branch_exists(ctx.repo, branch):
        head = gitops.resolve_ref(wt, "HEAD")
        tip = head or head_before
        githistory.set_branch(ctx.repo, branch, tip, "work-clusters: restore a branch the agent deleted")
        reasons.append(f"the agent deleted its branch {branch} (restored); agents must not delete branches")
    current = gitops.head_ref(wt)
    if current != f"refs/heads/{branch}":
        reasons.append(f"the agent left its branch {branch} (HEAD is {current or 'detached'}); "
                       "its uncommitted files stay in the worktree, uncommitted")
        return "; ".join(reasons), False
    if tip != record.base_sha and not gitops.is_ancestor(ctx.repo, record.base_sha, branch):
        gitchanges.reset_to(wt, head_before)
        reasons.append(f"the agent rewrote {branch} to before its base {record.base_sha[:12]}; "
                       f"reset to {head_before[:12]}, where the attempt started")
        return "; ".join(reasons), False
    return ("; ".join(reasons) or None), True


def restore_refs(ctx: RunContext, records: list[ClusterRecord]) -> tuple[list[ClusterRecord], list[str]]:
    """After all agents: every cluster branch back at the head its own agent left. An agent that
    moved or deleted another cluster's branch cannot make that cluster's work disappear."""
    notes: list[str] = []
    tips = gitrefs.read(ctx.repo)  # one read of every ref, not a git call per cluster
    for rec in records:
        if not rec.head_sha:
            continue
        tip = tips.get(f"refs/heads/{rec.branch}")
        if tip == rec.head_sha:
            continue
        githistory.set_branch(ctx.repo, rec.branch, rec.head_sha,
                              "work-clusters: restore a branch moved by another agent")
        notes.append(f"{rec.branch} was {'deleted' if tip is None else f'moved to {tip[:12]}'} outside its own "
                     f"agent; restored to {rec.head_sha[:12]}")
        save_record(ctx, rec)
    return records, notes


def attach_after_sandbox(ctx: RunContext, record: ClusterRecord) -> None:
    """A sandboxed agent committed on a detached HEAD (it cannot write refs): its commits become
    its branch, and the worktree is on the branch again. A HEAD the agent pointed at another
    branch is left for ``check_attempt`` to report."""
    wt = record.worktree
    if gitops.run(wt, "symbolic-ref", "--quiet", "HEAD", check=False).status == 0:
        return
    tip = gitops.resolve_ref(wt, "HEAD")
    if tip:
        githistory.set_branch(ctx.repo, record.branch, tip, "work-clusters: the sandboxed agent's commits")
    gitops.attach(wt, record.branch)


def restore_base(ctx: RunContext, base_sha: str, records: list[ClusterRecord]) -> list[str]:
    """After all agents: ``clusters/<plan>/base`` back at the recorded commit, saying who moved it
    (the clusters whose branch holds the commit it was moved to, and git's own reflog line)."""
    tip = gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.base_branch}")
    if tip == base_sha:
        return []
    holders = [r.cluster for r in records if tip and r.head_sha and gitops.is_ancestor(ctx.repo, tip, r.head_sha)]
    how = gitops.out(ctx.repo, "reflog", "-1", "--format=%gs", f"refs/heads/{ctx.base_branch}") if tip else ""
    who = (f"a commit of cluster {', '.join(holders)}'s branch" if holders else "a commit no cluster's branch holds")
    githistory.set_branch(ctx.repo, ctx.base_branch, base_sha, "work-clusters: restore the recorded base")
    moved = "deleted" if tip is None else f"moved to {tip[:12]} ({who}; git: {how or 'no reflog'})"
    return [f"{ctx.base_branch} was {moved} while the agents ran; restored to the recorded {base_sha[:12]}, "
            "which the clusters started from and integration merges onto"]
