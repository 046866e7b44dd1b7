"""The head start of the create-worktrees step (``tasks.create_worktrees``): a CLI run's worktrees,
begun in the background once its input is checked, before Prefect is even imported, for the run's
flow to adopt. Nothing here imports Prefect (its import is what the head start runs beside)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_work_clusters.tasks.checks.user_side import CheckoutState, read_checkout
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.proc import background
from prefect_work_clusters.tasks.worktrees import Prepared, prepare


@dataclass
class HeadStart:
    """A run's worktrees begun by the CLI once its input is checked, while Prefect starts: its
    import (~2 s of one core) and, in local mode, its temporary server's (~6 s of the other);
    ``create_worktrees`` adopts them. ``checkout``: the containment watch's read of your checkout,
    begun beside them."""

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


# How much the head start yields to what runs beside it on the critical path: Prefect's import in
# the CLI, and in local mode the temporary server's start, which the run's flow waits for.
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
    start = HeadStart(ctx=ctx, inputs=_inputs(ctx), prepared=background.begin("wc-head-start", _timed, ctx),
                      checkout=checkout)
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


def begin_ahead(ctx: RunContext) -> None:
    """For the CLI, its input checked and the plan's run lock held: begin the run's worktrees, and
    the read of your checkout, while Prefect starts; the flow adopts them. Not where the flow does
    something first that changes what they are made from: a remote's branches are caught up first,
    a rerun investigation restarted first."""
    if not (ctx.remote or ctx.dispatch or (ctx.rerun and ctx.plan.investigates)):
        prepare_ahead(ctx, read_checkout(ctx.repo))
