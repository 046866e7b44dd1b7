"""Expected failures end runs Failed in plain words, never as crashes.

A task or flow that raises makes Prefect log the whole traceback at ERROR, end the state with
``Task run encountered an exception AgentFailed: ...`` and, in a worker, log ``Engine execution
exited with unexpected exception`` with a second traceback. For a failure we expected (an agent
that failed, a bad plan, a failed verification) that reads like a crash. So our tasks and flows
*return* ``Failed(message=...)`` states with one line of prose (``failed``), Prefect still retries
a returned Failed state, and ``quiet_expected_failures`` keeps Prefect's own log lines about those
states to one readable line each. Our own bugs keep their tracebacks.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, cast

from prefect_work_clusters.tasks.errors import WorkClustersError

if TYPE_CHECKING:  # Prefect is imported where a state is made: ``one_line`` and ``last_lines`` need none
    from prefect.client.schemas.objects import State

_MAX_TAIL = 300
_FRAME = re.compile(r'^(Traceback \(most recent call last\):|\s+File ".*", line \d+)')


def one_line(text: str) -> str:
    """``text`` as one line of prose: line breaks become ``; ``, runs of blanks one space.

    >>> one_line("the plan is invalid:\\n  plan.yaml: clusters: empty\\n")
    'the plan is invalid: plan.yaml: clusters: empty'
    """
    parts = [p for p in (re.sub(r"\s+", " ", line).strip() for line in text.splitlines()) if p]
    return "".join(p + ("" if i == len(parts) - 1 else " " if p.endswith(":") else "; ")
                   for i, p in enumerate(parts))


def last_lines(output: str, lines: int = 3) -> str:
    """The last non-empty lines of what a process printed, quoted on one line, at most ~300 chars;
    empty when it printed nothing. A Python traceback in it is told by its error line, not its
    frames.

    >>> last_lines("a\\n\\nb\\nc\\nd\\n")
    'it printed last: "b / c / d"'
    >>> last_lines('x\\nTraceback (most recent call last):\\n  File "t.py", line 1, in f\\n    f()\\nKeyError: 1')
    'it printed last: "x / KeyError: 1"'
    """
    kept: list[str] = []
    frame = False
    for x in output.splitlines():
        source = frame and x.startswith("    ")  # the source line a frame shows under it
        frame = bool(_FRAME.match(x))
        if x.strip() and not frame and not source:
            kept.append(x)
    text = " / ".join(re.sub(r"\s+", " ", x).strip() for x in kept[-lines:])
    if len(text) > _MAX_TAIL:
        text = "..." + text[-_MAX_TAIL:]
    return f'it printed last: "{text}"' if text else ""


def failed(message: str, data: Any = None) -> State[Any]:
    """A Failed state whose message is one line of prose (no repr, no traceback, no ``\\n``)."""
    from prefect.states import Failed

    return Failed(message=one_line(message), data=data)


def plan_problems(source: str, exc: WorkClustersError) -> str:
    """Publish a bad plan's problems as the ``plan-problems-<name>`` markdown artifact, one row per
    problem; returns the key. ``source`` names the plan as the caller gave it."""
    from prefect.artifacts import create_markdown_artifact

    from prefect_work_clusters.tasks.errors import PlanError

    slug = re.sub(r"[^a-z0-9]+", "-", source.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()).strip("-") or "plan"
    key = f"plan-problems-{slug}"
    if isinstance(exc, PlanError):
        rows = ["| where | field | what is wrong |", "|---|---|---|"] + [
            f"| {p.file}{f':{p.line}' if p.line else ''} | {p.field} | {_cell(p.message)} |" for p in exc.problems]
        body = [f"❌ **The plan `{source}` is invalid: {len(exc.problems)} problem(s).** Fix them and run again.",
                "", *rows]
    else:
        body = [f"❌ **The run of `{source}` could not start.**", "", one_line(str(exc))]
    create_markdown_artifact(markdown="\n".join(body), key=key, description=f"Why {source} could not run")
    return key


def _cell(text: str) -> str:
    return one_line(text).replace("|", "\\|")


class _Quiet(logging.Filter):
    """Prefect's log records about our expected failures, as one line without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.client.schemas.objects import State
        from prefect.exceptions import FailedRun

        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        states = [a for a in record.args if isinstance(a, State)] if isinstance(record.args, tuple) else []
        if isinstance(exc, FailedRun):
            return False  # a flow that returned Failed: "Finished in state Failed(...)" said it already
        if isinstance(exc, WorkClustersError):
            record.msg, record.args = "%s", (one_line(str(exc)),)
        elif str(record.msg).startswith("Task run failed with state:") and exc is None and not states:
            # "... Failed(message=..., result=<the whole result's repr>) - Retries are exhausted" (or
            # no retries), formatted already and logged with exc_info=True outside any exception: the
            # "Finished in state Failed(...)" line that follows says the same in one readable line.
            return False
        elif states:  # "... failed with state: <repr> - Retry 1/2 will start immediately"
            record.msg = record.msg.replace("%r", "%s")
            record.args = tuple(a.message if isinstance(a, State) else a for a in cast(tuple[Any, ...], record.args))
        else:
            return True
        record.exc_info, record.exc_text = None, None
        return True


_FILTER = _Quiet()


def quiet_expected_failures() -> None:
    """Install the filter on Prefect's task and flow run loggers (idempotent)."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
