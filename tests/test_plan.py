"""Plan loading and validation (SPEC 2): both spellings, every rule, real git repos, no mocks."""

from __future__ import annotations

import io
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from prefect_work_clusters.tasks.errors import PlanError, Problem
from prefect_work_clusters.tasks.plan.load import load_plan
from prefect_work_clusters.tasks.plan.markdown import parse_markdown
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


# -- every rule, one at a time: the field, the line, and no other problem -------------------------

TWO = """\
  - name: ui
    paths: [ui/]
"""

RULES = [
    ("fewer than 2 clusters", "name: demo\nclusters:\n  - name: api\n    paths: [api/]\n",
     "clusters", ("clusters:", 0), "at least 2 clusters"),
    ("duplicate names", "name: demo\nclusters:\n  - name: ui\n    paths: [api/]\n" + TWO,
     "clusters.1.name", ("- name: ui", 1), "cluster names must be unique"),
    ("invalid plan slug", "name: Demo Plan\nclusters:\n  - name: api\n    paths: [api/]\n" + TWO,
     "name", ("Demo Plan", 0), "e.g. 'demo-plan'"),
    ("invalid cluster slug", "name: demo\nclusters:\n  - name: Api_Server\n    paths: [api/]\n" + TWO,
     "clusters.0.name", ("Api_Server", 0), "is not a valid name"),
    ("reserved cluster name", "name: demo\nclusters:\n  - name: integration\n    paths: [api/]\n" + TWO,
     "clusters.0.name", ("integration", 0), "reserved"),
    ("owned paths overlap", "name: demo\nclusters:\n  - name: api\n    paths: [ui/api/]\n" + TWO,
     "clusters.1.paths.0", ("[ui/]", 0), "overlaps 'ui/api/'"),
    ("shared inside owned", "name: demo\nshared: [ui/routes.py]\nclusters:\n  - name: api\n    paths: [api/]\n"
     + TWO, "shared.0", ("shared:", 0), "lies inside 'ui/', owned by cluster 'ui'"),
    ("contract inside owned", "name: demo\ncontracts:\n  - api/contract.py\nclusters:\n  - name: api\n"
     "    paths: ['api/*.py']\n" + TWO, "contracts.0", ("api/contract.py", 0), "inside 'api/*.py'"),
    ("absolute path", "name: demo\nclusters:\n  - name: api\n    paths:\n      - /srv/api/\n" + TWO,
     "clusters.0.paths.0", ("/srv/api/", 0), "is absolute"),
    ("path leaves the repo", "name: demo\nclusters:\n  - name: api\n    paths: [api/]\n" + TWO
     + "worktree:\n  copy: [../secrets.env]\n", "worktree.copy.0", ("copy:", 0), "stay inside the repo"),
    ("unknown depends_on", "name: demo\nclusters:\n  - name: api\n    paths: [api/]\n    depends_on:\n"
     "      - uii\n" + TWO, "clusters.0.depends_on.0", ("- uii", 0), "names no cluster: 'uii'"),
    ("depends_on cycle", "name: demo\nclusters:\n  - name: api\n    paths: [api/]\n    depends_on: [ui]\n"
     + TWO + "    depends_on: [api]\n", "clusters.0.depends_on", ("depends_on", 0), "cycle (api -> ui -> api)"),
    ("cluster without paths", "name: demo\nclusters:\n  - name: api\n    paths: []\n" + TWO,
     "clusters.0.paths", ("paths: []", 0), "owns no paths"),
    ("cluster with no paths key", "name: demo\nclusters:\n  - name: api\n" + TWO,
     "clusters.0.paths", ("- name: api", 0), "owns no paths"),
    ("unknown field", "name: demo\nclusters:\n  - name: api\n    pathz: [api/]\n    paths: [api/]\n" + TWO,
     "clusters.0.pathz", ("pathz", 0), "did you mean 'paths'?"),
    ("unknown nested field", "name: demo\nclusters:\n  - name: api\n    paths: [api/]\n" + TWO
     + "integration:\n  verfy: [pytest]\n", "integration.verfy", ("verfy", 0), "did you mean 'verify'?"),
    ("bad literal", "name: demo\nclusters:\n  - name: api\n    paths: [api/]\n    kind: research\n" + TWO,
     "clusters.0.kind", ("kind:", 0), "'build' or 'investigation' (got 'research')"),
    ("agent command not a list", "name: demo\nagent:\n  command: my-agent\nclusters:\n  - name: api\n"
     "    paths: [api/]\n" + TWO, "agent.command", ("command:", 0), "valid list"),
    ("sparse glob without folder", "name: demo\nshared: ['*.toml']\nworktree: {checkout: sparse}\nclusters:\n"
     "  - name: api\n    paths: [api/]\n" + TWO, "shared.0", ("shared:", 0), "sparse checkout"),
    ("key given twice", "name: demo\nname: other\nclusters:\n  - name: api\n    paths: [api/]\n" + TWO,
     "name", ("name: other", 0), "given twice"),
]


@pytest.mark.parametrize(("text", "field", "where", "message"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_each_rule_names_field_and_line(tmp_path: Path, text: str, field: str, where: tuple[str, int],
                                        message: str) -> None:
    problems = refused(write(tmp_path, text))
    assert [(p.field, p.line) for p in problems] == [(field, line_of(text, *where))]
    assert message in problems[0].message
    assert problems[0].file == str(tmp_path / "plan.yaml")


def test_all_problems_listed_at_once(tmp_path: Path) -> None:
    text = """\
    name: demo
    clusters:
      - name: api
        paths: [api/]
        cohesoin: server side
      - name: ui
        paths: [api/ui/]
        depends_on: [web]
    """
    problems = refused(write(tmp_path, text))
    assert [p.field for p in problems] == ["clusters.0.cohesoin", "clusters.1.paths.0", "clusters.1.depends_on.0"]
    assert [p.line for p in problems] == [5, 7, 8]
    assert "3 problem(s)" in str(PlanError(problems))
    assert f"{tmp_path / 'plan.yaml'}:7: clusters.1.paths.0: 'api/ui/' overlaps 'api/'" in str(PlanError(problems))


def test_agent_union_reports_the_form_written(tmp_path: Path) -> None:
    problems = refused(write(tmp_path, VALID + "agent: 5\n"))
    assert [p.field for p in problems] == ["agent"]
    assert problems[0].message.endswith("or {command: [...]} (got 5)")
    problems = refused(write(tmp_path, VALID + "agent: {command: [run], envv: {}}\n"))
    assert [p.field for p in problems] == ["agent.envv"] and "did you mean 'env'?" in problems[0].message


@pytest.mark.parametrize(("text", "name", "line", "message"), [
    ("name: demo\nclusters: [\n", "plan.yaml", 3, "is not valid YAML"),
    ("- just\n- a list\n", "plan.yaml", 1, "must be a mapping of fields"),
    ("", "plan.yml", 1, "not empty"),
    (VALID, "plan.txt", None, "ends in .yaml, .yml or .md, not '.txt'"),
], ids=["syntax", "not a mapping", "empty", "wrong ending"])
def test_unreadable_plans_give_one_problem(tmp_path: Path, text: str, name: str, line: int | None,
                                           message: str) -> None:
    problems = refused(write(tmp_path, text, name))
    assert [(p.field, p.line) for p in problems] == [("plan", line)]
    assert message in problems[0].message


def test_missing_and_undecodable_files(tmp_path: Path) -> None:
    assert "cannot be read" in refused(tmp_path / "absent.yaml")[0].message
    (tmp_path / "latin.md").write_bytes(b"# Caf\xe9\n")
    assert "cannot be read" in refused(tmp_path / "latin.md")[0].message


def test_defaults_normalizing_and_base_override(tmp_path: Path) -> None:
    text = VALID.replace("name: demo\n", "").replace("[api/]", "[./api//]")
    plan = load_plan(write(tmp_path, text, "My Auth Plan.yml"), base="release")
    assert plan.name == "my-auth-plan"
    assert plan.cluster("api").paths == ["api/"]
    assert plan.base == "release"
    assert [c.name for c in plan.merge_order()] == ["api", "ui"]


# -- the two spellings -------------------------------------------------------------------------------


def test_spec_yaml_and_markdown_give_equal_models() -> None:
    from_yaml = load_plan(PLANS / "auth-system.yaml")
    from_md = load_plan(PLANS / "auth-system.md")
    assert from_md == from_yaml
    assert from_md.cluster("backend").depends_on == ["data"]
    assert [c.name for c in from_md.merge_order()] == ["frontend", "data", "backend"]


SPEC_MD = """\
# Auth system

Build auth system

## Clusters

1. **Backend Cluster** (auth_api/)
   - API routes: /login, /register, /me
   - JWT token handling
   - Cohesive because: all server-side auth logic

2. **Frontend Cluster** (auth_ui/)
   - LoginForm, RegisterForm components
   - Cohesive because: all client-side auth UI

## Contracts

- `contracts/auth.py`

## Shared

- `app/routes.py`

## Integration

- Verify: `pytest -q`
"""


def test_spec_markdown_example_reads_as_documented() -> None:
    md = parse_markdown(SPEC_MD, "auth.md")
    assert md.problems == [] and md.front_matter is None
    assert md.data == {
        "name": "auth-system", "goal": "Build auth system",
        "clusters": [
            {"name": "backend", "paths": ["auth_api/"], "cohesion": "all server-side auth logic",
             "tasks": ["API routes: /login, /register, /me", "JWT token handling"]},
            {"name": "frontend", "paths": ["auth_ui/"], "cohesion": "all client-side auth UI",
             "tasks": ["LoginForm, RegisterForm components"]},
        ],
        "contracts": ["contracts/auth.py"], "shared": ["app/routes.py"],
        "integration": {"verify": ["pytest -q"]},
    }
    assert md.lines["clusters.1.paths"] == line_of(SPEC_MD, "**Frontend Cluster**")
    assert md.lines["clusters.0.tasks.1"] == line_of(SPEC_MD, "JWT")
    assert md.lines["integration.verify.0"] == line_of(SPEC_MD, "Verify:")


def test_front_matter_wins_and_keeps_file_lines(tmp_path: Path) -> None:
    text = "---\nname: custom\nintegration:\n  verify: [make check]\n---\n" + SPEC_MD
    plan = load_plan(write(tmp_path, text, "auth.md"))
    assert plan.name == "custom"
    assert plan.integration.verify == ["make check"]
    assert plan.goal == "Build auth system"
    bad = text.replace("name: custom", "name: custom\nlimits: {retries: -1}").replace("(auth_ui/)", "(auth_api/x/)")
    problems = refused(write(tmp_path, bad, "auth.md"))
    assert [(p.field, p.line) for p in problems] == [
        ("limits.retries", 3), ("clusters.1.paths.0", line_of(bad, "**Frontend Cluster**"))]


def test_front_matter_yaml_error_points_into_the_file(tmp_path: Path) -> None:
    problems = refused(write(tmp_path, "---\nname: x\nagent: [\n---\n" + SPEC_MD, "auth.md"))
    assert len(problems) == 1 and problems[0].line == 4 and "front matter is not valid YAML" in problems[0].message


TRICKY = """\
# Tricky   plan!

  The goal
  spans two lines.

More prose is not the goal.

## Clusters

Some prose before the list is fine.

- **API**   ( `api/` ,  `lib/api/` )
    * Routes:
        * `/login`
        * `/me`
    * Handle   `JWT`   tokens
    * Cohesive because:   server   side
    * Verify: `pytest -q tests/api` `ruff check api`

1. **UI cluster** (ui/)
   - Forms
   - Depends on: API, Search Cluster
   - Agent: `codex`
   - Kind: build

3. **Search Cluster** (search/)
   - Verify: the index is fresh

## integration

* Verify: `pytest -q` and `ruff check .`
* Land: yes
* Agent: claude
"""


def test_tricky_markdown_round_trips_through_yaml(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, TRICKY, "tricky.md"))
    assert plan.name == "tricky-plan" and plan.goal == "The goal spans two lines."
    api, ui, search = plan.clusters
    assert api.paths == ["api/", "lib/api/"]
    assert api.tasks == ["Routes: `/login`; `/me`", "Handle `JWT` tokens"]
    assert api.cohesion == "server side" and api.verify == ["pytest -q tests/api", "ruff check api"]
    assert (ui.name, ui.tasks, ui.depends_on, ui.agent, ui.kind) == ("ui", ["Forms"], ["api", "search"], "codex",
                                                                      "build")  # investigation: test_investigation
    assert search.tasks == ["Verify: the index is fresh"]
    set_here = plan.integration.model_dump(exclude_defaults=True)
    assert set_here == {"agent": "claude", "verify": ["pytest -q", "ruff check ."], "land": True}
    again = write(tmp_path, yaml.safe_dump(plan.model_dump(by_alias=True)), "again.yaml")
    assert load_plan(again) == plan


@pytest.mark.parametrize(("text", "field", "needle", "message"), [
    (SPEC_MD + "\n## Notes\n\n- remember\n", "## Notes", "## Notes", "unknown section"),
    (SPEC_MD.replace("1. **Backend Cluster**", "1. The **Backend Cluster**"), "clusters", "The **Backend",
     "name in bold"),
    (SPEC_MD + "- Deploy: `make ship`\n", "integration", "Deploy:", "not 'Deploy: `make ship`'"),
    (SPEC_MD + "\n# Second title\n", "# Second title", "# Second", "one title"),
    ("---\nname: x\n" + SPEC_MD, "front matter", "---", "never closed"),
], ids=["unknown section", "cluster without bold name", "integration bullet", "second title", "open front matter"])
def test_markdown_shape_problems(tmp_path: Path, text: str, field: str, needle: str, message: str) -> None:
    problems = refused(write(tmp_path, text, "auth.md"))
    assert [(p.field, p.line) for p in problems] == [(field, line_of(text, needle))]
    assert message in problems[0].message


def test_markdown_without_title_takes_the_file_stem(tmp_path: Path) -> None:
    text = SPEC_MD.replace("# Auth system\n", "")
    assert load_plan(write(tmp_path, text, "Login Work.md")).name == "login-work"


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
