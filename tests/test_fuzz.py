"""Hostile and broken plans, generated: accepted, or refused with exit 2 and a message; never a
traceback, never a branch or worktree made on refusal."""

from __future__ import annotations

import string
import subprocess
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_work_clusters.tasks.errors import PlanError
from prefect_work_clusters.tasks.plan.load import load_plan
from tests.conftest import make_repo

TEXT = st.text(alphabet=string.printable + "äß€\u202e", max_size=30)
PATHS = st.one_of(st.sampled_from(["api/", "ui/", "../x/", "/etc/", "a/../../b", "*.py", "api/*.py", "", " "]),
                  TEXT)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=True), TEXT)
CLUSTER = st.fixed_dictionaries(
    {"name": st.one_of(st.sampled_from(["api", "ui", "db", "API", "a b", "-x", "base", "$(id)"]), TEXT),
     "paths": st.one_of(st.lists(PATHS, max_size=3), SCALAR)},
    optional={"tasks": st.one_of(st.lists(TEXT, max_size=3), SCALAR), "depends_on": st.lists(TEXT, max_size=2),
              "kind": st.one_of(st.sampled_from(["build", "investigation"]), TEXT),
              "verify": st.lists(TEXT, max_size=2),
              "agent": st.one_of(TEXT, st.fixed_dictionaries({"command": st.lists(TEXT, max_size=2)})),
              "bogus": SCALAR})
PLAN = st.fixed_dictionaries(
    {"clusters": st.one_of(st.lists(CLUSTER, max_size=4), SCALAR)},
    optional={"name": st.one_of(st.just("fuzz"), TEXT), "goal": SCALAR, "base": st.one_of(st.just("main"), TEXT),
              "contracts": st.lists(PATHS, max_size=2), "shared": st.lists(PATHS, max_size=2), "agent": SCALAR,
              "limits": st.dictionaries(st.sampled_from(["timeout_seconds", "retries", "concurrency", "x"]), SCALAR),
              "worktree": st.dictionaries(st.sampled_from(["checkout", "copy", "setup"]), SCALAR),
              "integration": st.dictionaries(st.sampled_from(["verify", "land", "agent"]), SCALAR)})
MD_LINE = st.one_of(st.sampled_from(["# Title", "## Clusters", "## Contracts", "## Shared", "## Integration",
                                     "## Other", "---", "name: x", "1. **Api Cluster** (api/)",
                                     "2. **Ui Cluster** (ui/, ../x)", "   - a task", "   - Cohesive because: x",
                                     "- `contracts/api.py`", "- Verify: `pytest -q`", "- Verify: `$(id)`",
                                     "1. **Bad** (", "```", ""]), TEXT)


def _state(repo: Path) -> str:
    return subprocess.run(["git", "for-each-ref"], cwd=repo, capture_output=True, text=True).stdout + \
        subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True).stdout


def _check(repo: Path, plan: Path) -> None:
    before = _state(repo)
    try:
        load_plan(plan, repo)
    except PlanError as exc:
        assert exc.exit_code == 2 and exc.problems and str(exc)
        for problem in exc.problems:
            assert problem.message and problem.field is not None
    assert _state(repo) == before


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=PLAN)
def test_yaml_plans(tmp_path_factory, data: dict) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("fuzz")
    repo = make_repo(root, {"api/x.py": "", "ui/y.py": "", "contracts/api.py": ""})
    plan = root / "fuzz.yaml"
    plan.write_text(yaml.safe_dump(data, allow_unicode=True))
    _check(repo, plan)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(MD_LINE, max_size=25), raw=st.binary(max_size=40))
def test_markdown_plans_and_raw_bytes(tmp_path_factory, lines: list[str], raw: bytes) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("fuzz")
    repo = make_repo(root, {"api/x.py": "", "ui/y.py": "", "contracts/api.py": ""})
    plan = root / "fuzz.md"
    plan.write_text("\n".join(lines))
    _check(repo, plan)
    garbage = root / "garbage.yaml"
    garbage.write_bytes(raw)
    _check(repo, garbage)
