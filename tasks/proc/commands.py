"""Verify and setup commands: split as a POSIX shell splits words, run without one."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from prefect_work_clusters.tasks.context import CommandResult
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.proc.runner import run_process
from prefect_work_clusters.tasks.proc.sandbox import Sandbox


def run_commands(commands: list[str], cwd: Path, env: dict[str, str], timeout: float,
                 log_path: Path, on_line: Callable[[str], None] | None = None,
                 sandbox: Sandbox | None = None) -> list[CommandResult]:
    """Run each command in ``cwd`` (under ``sandbox`` when given); stop at the first failure."""
    results: list[CommandResult] = []
    for command in commands:
        argv = shlex.split(command)
        try:
            res = run_process(argv, cwd=cwd, env=env, timeout=timeout, log_path=log_path, on_line=on_line,
                              sandbox=sandbox)
        except WorkClustersError as exc:
            results.append(CommandResult(command=command, exit_code=None, output_tail=str(exc)))
            break
        results.append(CommandResult(command=command, exit_code=res.exit_code, timed_out=res.timed_out,
                                     duration=res.duration, output_tail=res.output_tail))
        if not results[-1].ok:
            break
    return results
