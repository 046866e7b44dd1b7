"""A run against a git remote: our own clone of it (resumed, never re-cloned), the plan's branches
brought up to the remote's, and what the run made pushed back (never forced).

The remote is the only thing the machines share: the parent run pushes the base branch before
any cluster starts, each cluster (here or in its own flow run, ``flows.cluster``) pushes its
branch, and the parent pushes the integration branch, and the base branch when it lands.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect_work_clusters.tasks import credentials
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.errors import BadInput, WorkClustersError
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import remote as gitremote
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.integration.land import LandResult
from prefect_work_clusters.tasks.options import RunOptions

HOME_ENV = "WORK_CLUSTERS_HOME"


@contextmanager
def git_env(ctx_or_credentials: RunContext | str | None) -> Iterator[dict[str, str]]:
    """The environment for git calls that talk to the remote (the askpass helper, when there is a
    token), for as long as the block lasts."""
    name = ctx_or_credentials.credentials if isinstance(ctx_or_credentials, RunContext) else ctx_or_credentials
    with gitremote.askpass_env(credentials.token(name)) as env:
        yield env


def root_for(url: str, workspace: str | None, sub: str | None = None) -> Path:
    """Where a run keeps its clone of ``url`` (``<root>/<repo>``) and its workspace (beside it, as
    in local mode: ``<root>/<repo>.clusters/<plan>``): ``--workspace`` when given, else a folder
    of its own under ``$WORK_CLUSTERS_HOME`` (default ``~/.cache/work-clusters``). ``sub`` keeps a
    cluster flow run's clone apart from its parent's on a shared machine."""
    if workspace:
        root = Path(workspace).expanduser().resolve()
    else:
        home = Path(os.environ.get(HOME_ENV) or "~/.cache/work-clusters").expanduser()
        root = home.resolve() / "remotes" / gitremote.name_of(url)
    return root / sub if sub else root


def clone_of(url: str, root: Path) -> Path:
    return root / gitremote.name_of(url).rsplit("-", 1)[0]


def open_clone(plan: str, url: str, options: RunOptions, *, relative_to: Path | None = None,
               sub: str | None = None) -> tuple[Path, Path, str]:
    """Our clone of ``url``, cloned or fetched, its checkout at the base; with the plan's path and
    that base. A relative ``plan`` is taken from ``relative_to`` (the current directory on the
    command line) when it is there, else from the repository at the base ref."""
    clone = clone_of(url, root_for(url, options.workspace, sub))
    try:
        with git_env(options.credentials) as env:
            gitremote.sync_clone(url, clone, env)
    except gitops.GitError as exc:
        raise BadInput(f"cannot clone or fetch {gitremote.scrub(url)}: {exc}; check the URL and its "
                       "credentials (--credentials, or GITHUB_TOKEN)") from None
    base = options.base or gitremote.default_branch(clone)
    if base is None:
        raise BadInput(f"{gitremote.scrub(url)} has no branch to start from; push one, or pass --base")
    gitremote.check_out(clone, base)
    plan_path = Path(plan).expanduser()
    if not plan_path.is_absolute():
        here = (relative_to or Path.cwd()) / plan_path
        plan_path = here if relative_to is not None and here.is_file() else clone / plan_path
    return clone, plan_path, base


def plan_branches(ctx: RunContext) -> list[str]:
    # Not the integration branch: one we did not make here is foreign (tasks.integration.tip).
    return [ctx.base_branch, *(ctx.branch(c.name) for c in ctx.plan.clusters)]


def catch_up(ctx: RunContext, branches: list[str] | None = None) -> list[str]:
    """Fetch, then bring the plan's local branches up to the remote's (a run resumed on another
    machine, or cluster branches pushed by their own flow runs); notes for branches that diverged."""
    assert ctx.remote is not None
    with git_env(ctx) as env:
        gitremote.fetch(ctx.repo, env)
    held = {wt.branch: wt.path for wt in gitworktrees.worktrees(ctx.repo) if wt.branch}
    return gitremote.adopt(ctx.repo, branches or plan_branches(ctx), held)


def push(ctx: RunContext, branches: list[str]) -> list[str]:
    """Push ``branches`` that exist here to the remote under the same names, never forced; the
    notes say what was pushed, or why the remote refused (a branch that moved there is reported,
    not overwritten)."""
    assert ctx.remote is not None
    present = [b for b in branches if gitops.branch_exists(ctx.repo, b)]
    if not present:
        return []
    with git_env(ctx) as env:
        refused = gitremote.push(ctx.repo, [f"refs/heads/{b}:refs/heads/{b}" for b in present], env)
    where = gitremote.scrub(ctx.remote)
    if refused:
        return [f"push to {where} refused ({refused}); the remote's branch moved: nothing was forced"]
    return [f"pushed to {where}: {', '.join(present)}"]


def delete_branches(ctx: RunContext, deleted: list[str], seen: dict[str, str]) -> list[str]:
    """Delete on the remote the plan branches just deleted here, each only where the remote's was
    the very commit judged here (``seen``: the local tips before deleting, fetched and caught up);
    one the remote moved, or that went its own way there, is kept."""
    assert ctx.remote is not None
    fetched = {b: gitops.resolve_ref(ctx.repo, f"refs/remotes/origin/{b}") for b in deleted}
    gone = {b: sha for b, sha in fetched.items() if sha is not None and sha == seen.get(b)}
    kept = [f"kept {b} on the remote: it differs from the branch judged here" for b, sha in fetched.items()
            if sha is not None and b not in gone]
    if not gone:
        return kept
    with git_env(ctx) as env:
        refused = gitremote.delete(ctx.repo, gone, env)
    where = gitremote.scrub(ctx.remote)
    if refused:
        return [*kept, f"deleting on {where} refused ({refused}); nothing was forced"]
    return [*kept, f"deleted on {where}: {', '.join(gone)}"]


def push_landed(ctx: RunContext, landed: LandResult) -> LandResult:
    """A landing done in our clone, pushed to the remote's base branch, never forced: a base that
    moved there meanwhile means not landed."""
    if not ctx.remote or not landed.landed or landed.branch is None:
        return landed
    pushed = push(ctx, [landed.branch])
    if pushed and "refused" in pushed[0]:
        return landed.model_copy(update={"landed": False, "message": f"not landed on the remote: {pushed[0]}"})
    return landed.model_copy(update={"message": f"{landed.message}; {pushed[0] if pushed else ''}"})


def push_base(ctx: RunContext) -> list[str]:
    """The base branch must reach the remote before any cluster runs anywhere: else refuse the run."""
    notes = push(ctx, [ctx.base_branch])
    if notes and "refused" in notes[0]:
        raise WorkClustersError(f"{ctx.base_branch}: {notes[0]}; run `work-clusters clean --branches` "
                                "against the remote's branches, or pick another plan name")
    return notes
