"""One agent call, whatever its role: prompt file, the protocol's environment, the process, usage.

Cluster attempts (``tasks.agents.attempt``), the integration agent and the synthesis agent all run through
``invoke``; what differs between them (their prompt, their extra ``WC_*`` variables, what they
check afterwards) stays with each role.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prefect_work_clusters.tasks.agents.registry import AgentBackend, NoAgent, Usage, resolve_agent
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.plan.models import AgentRef
from prefect_work_clusters.tasks.proc.runner import ProcessResult, run_process
from prefect_work_clusters.tasks.proc.sandbox import Sandbox


def agent_for(ctx: RunContext, ref: AgentRef | None) -> AgentBackend:
    """The backend for ``ref``, else the plan's default agent."""
    return resolve_agent(ref if ref is not None else ctx.plan.agent)


def integration_backend(ctx: RunContext) -> AgentBackend | None:
    """``integration.agent``, else the plan's agent; None when neither is set."""
    try:
        return agent_for(ctx, ctx.plan.integration.agent)
    except NoAgent:
        return None


def max_attempts(ctx: RunContext, backend: AgentBackend) -> int:
    """Attempts per job (a cluster, one merge's conflicts, a verification, a synthesis): 1 + retries."""
    return 1 + (backend.retries if backend.retries is not None else ctx.plan.limits.retries)


def base_env(ctx: RunContext, worktree: Path) -> dict[str, str]:
    """The inherited environment, minus git's repository variables, plus a commit identity when
    the machine has none (an agent's own `git commit` must not fail for want of one)."""
    env = {k: v for k, v in os.environ.items() if k not in gitops.LOCAL_ENV_VARS}
    identity = gitops.identity_env(ctx.repo)
    for key, value in identity.items():
        env.setdefault(key, value)
    if identity:
        # The same identity as config, for tools that ask `git config user.name` and, finding
        # none, write one into the repo's shared config: aider does, and agents running side by
        # side then race on its .git/config.lock (measured: "Lock for file ... did already exist").
        env.update({"GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_0": "user.name",
                    "GIT_CONFIG_VALUE_0": identity["GIT_AUTHOR_NAME"], "GIT_CONFIG_KEY_1": "user.email",
                    "GIT_CONFIG_VALUE_1": identity["GIT_AUTHOR_EMAIL"]})
    return env


def sandbox_for(ctx: RunContext, worktree: Path, extra: Sequence[Path] = ()) -> Sandbox | None:
    """With ``sandbox.enabled``, where a process of ``worktree`` may write: the worktree, its own
    git dir in the shared one (index, HEAD, logs, merge state) and the object store, so that
    ``git add`` and ``git commit`` work there (a cluster's HEAD is detached, so its commits move
    no ref), plus ``extra`` (the folders of the files its role writes). The object store being
    writable means an agent can add objects, which is harmless, and also delete or overwrite
    object files, which can damage the repository's history; refs, config, hooks and ``info/``
    stay read-only."""
    if not ctx.plan.sandbox.enabled:
        return None
    return Sandbox(writable=(worktree, gitops.git_dir(worktree), gitops.common_dir(worktree) / "objects", *extra))


def protocol_env(ctx: RunContext, role: str, cluster: str, worktree: Path, branch: str, prompt_file: Path,
                 attempt: int, owned_paths: list[str]) -> dict[str, str]:
    """The ``WC_*`` variables every agent gets (SPEC 4); a role adds its own beside them."""
    return {
        "WC_ROLE": role, "WC_PLAN": ctx.plan.name, "WC_CLUSTER": cluster, "WC_WORKTREE": str(worktree),
        "WC_BRANCH": branch, "WC_PROMPT_FILE": str(prompt_file), "WC_ATTEMPT": str(attempt),
        "WC_OWNED_PATHS": "\n".join(owned_paths), "WC_CONTRACT_FILES": "\n".join(ctx.plan.contracts),
    }


# The files a role's protocol asks its agent to write, all outside the worktree (under ``.runs/``).
OUTPUT_FILES = ("WC_FINDINGS_FILE", "WC_ACTION_PLAN_FILE", "WC_DECISIONS_FILE", "WC_PLAN_FILE")


def writable_dirs(worktree: Path, env: Mapping[str, str]) -> list[Path]:
    """The folders of the call's output files that lie outside its worktree: an agent whose tool
    confines writes to its working directory (Claude Code, Codex) is given them with ``--add-dir``."""
    folders = [Path(env[key]).parent for key in OUTPUT_FILES if env.get(key)]
    return [f for f in folders if not f.resolve().is_relative_to(worktree.resolve())]


def log_segment(path: Path, offset: int) -> str:
    with path.open("rb") as fh:
        fh.seek(offset)
        return fh.read().decode(errors="replace")


@dataclass(frozen=True)
class Call:
    """Who is called, where, and with what."""

    role: str  # cluster | integration | synthesis | planner
    name: str  # WC_CLUSTER: the cluster's name, or the role's
    label: str  # names the prompt, feedback and log header of this call
    worktree: Path
    branch: str
    attempt: int
    owned: list[str]
    extra_env: Mapping[str, str]
    hint: str


def invoke(ctx: RunContext, backend: AgentBackend, call: Call, prompt: str, feedback: str, timeout: float,
           on_line: Callable[[str], None] | None = None,
           on_start: Callable[[int], None] | None = None) -> tuple[ProcessResult, Usage | None]:
    """Run ``backend`` once for ``call``: the prompt in its file, the feedback in ``WC_FEEDBACK_FILE``,
    the output appended to the role's log. Returns the process result and the usage it reported."""
    prompt_file = ctx.prompt_file(call.label, call.attempt)
    prompt_file.parent.mkdir(parents=True, exist_ok=True)
    prompt_file.write_text(prompt)
    env = base_env(ctx, call.worktree)
    for key, value in backend.env_defaults.items():
        env.setdefault(key, value)
    env.update(backend.env)
    env.update(protocol_env(ctx, call.role, call.name, call.worktree, call.branch, prompt_file, call.attempt,
                            call.owned))
    env.update(call.extra_env)
    if feedback:
        feedback_file = ctx.runs_dir / "feedback" / f"{call.label}-{call.attempt}.md"
        feedback_file.parent.mkdir(parents=True, exist_ok=True)
        feedback_file.write_text(feedback)
        env["WC_FEEDBACK_FILE"] = str(feedback_file)
    values = {"prompt": prompt, "prompt_file": str(prompt_file), "cluster": call.name,
              "worktree": str(call.worktree), "plan": ctx.plan.name, "branch": call.branch}
    log = ctx.log_file(call.role if call.role != "cluster" else call.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.write(f"\n=== {call.label}: attempt {call.attempt} ===\n")
    offset = log.stat().st_size
    # The files a role writes outside its worktree (findings, decisions, action plan): their folders.
    outputs = [Path(v).parent for k, v in call.extra_env.items() if k.endswith("_FILE")]
    for folder in outputs:
        folder.mkdir(parents=True, exist_ok=True)
    argv = backend.render(values, writable_dirs(call.worktree, call.extra_env))
    res = run_process(argv, cwd=call.worktree, env=env, timeout=timeout, log_path=log, on_line=on_line,
                      hint=call.hint, on_start=on_start, sandbox=sandbox_for(ctx, call.worktree, outputs))
    return res, backend.parse_usage(log_segment(log, offset))
