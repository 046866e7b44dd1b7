"""Plan checks against real git repositories (SPEC 2), the plan's view, and its paths."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from rich.console import Console

from prefect_work_clusters.tasks.errors import PlanError
from prefect_work_clusters.tasks.plan.load import load_plan
from prefect_work_clusters.tasks.plan.models import Plan
from prefect_work_clusters.tasks.plan.paths import (
    PathSet,
    cone_dirs,
    cone_problem,
    container,
    first_overlap,
    normalize,
    overlaps,
    path_problem,
)
from prefect_work_clusters.tasks.plan.view import fit_assessment, render_tree
from tests.conftest import branches, git, git_calls, make_repo, snapshot
from tests.plan_helpers import PLANS, VALID, line_of, refused, write

# -- checks against a real repository -----------------------------------------------------------------

REPO_FILES = {"contracts/api.py": "class Api: ...\n", "api/__init__.py": "", "ui/__init__.py": ""}
WITH_CONTRACT = VALID + "contracts: [contracts/api.py]\n"


def test_valid_plan_against_repo(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, REPO_FILES)
    plan = load_plan(write(tmp_path, WITH_CONTRACT + "base: main\n"), repo)
    assert plan.contracts == ["contracts/api.py"] and plan.base == "main"


def test_not_a_git_repo_skips_the_other_repo_checks(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    problems = refused(write(tmp_path, WITH_CONTRACT + "base: nowhere\n"), tmp_path / "plain")
    assert [(p.field, p.line) for p in problems] == [("repo", None)]
    assert "is not a git repository" in problems[0].message


def test_repo_problems_all_at_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"api/__init__.py": "", "ui/__init__.py": ""})
    text = WITH_CONTRACT.replace("[api/]", "[api]") + "base: nowhere\n"
    problems = refused(write(tmp_path, text), repo)
    assert [(p.field, p.line) for p in problems] == [
        ("clusters.0.paths.0", line_of(text, "[api]")),
        ("contracts.0", line_of(text, "contracts:")),
        ("base", line_of(text, "base:")),
    ]
    assert "write it as 'api/'" in problems[0].message
    assert "does not exist" in problems[1].message and "names no commit" in problems[2].message


def test_base_given_by_caller_and_repo_without_commits(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, REPO_FILES)
    plan = write(tmp_path, WITH_CONTRACT)
    assert [(p.field, p.line) for p in refused(plan, repo, base="gone")] == [("base", None)]
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    (empty / "contracts").mkdir()
    (empty / "contracts" / "api.py").write_text("")
    problems = refused(plan, empty)
    assert [p.field for p in problems] == ["base"] and "no commit yet" in problems[0].message


def test_branch_git_cannot_create(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, REPO_FILES)
    git(repo, "branch", "clusters/demo")
    problems = refused(write(tmp_path, WITH_CONTRACT), repo)
    assert [(p.field, p.line) for p in problems] == [("name", 1)]
    assert "a branch named 'clusters/demo' exists" in problems[0].message


def test_a_plan_of_many_clusters_is_checked_without_a_git_process_per_cluster(tmp_path: Path) -> None:
    # Git takes every branch a slug makes (what the plan's check leans on), odd ones too...
    from prefect_work_clusters.tasks.git import core as gitops

    repo = make_repo(tmp_path, REPO_FILES)
    for leaf in ("0", "a-", "lock", "x--y", "head", "z" * 200):
        assert gitops.branch_name_ok(repo, f"clusters/p-1/{leaf}"), leaf
    # ... so a plan's clusters cost it no git process each.
    names = [f"c{i}" for i in range(60)]
    text = "name: many\nclusters:\n" + "".join(f"  - name: {n}\n    paths: [{n}/]\n    tasks: [t]\n"
                                                for n in names)
    with git_calls() as calls:
        assert [c.name for c in load_plan(write(tmp_path, text), repo).clusters] == names
    assert len(calls) < 10, calls


def _everything(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


@pytest.mark.parametrize("text", [WITH_CONTRACT, WITH_CONTRACT.replace("[ui/]", "[api/ui/]") + "base: gone\n"],
                         ids=["accepted", "refused"])
def test_loading_creates_nothing(tmp_path: Path, text: str) -> None:
    repo = make_repo(tmp_path / "work", REPO_FILES)
    plan = write(tmp_path, text)
    before = (snapshot(repo), branches(repo), git(repo, "for-each-ref"))
    files = _everything(tmp_path / "work")  # after snapshot's `git status`, which may refresh the index
    try:
        load_plan(plan, repo)
    except PlanError as exc:
        assert len(exc.problems) == 2
    assert _everything(tmp_path / "work") == files
    assert (snapshot(repo), branches(repo), git(repo, "for-each-ref")) == before
    assert subprocess.run(["git", "worktree", "list"], cwd=repo, capture_output=True, text=True).stdout.count("\n") == 1


# -- the view ------------------------------------------------------------------------------------------


def _render(plan: Plan) -> str:
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(render_tree(plan))
    return console.file.getvalue()  # type: ignore[attr-defined, no-any-return]


def test_tree_has_the_seed_shape() -> None:
    text = _render(load_plan(PLANS / "auth-system.md"))
    assert text.splitlines()[0] == 'Orchestrator: "Build auth system"'
    assert "├── Cluster 1: Backend (auth_api/)  [after data]" in text
    assert "│   ├── JWT token handling" in text
    assert "└── Integration Agent: merge branches, resolve conflicts, verify\n    └── verify: pytest -q" in text


def test_tree_prints_globs_literally(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, VALID.replace("[api/]", "['api/[ab]*/']")))
    assert "Cluster 1: Api (api/[ab]*/)" in _render(plan)


def test_fit_assessment(tmp_path: Path) -> None:
    three = " ".join(fit_assessment(load_plan(PLANS / "auth-system.yaml")))
    assert "3 clusters: a good fit" in three and "Boundaries are clear" in three
    assert "'frontend' has a single task" in three and "Contracts: contracts/auth.py" in three
    two = fit_assessment(load_plan(write(tmp_path, VALID.replace("tasks: [build the UI, style it]", "tasks: []"))))
    assert two[0].startswith("2 clusters: borderline")
    assert any("'ui' lists no tasks" in line for line in two) and two[-1].startswith("No contracts")


# -- paths -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "clean"), [
    ("./auth_api/", "auth_api/"), ("a//b/./c.py", "a/b/c.py"), (" docs/*.md ", "docs/*.md"), ("./", ""),
])
def test_normalize(raw: str, clean: str) -> None:
    assert normalize(raw) == clean


@pytest.mark.parametrize(("path", "problem"), [
    ("", "is empty"), ("/etc/", "absolute"), ("C:\\x", "absolute"), ("~/x", "absolute"), ("../x", "'..'"),
    ("a/../../b", "'..'"), ("!api/", "starts with '!'"), ("api/", None), ("src/**/*.py", None), ("a..b/", None),
])
def test_path_problem(path: str, problem: str | None) -> None:
    found = path_problem(path)
    assert (found is None) if problem is None else (problem in (found or ""))


def test_pathset_matching() -> None:
    owned = PathSet(["auth_api/", "src/**/*.py", "app/routes.py", "*.md"])
    assert owned.filter(["auth_api/a/b.py", "auth_api2/x.py", "src/a/b.py", "src/x.ts", "app/routes.py",
                         "app/x/routes.py", "x/app/routes.py", "deep/README.md", "./auth_api/c"]) == [
        "auth_api/a/b.py", "src/a/b.py", "app/routes.py", "deep/README.md", "./auth_api/c"]
    assert not PathSet([]).matches("anything")


@pytest.mark.parametrize(("a", "b", "expected"), [
    (["auth_api/"], ["auth_ui/"], False),
    (["auth/"], ["auth_api/"], False),
    (["app/"], ["app/api/"], True),
    (["app/routes.py"], ["app/routes.py"], True),
    (["app/routes.py"], ["app/"], True),
    (["app/routes.py"], ["app/views.py"], False),
    (["app/*.py"], ["app/routes.py"], True),
    (["app/*.py"], ["app/routes.ts"], False),
    (["auth_api/v1/*.py"], ["auth_api/"], True),
    (["src/*.py"], ["src/api/"], True),
    (["*.md"], ["docs/"], True),
    (["a/**/*.py"], ["b/**/*.py"], False),
    (["a/", "b/"], ["c/", "b/x.py"], True),
])
def test_overlaps(a: list[str], b: list[str], expected: bool) -> None:
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected


def test_first_overlap_and_container() -> None:
    assert first_overlap(["a/", "b/"], ["c/", "b/x.py"]) == ("b/", "b/x.py")
    assert container("app/routes.py", ["api/", "app/"]) == "app/"
    assert container("app/routes.py", ["app/*.py"]) == "app/*.py"
    assert container("app/", ["app/"]) == "app/"
    assert container("app/x/*.py", ["app/"]) == "app/"
    assert container("*.toml", ["app/"]) is None
    assert container("app/", ["app/x/"]) is None


def test_cone_dirs() -> None:
    assert cone_dirs(["auth_api/", "app/routes.py", "src/**/*.py", "README.md", "auth_api/sub/", "./a/b/"]) == [
        "a/b", "app", "auth_api", "src"]
    assert cone_dirs(["pyproject.toml"]) == []
    assert cone_problem("*.md") is not None and cone_problem("**/x/*.py") is not None
    assert cone_problem("docs/*.md") is None and cone_problem("docs/") is None
