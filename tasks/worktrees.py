"""The base branch and one worktree per cluster (full or sparse), ready for its agent."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel

from prefect_work_clusters.tasks.context import ClusterRecord, RunContext, load_record, save_record
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.plan.paths import cone_dirs
from prefect_work_clusters.tasks.recovery import recover

# Worktrees prepared at once, one git process each. Sparse checkouts are CPU-bound and gain
# (0.068 -> 0.044 s each at 100,000 files on 2 cores); full ones are bound by the disk and gain
# nothing, so more workers than cores would only add contention.
PREPARE_WORKERS = max(2, os.cpu_count() or 2)


class Prepared(BaseModel):
    """The result of preparing a run's git state."""

    base_sha: str
    base_ref_sha: str
    notes: list[str]
    records: list[ClusterRecord]
    # Seconds they took before the flow began, made ahead by the CLI (``prepare_ahead``); 0 when
    # the flow's own task made them.
    made_ahead: float = 0.0

    def pending(self) -> list[str]:
        return [r.cluster for r in self.records if r.status != "succeeded"]


def plan_path_in_repo(ctx: RunContext) -> str:
    """Where the plan is committed on the base branch: its own path inside the repo, or
    ``.work-clusters/<file name>`` for a plan kept outside it."""
    try:
        return ctx.plan_file.relative_to(ctx.repo).as_posix()
    except ValueError:
        return f".work-clusters/{ctx.plan_file.name}"


def ensure_base(ctx: RunContext) -> tuple[str, str, list[str]]:
    """``clusters/<plan>/base``: the base ref plus the plan and contracts, committed only when
    they differ. A base branch that cluster branches already grew from is kept (resume), even
    if the user's branch moved since; the report says so."""
    repo, notes = ctx.repo, []
    base_ref = ctx.plan.base or "HEAD"
    base_ref_sha = gitops.resolve_ref(repo, base_ref)
    if base_ref_sha is None:
        raise WorkClustersError(f"base ref {base_ref!r} no longer names a commit; pass --base with one that does")
    files = {plan_path_in_repo(ctx): ctx.plan_file.read_bytes()}
    for rel in ctx.plan.contracts:
        files[rel] = (repo / rel).read_bytes()
    existing = gitops.resolve_ref(repo, f"refs/heads/{ctx.base_branch}")
    wanted = githistory.commit_files_on(repo, base_ref_sha, files,
                                    f"work-clusters: plan and contracts for {ctx.plan.name}", reuse=existing)
    tips = gitworktrees.branch_tips(repo, ctx.prefix)
    started = [c.name for c in ctx.plan.clusters if ctx.branch(c.name) in tips]
    if existing and existing != wanted and started and not ctx.rerun:
        notes.append(f"{ctx.base_branch} kept at {existing[:12]} because cluster branches already grew "
                     f"from it; {base_ref} is now {base_ref_sha[:12]} (run `work-clusters clean --branches` "
                     "to start again from the new base)")
        return existing, base_ref_sha, notes
    if existing != wanted:
        githistory.set_branch(repo, ctx.base_branch, wanted, f"work-clusters: base of {ctx.plan.name}")
    return wanted, base_ref_sha, notes


def sparse_dirs(ctx: RunContext, paths: Sequence[str]) -> list[str] | None:
    """The folders a sparse worktree holding ``paths`` has (with the shared and contract paths, the
    plan file and the top-level files); None in a plan of full checkouts."""
    if ctx.plan.worktree.checkout != "sparse":
        return None
    return cone_dirs([*paths, *ctx.plan.shared, *ctx.plan.contracts, plan_path_in_repo(ctx)])


def _copy_untracked(ctx: RunContext, worktree: Path) -> None:
    for rel in ctx.plan.worktree.copy_files:
        src, dst = ctx.repo / rel, worktree / rel
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, symlinks=True)
        elif src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def prepare_cluster(ctx: RunContext, cluster: str, base_sha: str, *,
                    listed: list[gitworktrees.Worktree] | None = None,
                    branches: dict[str, str | None] | None = None,
                    made: frozenset[str] = frozenset()) -> ClusterRecord:
    """The cluster's worktree and its record; a cluster whose branch already carries a finished
    agent commit is marked succeeded (resumed) unless the run asks to rerun. ``listed`` (the
    repo's worktrees) and ``branches`` (the plan's branch tips) spare the git calls that find
    them when many clusters are prepared at once; ``made``: the branches the caller made at
    ``base_sha`` just now."""
    paths = ctx.plan.cluster(cluster).paths
    branch = ctx.branch(cluster)
    known: gitworktrees.BranchState | None = (
        "made" if branch in made else None if branches is None else "present" if branch in branches else "absent")
    wt = gitworktrees.ensure_worktree(ctx.repo, ctx.worktree(cluster), branch, base_sha, sparse_dirs(ctx, paths),
                                      listed=listed, known=known)
    previous = load_record(ctx, cluster)
    start = base_sha if wt.created or previous is None else previous.base_sha
    record = ClusterRecord(cluster=cluster, branch=branch, worktree=wt.path, base_sha=start,
                           setup_done=bool(previous and previous.setup_done and not wt.created))
    if wt.created:
        _copy_untracked(ctx, wt.path)
    # A branch made just now, at the base, holds no commit of its own: nothing to look for.
    finished = None if ctx.rerun or wt.new_branch else githistory.finished_commit(ctx.repo, start, branch)
    if finished:
        record = record.model_copy(update={
            "status": "succeeded", "resumed": True, "head_sha": gitops.head(wt.path),
            "attempts": previous.attempts if previous else []})
    save_record(ctx, record)
    return record


def prepare(ctx: RunContext) -> Prepared:
    """Base branch and worktrees, after cleaning up what a killed earlier run left behind."""
    recovered = recover(ctx)
    base_sha, base_ref_sha, notes = ensure_base(ctx)
    notes = recovered + notes
    ctx.runs_dir.mkdir(parents=True, exist_ok=True)
    # A worktree folder deleted by hand (or by an agent) stays registered until pruned, and a
    # registered one is not made again: prune first (git drops only registrations of missing folders).
    gitworktrees.prune_worktrees(ctx.repo)
    # One listing of worktrees and branches for all clusters, then the clusters side by side:
    # registering a worktree is serialized (gitworktrees.worktree_lock), its checkout is not.
    # The new cluster branches are made first, together, out of the serialized part.
    listed = gitworktrees.worktrees(ctx.repo)
    branches = gitworktrees.branch_tips(ctx.repo, ctx.prefix)
    names = [c.name for c in ctx.plan.clusters]
    made = gitworktrees.make_branches(ctx.repo, [ctx.branch(n) for n in names if ctx.branch(n) not in branches],
                                      base_sha, f"work-clusters: cluster branch of {ctx.plan.name}")
    with ThreadPoolExecutor(max_workers=min(PREPARE_WORKERS, len(names)) or 1,
                            thread_name_prefix="wc-worktree") as pool:
        records = list(pool.map(lambda name: prepare_cluster(ctx, name, base_sha, listed=listed,
                                                             branches=branches, made=made), names))
    return Prepared(base_sha=base_sha, base_ref_sha=base_ref_sha, notes=notes, records=records)


def prepare_one(ctx: RunContext, cluster: str) -> Prepared:
    """One cluster's worktree on the base branch a parent run made (a cluster's own flow run,
    ``flows.cluster``): nothing else of the plan is created or moved."""
    notes = recover(ctx)
    base_sha = gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.base_branch}")
    if base_sha is None:
        raise WorkClustersError(f"{ctx.base_branch} is missing; a cluster's flow run starts from the base "
                                "branch its parent run pushed")
    ctx.runs_dir.mkdir(parents=True, exist_ok=True)
    gitworktrees.prune_worktrees(ctx.repo)
    record = prepare_cluster(ctx, cluster, base_sha)
    return Prepared(base_sha=base_sha, base_ref_sha=base_sha, notes=notes, records=[record])


def recorded(ctx: RunContext) -> Prepared:
    """The state an earlier run left (branches and records), without creating or moving anything:
    what ``work-clusters integrate`` starts from."""
    base_sha = gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.base_branch}")
    if base_sha is None:
        raise WorkClustersError(f"plan {ctx.plan.name} has no recorded run ({ctx.base_branch} is missing); "
                                "run `work-clusters run` first")
    records = []
    for cluster in ctx.plan.clusters:
        branch = ctx.branch(cluster.name)
        previous = load_record(ctx, cluster.name)
        record = previous or ClusterRecord(cluster=cluster.name, branch=branch,
                                           worktree=ctx.worktree(cluster.name), base_sha=base_sha)
        tip = gitops.resolve_ref(ctx.repo, f"refs/heads/{branch}")
        finished = tip and githistory.finished_commit(ctx.repo, record.base_sha, branch)
        update = {"head_sha": tip, "status": "succeeded" if finished else
                  (record.status if record.status != "succeeded" else "failed")}
        if not tip:
            update["error"] = f"branch {branch} does not exist"
        records.append(record.model_copy(update=update))
    base_ref_sha = gitops.resolve_ref(ctx.repo, ctx.plan.base or "HEAD") or base_sha
    return Prepared(base_sha=base_sha, base_ref_sha=base_ref_sha, notes=[], records=records)
