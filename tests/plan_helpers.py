"""What the plan tests share: a valid plan, writing one, and reading the problems it gives."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from prefect_work_clusters.tasks.errors import PlanError, Problem
from prefect_work_clusters.tasks.plan.load import load_plan

PLANS = Path(__file__).parent / "plans"

VALID = """\
name: demo
goal: Build the demo
clusters:
  - name: api
    paths: [api/]
    tasks: [build the API, test it]
  - name: ui
    paths: [ui/]
    tasks: [build the UI, style it]
"""


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def refused(path: Path, repo: Path | None = None, base: str | None = None) -> list[Problem]:
    with pytest.raises(PlanError) as caught:
        load_plan(path, repo, base=base)
    assert caught.value.exit_code == 2
    return caught.value.problems


def line_of(text: str, needle: str, nth: int = 0) -> int:
    """The 1-based line of the ``nth`` line of ``text`` holding ``needle``."""
    return [i for i, line in enumerate(textwrap.dedent(text).splitlines(), 1) if needle in line][nth]
