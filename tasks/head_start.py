"""The create-worktrees step: the worktrees a CLI run began ahead, while Prefect started
(``prepare_ahead``), adopted by the run's flow, or made by the step itself (``tasks.worktrees``)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from prefect_work_clusters.tasks.checks.user_side import CheckoutState
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.worktrees import Prepared, prepare


@dataclass
class HeadStart:
    """A run's worktrees begun by the CLI once its input is checked, while Prefect starts (the
    temporary server's start is ~6 s of one core here, with the other idle); ``create_worktrees``
    adopts them. ``checkout``: the containment watch's read of your checkout, begun beside them."""

    ctx: RunContext
    inputs: str
    prepared: Future[Prepared]
    checkout: Future[CheckoutState] | None


_AHEAD: dict[Path, HeadStart] = {}
_AHEAD_LOCK = threading.Lock()


def _inputs(ctx: RunContext) -> str:
    """A digest of what the base commit is made of besides the base itself: the plan file and the
    contracts, as they are now."""
    digest = hashlib.sha256()
    for path in [ctx.plan_file, *(ctx.repo / rel for rel in ctx.plan.contracts)]:
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"(missing)")
        digest.update(b"\0")
    return digest.hexdigest()


# How much the head start yields to the temporary server's start, which runs beside it on the
# critical path: the run's flow begins once that start ends, and the worktrees have the other core.
HEAD_START_NICE = 10


def _yield_cpu(steps: int) -> None:
    """This thread, and the threads and processes it starts from now on, ``steps`` nice steps
    lower (Linux keeps a nice value per thread, and a thread or process inherits its creator's).
    The thread must end with its work: its priority cannot be raised again unprivileged."""
    if sys.platform.startswith("linux"):  # elsewhere PRIO_PROCESS takes a process id, not a thread's
        tid = threading.get_native_id()
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + steps))


def _timed(ctx: RunContext) -> Prepared:
    _yield_cpu(HEAD_START_NICE)  # in the head start's own thread, which ends with it
    t = time.monotonic()
    prepared = prepare(ctx)
    return prepared.model_copy(update={"made_ahead": time.monotonic() - t})


def prepare_ahead(ctx: RunContext, checkout: Future[CheckoutState] | None = None) -> HeadStart:
    """Begin ``prepare(ctx)`` in the background now, for this process's flow run of ``ctx`` to
    adopt (``create_worktrees``). The caller holds the plan's run lock, and nothing the flow does
    before its worktrees step may change what they are made from (see ``flows.work_clusters``)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wc-head-start")
    try:
        start = HeadStart(ctx=ctx, inputs=_inputs(ctx), prepared=pool.submit(_timed, ctx), checkout=checkout)
    finally:
        pool.shutdown(wait=False)
    with _AHEAD_LOCK:
        _AHEAD[ctx.runs_dir] = start
    return start


def head_start(ctx: RunContext) -> HeadStart | None:
    """The head start begun in this process for ``ctx``'s workspace, if any (not taken)."""
    with _AHEAD_LOCK:
        start = _AHEAD.get(ctx.runs_dir)
    return start if start is not None and start.ctx.repo == ctx.repo else None


def adopt(ctx: RunContext) -> Prepared | None:
    """The head start's result, once finished, when it was made for this very run: the same
    resolved inputs, and the plan and contracts unchanged since it began. Else None, and the
    caller prepares the worktrees itself, from whatever the head start made, as a second run
    would (and meets, and reports, any error the head start met)."""
    with _AHEAD_LOCK:
        start = _AHEAD.pop(ctx.runs_dir, None)
    if start is None:
        return None
    try:
        prepared = start.prepared.result()
    except Exception:  # noqa: BLE001 - prepared again by the caller, which meets it and says so
        return None
    return prepared if start.ctx == ctx and start.inputs == _inputs(ctx) else None


def settle_ahead(ctx: RunContext) -> None:
    """Wait for a head start of ``ctx``'s workspace that no flow adopted (the run stopped before
    its worktrees step, or Prefect never started), and forget it: the caller lets the plan's run
    lock go only once nothing of the run is left running."""
    with _AHEAD_LOCK:
        start = _AHEAD.pop(ctx.runs_dir, None)
    if start is not None:
        pending: list[Future[Any]] = [start.prepared, *([start.checkout] if start.checkout else [])]
        wait(pending)


@task(name="create-worktrees", cache_policy=NO_CACHE)
def create_worktrees(ctx: RunContext) -> Prepared:
    """Commit the plan and contracts to the base branch and give every cluster its worktree."""
    logger = get_run_logger()
    prepared = adopt(ctx)
    if prepared is not None:
        logger.info("worktrees made by the CLI while Prefect started, in %.1f s before this flow run began",
                    prepared.made_ahead)
    else:
        prepared = prepare(ctx)
    for note in prepared.notes:
        logger.warning(note)
    for rec in prepared.records:
        state = "resumed: finished earlier" if rec.resumed else "ready"
        logger.info("worktree %s on %s from %s (%s)", rec.worktree, rec.branch, rec.base_sha[:12], state)
    return prepared
