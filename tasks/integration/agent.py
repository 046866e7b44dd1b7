"""The integration agent (role ``integration``): resolves what the deterministic tiers could not,
and fixes a merged tree whose verification failed.

It gets the same protocol as a cluster's agent (``WC_CLUSTER=integration``, the integration
worktree and branch), plus ``WC_CONFLICTS`` (newline-separated paths; empty for a verification
fix), ``WC_DECISIONS_FILE`` and, where there is feedback, ``WC_FEEDBACK_FILE``. Its prompt comes
from ``prompts/integration.md.j2``. Whether its result is accepted is decided by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from prefect_work_clusters.tasks.agents.call import Call, invoke
from prefect_work_clusters.tasks.agents.prompts import PROMPTS, contracts_for_prompt
from prefect_work_clusters.tasks.agents.registry import AgentBackend
from prefect_work_clusters.tasks.checks import containment
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.integration.decisions import parse_decisions
from prefect_work_clusters.tasks.integration.models import AgentCall, ConflictFile

ROLE = "integration"


def decisions_dir(ctx: RunContext) -> Path:
    return ctx.runs_dir / "integration" / "decisions"


def discard_decisions(call: AgentCall) -> None:
    """The call's result was dropped, so its decisions no longer explain anything in the tree."""
    path = Path(call.decisions_file)
    if path.is_file():
        path.replace(path.with_suffix(".discarded"))
    call.decisions = []


def run_integration_agent(ctx: RunContext, backend: AgentBackend, *, purpose: Literal["conflict", "verification"],
                          label: str, attempt: int, conflicts: Sequence[ConflictFile] = (),
                          merging: str = "", merged: Sequence[str] = (), feedback: str = "",
                          on_line: Callable[[str], None] | None = None) -> AgentCall:
    """Run the integration agent once in the integration worktree; its edits are left in place."""
    wt, branch = ctx.integration_worktree, ctx.integration_branch
    prompt_file = ctx.prompt_file(f"integration-{label}", attempt)
    decisions_file = decisions_dir(ctx) / f"{label}-{attempt}.md"
    decisions_file.parent.mkdir(parents=True, exist_ok=True)
    decisions_file.unlink(missing_ok=True)  # a stale file from an earlier run must not speak for this one
    prompt = PROMPTS.get_template("integration.md.j2").render(
        plan=ctx.plan, purpose=purpose, branch=branch, merging=merging,
        merging_branch=ctx.branch(merging) if merging else "", merged=list(merged), conflicts=list(conflicts),
        contracts=contracts_for_prompt(ctx), decisions_file=str(decisions_file), feedback=feedback,
        attempt=attempt, verify=ctx.plan.integration.verify)
    owned = [p for c in ctx.plan.clusters for p in c.paths] + list(ctx.plan.shared)
    invocation = Call(role=ROLE, name=ROLE, label=f"integration-{label}", worktree=wt, branch=branch,
                      attempt=attempt, owned=owned,
                      extra_env={"WC_CONFLICTS": "\n".join(f.path for f in conflicts),
                                 "WC_DECISIONS_FILE": str(decisions_file)},
                      hint="install it, or pass --integration-agent / --integration-agent-cmd")
    call = AgentCall(purpose=purpose, label=label, attempt=attempt, prompt_file=str(prompt_file),
                     decisions_file=str(decisions_file))
    timeout = backend.timeout_seconds or ctx.plan.limits.timeout_seconds
    try:
        with containment.window(ctx, ROLE) as win:
            res, usage = invoke(ctx, backend, invocation, prompt, feedback, timeout, on_line)
    except WorkClustersError as exc:
        call.failure = f"the integration agent could not start: {exc}"
        return call
    call.exit_code, call.timed_out, call.duration = res.exit_code, res.timed_out, round(res.duration, 3)
    call.output_tail, call.cost_usd = res.output_tail, usage.cost_usd if usage else None
    if usage is not None:
        call.total_tokens, call.denials = usage.total_tokens, list(usage.denials)
    said = f": {usage.error}" if usage is not None and usage.error else ""
    if win.tampering:
        call.failure = ("the integration agent changed the shared git dir (restored; its result is dropped): "
                        + "; ".join(win.tampering))
    elif res.timed_out:
        call.failure = f"the integration agent ran past its timeout of {timeout:g} s and was killed"
    elif res.exit_code != 0:
        call.failure = f"the integration agent exited with status {res.exit_code}{said}"
    elif usage is not None and usage.is_error:
        call.failure = f"the integration agent exited 0 but reported an error in its result{said}"
    if decisions_file.exists():
        call.decisions = parse_decisions(decisions_file.read_text(errors="replace"), source=decisions_file.name)
    return call
