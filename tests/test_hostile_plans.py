"""Hostile plans (issue 21): alias bombs, deep nesting, huge files, paths into .git or with
control characters. Each is refused with exit 2 and one clear problem, never a hang or a
RecursionError. Before the fix: the alias bomb hung `validate` past 60 s, the 5,000-deep nesting
raised RecursionError (exit 3), and `.git/hooks/` and a path with a newline were accepted."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from prefect_work_clusters.tasks.errors import PlanError, Problem
from prefect_work_clusters.tasks.plan.bounds import MAX_BYTES, MAX_DEPTH
from prefect_work_clusters.tasks.plan.load import load_plan
from tests.conftest import CLI
from tests.plan_helpers import VALID


def refused(path: Path) -> list[Problem]:
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    return caught.value.problems


def alias_bomb(levels: int = 9) -> str:
    """The billion laughs: each level is nine aliases of the one before, 9**9 strings in all."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\nname: bomb\nclusters: []\n"


def test_an_alias_bomb_is_refused_by_validate_with_exit_2(tmp_path: Path) -> None:
    plan = tmp_path / "bomb.yaml"
    plan.write_text(alias_bomb())
    res = subprocess.run([*CLI, "validate", str(plan)], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PREFECT_HOME": str(tmp_path / "ph")})
    assert res.returncode == 2, res.stderr
    assert "expands to more than" in res.stderr and "Traceback" not in res.stderr
    assert f"{plan}:" in res.stderr


@pytest.mark.parametrize("text", [
    "name: deep\nclusters: " + "[" * 5000 + "]" * 5000 + "\n",
    "name: deep\nx:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 900)) + "  " * 900 + "v\n",
    "name: deep\nx:\n  " + "- " * 5000 + "v\n",
    "name: deep\nx: " + "[" * 200_000 + "\n",
], ids=["flow", "block mapping", "block sequence", "unclosed flow"])
def test_deep_nesting_is_a_plan_problem_not_a_recursion_error(tmp_path: Path, text: str) -> None:
    plan = tmp_path / "deep.yaml"
    plan.write_text(text)
    problems = refused(plan)
    assert len(problems) == 1 and f"nests deeper than {MAX_DEPTH} levels" in problems[0].message


def test_a_plan_file_past_1_mb_is_refused_before_it_is_read(tmp_path: Path) -> None:
    plan = tmp_path / "big.md"
    plan.write_text("# Big\n\n" + "word " * (MAX_BYTES // 5 + 10))
    [problem] = refused(plan)
    assert "a plan file is at most 1,000,000 bytes" in problem.message


def test_markdown_front_matter_bomb_points_into_the_file(tmp_path: Path) -> None:
    plan = tmp_path / "bomb.md"
    plan.write_text("---\n" + alias_bomb() + "---\n# Bomb\n")
    [problem] = refused(plan)
    assert "the front matter expands to more than" in problem.message
    assert problem.line == 7  # l5, where the expansion passes the bound: line 6 of the front matter


def test_deep_markdown_is_a_plan_problem_not_a_recursion_error(tmp_path: Path) -> None:
    plan = tmp_path / "deep.md"
    plan.write_text("# Deep\n\n## Clusters\n\n1. **Api** (`api/`)\n   - " + "*" * 3000 + "task" + "*" * 3000 + "\n")
    [problem] = refused(plan)
    assert f"nests deeper than {MAX_DEPTH} levels" in problem.message and problem.line == 6


def test_deep_block_quotes_in_markdown_are_read(tmp_path: Path) -> None:
    plan = tmp_path / "deep.md"
    plan.write_text("# Deep\n\n" + "> " * 5000 + "x\n\n## Clusters\n\n1. **Api** (`api/`)\n2. **Ui** (`ui/`)\n")
    assert [c.name for c in load_plan(plan).clusters] == ["api", "ui"]


def test_anchors_within_the_bound_still_work(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(VALID.replace("tasks: [build the API, test it]", "tasks: &t [build the API, test it]")
                    .replace("tasks: [build the UI, style it]", "tasks: *t"))
    assert load_plan(plan).clusters[1].tasks == ["build the API", "test it"]


@pytest.mark.parametrize(("path", "why"), [
    (".git/", "inside '.git'"),
    (".git/hooks/", "inside '.git'"),
    (".GIT/hooks/pre-commit", "inside '.git'"),
    ("vendor/lib/.git/", "inside '.git'"),
    (".git./config", "inside '.git'"),
    (".gi?/", "inside '.git'"),
    ("api\nsecret/", "control character"),
    ("api/\x1b[2Jx.py", "control character"),
    ("ap\ti/", "control character"),
])
def test_paths_into_git_or_with_control_characters_are_refused(tmp_path: Path, path: str, why: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(VALID.replace("paths: [api/]", f"paths: [{path!r}]".replace("'", '"')
                                  .replace("\n", "\\n").replace("\x1b", "\\e").replace("\t", "\\t")))
    problems = refused(plan)
    assert [p.field for p in problems] == ["clusters.0.paths.0"], problems
    assert why in problems[0].message


@pytest.mark.parametrize("path", [".github/", ".gitignore", "docs/.gitkeep", "src/git/", ".gitlab-ci.yml"])
def test_names_that_only_look_like_git_are_fine(tmp_path: Path, path: str) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(VALID.replace("paths: [api/]", f"paths: ['{path}']"))
    assert load_plan(plan).clusters[0].paths == [path]
