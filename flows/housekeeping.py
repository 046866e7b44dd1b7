"""``status`` and ``clean``: look at a plan's git state, and remove it, without losing work.

With a remote repo (a URL, or a bare repository) both work in the run's own clone of it, found
as ``run`` finds it (``tasks.remote``): ``status`` shows the remote's branches, ``clean --branches``
deletes them there too, each only where the remote holds the very commit judged here."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from prefect_work_clusters.flows import person
from prefect_work_clusters.tasks import remote
from prefect_work_clusters.tasks.context import RunContext, load_record
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import remote as gitremote
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.integration.approval import load_review
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.recovery import run_lock
from prefect_work_clusters.tasks.resolve import resolve_any


def _ctx(plan: Path, repo: str | Path, options: RunOptions | None) -> RunContext:
    return resolve_any(plan, repo, options, relative_to=Path.cwd(), agents_needed=False)


def _tip(ctx: RunContext, branch: str) -> str | None:
    # A remote's branch is what every machine sees (a dispatched cluster pushed it; ours may lag).
    theirs = gitops.resolve_ref(ctx.repo, f"refs/remotes/origin/{branch}") if ctx.remote else None
    return theirs or gitops.resolve_ref(ctx.repo, f"refs/heads/{branch}")


def status_table(plan: Path, repo: str | Path, options: RunOptions | None = None) -> Table:
    """Clusters, their branches and worktrees, and the last recorded result."""
    ctx = _ctx(plan, repo, options)
    base = gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.base_branch}")
    registered = {wt.path.resolve() for wt in gitworktrees.worktrees(ctx.repo)}
    last = ctx.runs_dir / "report.json"
    verdict = "no run yet"
    if last.exists():
        data = json.loads(last.read_text())
        verdict = ("integrated and verified" if data.get("ok") else "not integrated") + \
            f" (finished {data.get('finished_at', '?')})"
    waiting = load_review(ctx)
    if waiting and waiting.status == "awaiting":
        verdict += f"; {waiting.line()}: work-clusters approve {plan}"
    if turn := person.asked(ctx):
        verdict += f"; {turn}"
    where = f" on {gitremote.scrub(ctx.remote)}" if ctx.remote else ""
    table = Table(title=f"plan {ctx.plan.name}{where}: {verdict}")
    for col in ("cluster", "branch", "head", "finished", "worktree", "last status", "attempts"):
        table.add_column(col)
    for cluster in ctx.plan.clusters:
        branch = ctx.branch(cluster.name)
        tip = _tip(ctx, branch)
        record = load_record(ctx, cluster.name)
        start = record.base_sha if record else base
        finished = bool(tip and start and githistory.finished_commit(ctx.repo, start, branch))
        wt = ctx.worktree(cluster.name)
        table.add_row(cluster.name, branch if tip else f"{branch} (none)", (tip or "-")[:12],
                      "yes" if finished else "no", str(wt) if wt.resolve() in registered else "-",
                      record.status if record else "-", str(len(record.attempts)) if record else "0")
    return table


def clean_plan(plan: Path, repo: str | Path, *, branches: bool = False, force: bool = False,
               options: RunOptions | None = None) -> list[str]:
    """Remove the plan's worktrees and, with ``branches``, its branches. A worktree with
    uncommitted changes, or a branch with commits found nowhere else, is kept unless forced."""
    ctx = _ctx(plan, repo, options)
    with run_lock(ctx):  # never pull a worktree or branch from under a live run
        if not ctx.remote:
            return _clean(ctx, branches, force)
        notes = remote.catch_up(ctx)  # judge the branches the remote holds
        names = [*remote.plan_branches(ctx), ctx.integration_branch]
        seen = {b: sha for b in names if (sha := gitops.resolve_ref(ctx.repo, f"refs/heads/{b}"))}
        done = _clean(ctx, branches, force)
        deleted = [b for b in seen if not gitops.branch_exists(ctx.repo, b)]
        return notes + done + (remote.delete_branches(ctx, deleted, seen) if deleted else [])


def _clean(ctx: RunContext, branches: bool, force: bool) -> list[str]:
    done: list[str] = []
    registered = {wt.path.resolve(): wt for wt in gitworktrees.worktrees(ctx.repo)}
    places = [ctx.worktree(c.name) for c in ctx.plan.clusters] + [ctx.integration_worktree]
    kept: list[str] = []
    doomed: list[Path] = []
    for path in places:
        if path.resolve() not in registered:
            continue
        if gitchanges.has_changes(path) and not force:
            kept.append(f"kept {path}: it has uncommitted changes (commit them, or pass --force)")
            continue
        doomed.append(path)
        done.append(f"removed worktree {path}")
    gitworktrees.remove_worktrees(ctx.repo, doomed)  # and prunes what was removed by hand
    if branches:
        done += _clean_branches(ctx, force, kept)
    return done + kept


def _clean_branches(ctx: RunContext, force: bool, kept: list[str]) -> list[str]:
    done: list[str] = []
    target = ctx.plan.base or gitops.current_branch(ctx.repo) or "HEAD"

    def contained(branch: str, homes: list[str]) -> bool:
        return any(gitops.resolve_ref(ctx.repo, h) and gitops.is_ancestor(ctx.repo, branch, h) for h in homes)

    def adds_nothing(branch: str) -> bool:
        # An investigation branch holds marker commits only: its tree is the base's, nothing to lose.
        base = gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.base_branch}")
        return bool(base) and gitops.out(ctx.repo, "rev-parse", f"{branch}^{{tree}}") == \
            gitops.out(ctx.repo, "rev-parse", f"{base}^{{tree}}")

    order = [(ctx.branch(c.name), [ctx.integration_branch, ctx.base_branch, target]) for c in ctx.plan.clusters]
    order += [(ctx.integration_branch, [target]), (ctx.base_branch, [target, ctx.integration_branch])]
    for branch, homes in order:
        if not gitops.branch_exists(ctx.repo, branch):
            continue
        if any(wt.branch == branch for wt in gitworktrees.worktrees(ctx.repo)):
            kept.append(f"kept branch {branch}: a worktree still uses it")
            continue
        ref = f"refs/heads/{branch}"
        if not force and not contained(ref, [h for h in homes if h != branch]) and \
                (branch == ctx.base_branch or not adds_nothing(ref)):
            kept.append(f"kept branch {branch}: it has commits found on no other branch (pass --force to delete)")
            continue
        githistory.delete_branch(ctx.repo, branch)
        done.append(f"deleted branch {branch}")
    if not done and not kept:
        done.append("nothing to clean")
    return done


