"""Errors meant for people: one line that says what went wrong and what to do."""

from __future__ import annotations

from dataclasses import dataclass


class WorkClustersError(Exception):
    """An expected failure: the CLI prints its message as one line and exits with ``exit_code``."""

    exit_code = 1


class BadInput(WorkClustersError):
    """The user's input (plan, flags, repo) is wrong; nothing was created."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One validation problem: where it is and what is wrong."""

    file: str
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}"


class PlanError(BadInput):
    """A plan failed validation; every problem is listed at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"the plan is invalid ({len(problems)} problem(s)); fix these and re-run:\n{lines}")
