"""The integration branch is ours alone: we create ``clusters/<plan>/integration`` from the recorded
base, and record its tip in ``.runs/integration-tip.json`` after every commit we put on it.

An agent runs as the user and can create or move that branch (say, from the base with a
``backdoor.py`` commit): it would "grow from the base" and be merged onto and landed. So a tip we
did not record is foreign, and the run refuses to build on it or land it. The one tip we accept
without having made it is a person finishing the merge we left for them: a commit whose parents
are exactly the recorded tip and the cluster commit we were merging.
"""

from __future__ import annotations

import json
import shlex

from prefect_work_clusters.tasks.context import RunContext, write_json_atomic
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import merge as gitmerge


def record_tip(ctx: RunContext, merging: str | None = None, tip: str | None = None) -> None:
    """Record the integration branch's tip as ours; ``merging`` is the commit of a merge we left
    for a person to finish; ``tip`` the commit the caller has just moved the branch to itself."""
    tip = tip or gitops.resolve_ref(ctx.repo, f"refs/heads/{ctx.integration_branch}")
    write_json_atomic(ctx.runs_dir / "integration-tip.json",
                      {"branch": ctx.integration_branch, "tip": tip, "merging": merging})


def _recorded(ctx: RunContext) -> dict[str, str | None]:
    try:
        data = json.loads((ctx.runs_dir / "integration-tip.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def foreign_tip(ctx: RunContext) -> str | None:
    """Why the integration branch may not be used (one line), or None when it is ours or absent."""
    branch = ctx.integration_branch
    tip = gitops.resolve_ref(ctx.repo, f"refs/heads/{branch}")
    if tip is None:
        return None
    rec = _recorded(ctx)
    ours, merging = rec.get("tip"), rec.get("merging")
    if tip == ours:
        return None
    if ours and merging and gitmerge.parents(ctx.repo, tip) == [ours, merging]:
        return None  # a person committed the merge we left mid-way, as the instructions said
    wt = ctx.integration_worktree
    remove = (f"git worktree remove --force {shlex.quote(str(wt))} && " if (wt / ".git").exists() else "")
    return (f"{branch} is at {tip[:12]}, a commit work-clusters did not make (created or moved outside our runs, "
            f"possibly by an agent); refusing to build on it or land it. Inspect it (git -C "
            f"{shlex.quote(str(ctx.repo))} log {branch}), then remove it: {remove}git -C "
            f"{shlex.quote(str(ctx.repo))} branch -D {branch}")
