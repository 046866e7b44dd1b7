"""Plan loading and validation (SPEC 2): both spellings, every rule, no mocks (the checks against a
real repository, the view and the paths are in test_plan_checks)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prefect_work_clusters.tasks.errors import PlanError
from prefect_work_clusters.tasks.plan.load import load_plan
from prefect_work_clusters.tasks.plan.markdown import parse_markdown
from tests.plan_helpers import PLANS, VALID, line_of, refused, write

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
