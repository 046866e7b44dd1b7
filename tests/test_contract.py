"""The contract check (issue 3) against real git and real subprocess agents, without Prefect:
scope, frozen contracts, renames, conformance by type, independence, and the three policies."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from prefect_work_clusters.tasks.agents.attempt import AgentFailed, run_attempt
from prefect_work_clusters.tasks.checks.conformance import python_conformance
from prefect_work_clusters.tasks.checks.contract import check_cluster, check_integrated
from prefect_work_clusters.tasks.checks.independence import Package, independence
from prefect_work_clusters.tasks.checks.rows import CheckRow, ClusterCheck, check_markdown
from prefect_work_clusters.tasks.checks.ts_conformance import typescript_conformance
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.errors import PlanError
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.plan.load import load_plan
from prefect_work_clusters.tasks.plan.refs import Ref
from prefect_work_clusters.tasks.resolve import resolve_run
from prefect_work_clusters.tasks.worktrees import prepare
from tests.conftest import git_calls, make_repo, user_changes_expected, write_agent

STORE = "from typing import Protocol\n\n\nclass Store(Protocol):\n    def get(self, key: str) -> str: ...\n"
RIGHT = "class MemoryStore:\n    def get(self, key: str) -> str:\n        return key\n"
WRONG = "class MemoryStore:\n    def get(self, key: int) -> str:\n        return str(key)\n"
FILES = {"README.md": "# store\n", "contracts/store.py": STORE, "app/registry.py": "NAMES = []\n",
         "api/__init__.py": "", "api/handlers.py": "def handle() -> int:\n    return 1\n",
         "db/__init__.py": "", "db/old.py": "OLD = 1\n", "ui/__init__.py": "", "web/__init__.py": ""}

# A real agent that replays per-cluster, per-attempt actions from the JSON file $ACTIONS.
ACTOR = """
import json
acts = json.loads(pathlib.Path(os.environ["ACTIONS"]).read_text()).get(os.environ["WC_CLUSTER"], {})
for kind, *args in acts.get(os.environ["WC_ATTEMPT"], acts.get("*", [])):
    if kind == "write":
        pathlib.Path(args[0]).parent.mkdir(parents=True, exist_ok=True)
        pathlib.Path(args[0]).write_text(args[1])
    elif kind in ("mv", "rm"):
        pathlib.Path(args[-1]).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", kind, *args], check=True, capture_output=True)
    elif kind == "expect-feedback":
        feedback = pathlib.Path(os.environ["WC_FEEDBACK_FILE"]).read_text()
        if any(a not in feedback for a in args):
            sys.exit(f"the feedback lacks one of {args}")
"""


def make_ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, actions: dict[str, object], *, policy: str = "retry",
             on_empty: str = "retry",
             retries: int = 0, provides: bool = True, independent: bool = False) -> RunContext:
    repo = make_repo(tmp_path, FILES)
    (tmp_path / "actions.json").write_text(json.dumps(actions))
    monkeypatch.setenv("ACTIONS", str(tmp_path / "actions.json"))
    plan = tmp_path / "store.yaml"
    plan.write_text(f"""name: store
contracts: [contracts/store.py]
shared: [app/registry.py]
clusters:
  - {{name: api, paths: [api/]}}
  - {{name: db, paths: [db/]}}
  - {{name: ui, paths: [ui/]}}
  - {{name: web, paths: [web/]}}
{'provides: {"db.store:MemoryStore": "contracts.store:Store"}' if provides else ''}
contract: {{on_violation: {policy}, independent: {str(independent).lower()}, on_empty: {on_empty}}}
limits: {{retries: {retries}, timeout_seconds: 60}}
""")
    return resolve_run(plan, repo, RunOptions(agent_cmd=write_agent(tmp_path, ACTOR)))


def rows_of(check: ClusterCheck) -> dict[str, CheckRow]:
    return {r.check: r for r in check.rows}


def test_scope_contracts_renames_missing_provider_and_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # web does nothing: accepted (on_empty: warn) so that the check reports its empty branch.
    ctx = make_ctx(tmp_path, monkeypatch, policy="fail", on_empty="warn", actions={
        "api": {"*": [["write", "api/impl.py", "X = 1\n"], ["write", "ui/hack.py", "Y = 2\n"],
                      ["write", "app/registry.py", "NAMES = ['api']\n"]]},
        "ui": {"*": [["write", "ui/form.py", "F = 1\n"], ["write", "contracts/store.py", STORE + "# edited\n"]]},
        "db": {"*": [["mv", "db/old.py", "docs/old.py"]]},  # a rename out of its scope
    })
    prepare(ctx)
    records = {c: run_attempt(ctx, c, 1) for c in ("api", "ui", "db", "web")}  # policy fail: no per-attempt check
    checks = {c: check_cluster(ctx, r) for c, r in records.items()}

    api, ui, db, web = (checks[c] for c in ("api", "ui", "db", "web"))
    assert (api.status, api.mergeable, api.outside_scope) == ("violation", False, ["ui/hack.py"])
    assert sorted(api.files_changed) == ["api/impl.py", "app/registry.py", "ui/hack.py"]  # shared file allowed
    assert (ui.status, ui.mergeable, ui.contracts_touched, ui.outside_scope) == (
        "violation", False, ["contracts/store.py"], [])
    assert rows_of(ui)["contracts"].status == "violation"
    # --no-renames: the move shows as a delete in scope and an add outside it.
    assert sorted(db.files_changed) == ["db/old.py", "docs/old.py"] and db.outside_scope == ["docs/old.py"]
    conformance = rows_of(db)["conformance"]
    assert conformance.status == "violation"
    assert "missing provider: module db.store not found" in conformance.evidence[0]
    assert (web.status, web.mergeable, rows_of(web)["scope"].status) == ("empty", True, "warning")
    for check in checks.values():
        assert [r.check for r in check.rows][:2] == ["scope", "contracts"]
        assert [r.check for r in check.rows][-2:] == ["verify", "verdict"]
    assert "not merged" in api.note and rows_of(api)["verdict"].evidence == ["kept out of integration"]

    # Policy warn: the same branches pass to integration, with the violation reported.
    warn = ctx.model_copy(update={"plan": ctx.plan.model_copy(update={
        "contract": ctx.plan.contract.model_copy(update={"on_violation": "warn"})})})
    warned = check_cluster(warn, records["api"])
    assert (warned.status, warned.mergeable) == ("violation", True) and "merged anyway" in warned.note

    table = "\n".join(check_markdown(list(checks.values())))
    assert "| api | scope | ❌ violation |" in table and "| ui/hack.py |" in table
    assert "| web | scope | ⚠️ warning |" in table and "✅ ok |" not in table  # problems only


def test_retry_feeds_the_report_back_and_attempt_two_fixes_it(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(tmp_path, monkeypatch, policy="retry", retries=1, actions={"db": {
        "1": [["write", "db/store.py", WRONG], ["write", "ui/hack.py", "Y = 2\n"]],
        "2": [["expect-feedback", "ui/hack.py", "def get(self, key: str) -> str"],
              ["rm", "ui/hack.py"], ["write", "db/store.py", RIGHT]],
    }})
    prepared = prepare(ctx)
    with pytest.raises(AgentFailed) as failed:
        run_attempt(ctx, "db", 1)
    assert failed.value.retryable
    first = failed.value.record.attempts[-1]
    assert first.failure and first.failure.startswith("contract check failed (scope: 1 problem(s); conformance")
    assert "Expected: def get(self, key: str) -> str; Got: def get(self, key: int) -> str" in first.output_tail
    assert githistory.finished_commit(ctx.repo, prepared.base_sha, "clusters/store/db") is None  # not "finished"

    record = run_attempt(ctx, "db", 2)
    assert record.status == "succeeded"
    prompt = ctx.prompt_file("db", 2).read_text()
    assert "Feedback: why attempt 1 failed" in prompt and "ui/hack.py" in prompt and "Got: def get" in prompt
    check = check_cluster(ctx, record)
    assert (check.status, check.mergeable) == ("ok", True)
    assert rows_of(check)["conformance"].status == "ok"
    assert sorted(check.files_changed) == ["db/store.py"]


def test_retry_exhausted_fails_the_cluster_and_keeps_it_out(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(tmp_path, monkeypatch, policy="retry", retries=0, provides=False,
                   actions={"api": {"*": [["write", "ui/hack.py", "Y = 2\n"]]}})
    prepare(ctx)
    with pytest.raises(AgentFailed) as failed:
        run_attempt(ctx, "api", 1)
    assert not failed.value.retryable and failed.value.record.status == "failed"
    check = check_cluster(ctx, failed.value.record)
    assert (check.status, check.mergeable, check.outside_scope) == ("agent-failed", False, ["ui/hack.py"])
    assert "contract check failed" in check.note


def test_conformance_by_type(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    model = "from pydantic import BaseModel\n\n\nclass User(BaseModel):\n    name: str\n"
    records = ("from contracts.user import User\n\n\nclass Row(User):\n    id: int = 0\n\n\n"
               "class LookAlike:\n    name: str = ''\n")
    for rel, text in {"contracts/store.py": STORE, "contracts/user.py": model, "db/__init__.py": "",
                      "db/good.py": RIGHT, "db/bad.py": WRONG, "db/empty.py": "X = 1\n", "db/rows.py": records}.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    store, user = Ref.parse("contracts.store:Store"), Ref.parse("contracts.user:User")
    pairs = [(Ref.parse(f"db.{m}:MemoryStore"), store) for m in ("good", "bad", "empty", "gone")]
    pairs += [(Ref.parse("db.rows:Row"), user), (Ref.parse("db.rows:LookAlike"), user)]  # a pydantic model: nominal
    env = dict(os.environ)
    found = python_conformance(tree, pairs, tmp_path / "work", env, 120)
    assert found.status == "violation"
    by = {e.split(" -> ")[0]: e for e in found.evidence}
    assert set(by) == {"db.bad:MemoryStore", "db.empty:MemoryStore", "db.gone:MemoryStore", "db.rows:LookAlike"}
    assert 'expression has type "LookAlike", variable has type "User"' in by["db.rows:LookAlike"]
    assert 'Incompatible types in assignment (expression has type "MemoryStore", variable has type "Store")' \
        in by["db.bad:MemoryStore"]
    assert "Expected: def get(self, key: str) -> str; Got: def get(self, key: int) -> str" in by["db.bad:MemoryStore"]
    assert "missing provider: db.empty defines no MemoryStore" in by["db.empty:MemoryStore"]
    assert "missing provider: module db.gone not found" in by["db.gone:MemoryStore"]
    right = python_conformance(tree, pairs[:1], tmp_path / "work", env, 120)
    assert (right.status, right.evidence) == ("ok", [])


def test_independence_reports_each_cross_cluster_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(tmp_path, monkeypatch, {}, provides=False, independent=True)
    tree = ctx.repo
    user_changes_expected(tree)  # the repo's own tree serves as the tree to check here
    (tree / "api/handlers.py").write_text("from contracts.store import Store\nfrom db.old import OLD\n"
                                          "import app.registry\n")
    (tree / "ui/view.py").write_text("import api.handlers\n")
    rows = check_integrated(ctx, tree)
    assert [(r.check, r.status) for r in rows] == [("independence", "violation")]
    assert rows[0].evidence == [
        "api.handlers (cluster api) imports db.old (cluster db) at line 2: from db.old import OLD",
        "ui.view (cluster ui) imports api.handlers (cluster api) at line 1: import api.handlers"]
    # Per cluster: only that cluster's imports; another cluster's package shows by its top-level name.
    packages = [Package("api", "api"), Package("db", "db"), Package("ui", "ui")]
    api_only = independence(tree, packages, tmp_path / "work", dict(os.environ), 60, only="api")
    assert api_only.evidence == ["api.handlers (cluster api) imports db (cluster db) at line 2: from db.old import OLD"]
    (tree / "api/handlers.py").write_text("from contracts.store import Store\n")
    assert independence(tree, packages, tmp_path / "work", dict(os.environ), 60, only="api").status == "ok"


def test_typescript_contracts_use_tsc_or_say_why_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "tree"
    (tree / "contracts").mkdir(parents=True)
    (tree / "contracts/auth.ts").write_text("export interface AuthAPI { login(u: string): string }\n")
    env = {"PATH": str(tmp_path / "bin")}
    assert typescript_conformance(tree, ["contracts/auth.py"], tmp_path / "w", env, 30) is None
    no_config = typescript_conformance(tree, ["contracts/auth.ts"], tmp_path / "w", env, 30)
    assert no_config is not None and no_config.status == "skipped" and "no tsconfig.json" in no_config.note
    (tree / "tsconfig.json").write_text("{}\n")
    no_tsc = typescript_conformance(tree, ["contracts/auth.ts"], tmp_path / "w", env, 30)
    assert no_tsc is not None and no_tsc.status == "skipped" and "tsc not found" in no_tsc.note
    (tmp_path / "bin").mkdir()
    stand_in = tmp_path / "bin/tsc"  # stand-in printing tsc's own --pretty false output
    stand_in.write_text(f"#!{sys.executable}\nimport sys\nassert sys.argv[1:4] == ['--noEmit', '--pretty', 'false']\n"
                        "print(\"ui/client.ts(3,14): error TS2420: Class 'Client' incorrectly implements interface "
                        "'AuthAPI'.\")\nprint(\"  Property 'login' is missing in type 'Client'.\")\n"
                        "print('Found 1 error.')\nsys.exit(2)\n")
    stand_in.chmod(0o755)
    found = typescript_conformance(tree, ["contracts/auth.ts"], tmp_path / "w", env, 30)
    assert found is not None and found.status == "violation"
    assert found.evidence == ["ui/client.ts(3,14): error TS2420: Class 'Client' incorrectly implements interface "
                              "'AuthAPI'. Property 'login' is missing in type 'Client'."]


def test_plan_validates_provides(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, FILES)
    plan = tmp_path / "p.yaml"
    plan.write_text("name: p\ncontracts: [contracts/store.py]\nclusters:\n  - {name: a, paths: [api/]}\n"
                    "  - {name: b, paths: [db/]}\nprovides:\n  'db/store.py:MemoryStore': contracts.store:Store\n"
                    "  db.store:MemoryStore: contracts.other:Store\n")
    with pytest.raises(PlanError) as bad:
        load_plan(plan, repo)
    text = str(bad.value)
    assert "provides.db/store.py:MemoryStore" in text and "module.path:Name" in text and ":7" in text
    assert "contracts.other is not one of the contract files" in text and ":8" in text


def test_the_merge_report_lists_every_item_of_a_problem_row_a_cell_cuts_short() -> None:
    """A hostile attempt can change a dozen things in the shared git dir; the table's cell shows
    ten, and the report lists them all below it (seen: a replaced ref hidden behind "+2 more")."""
    evidence = [f"attempt 1: .git/hooks/hook-{n} added" for n in range(11)] + ["attempt 1: ref refs/replace/abc added"]
    row = CheckRow(cluster="api", check="git-dir", status="violation", evidence=evidence)
    text = "\n".join(check_markdown([ClusterCheck(cluster="api", status="violation", mergeable=True, rows=[row])]))
    assert "(+2 more)" in text and "ref refs/replace/abc added" in text and "all 12:" in text


def test_conformance_is_checked_in_the_worktree_only_while_it_holds_the_branch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The worktree's HEAD is read as the refs are (no git process while it names a branch); one
    # that no longer holds the branch tip is not the branch's tree, and is not checked as it.
    ctx = make_ctx(tmp_path, monkeypatch, actions={"db": {"*": [["write", "db/store.py", RIGHT]]}})
    prepare(ctx)
    record = run_attempt(ctx, "db", 1)
    wt = record.worktree
    assert rows_of(check_cluster(ctx, record))["conformance"].status == "ok"
    tip = gitops.out(wt, "rev-parse", "HEAD")
    gitops.out(wt, "checkout", "-q", "--detach", record.base_sha)  # the files of the base, not the branch
    gone = rows_of(check_cluster(ctx, record))["conformance"]
    assert gone.status == "skipped" and "no longer holds the branch" in gone.note
    gitops.out(wt, "checkout", "-q", "--detach", tip)  # detached, but at the branch's tip
    assert rows_of(check_cluster(ctx, record))["conformance"].status == "ok"
    gitops.out(wt, "checkout", "-q", record.branch)
    assert rows_of(check_cluster(ctx, record))["conformance"].status == "ok"


def test_the_check_after_the_agents_lists_the_branches_once_and_peels_a_planted_tag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(tmp_path, monkeypatch, actions={"db": {"*": [["write", "db/store.py", RIGHT]]},
                                                   "api": {"*": [["write", "api/impl.py", "X = 1\n"]]}})
    prepare(ctx)
    records = [run_attempt(ctx, c, 1) for c in ("api", "db")]
    # An agent writes a loose ref pointing its branch at an annotated tag of its tip (git itself
    # refuses to): the branch still names that commit, as `rev-parse <ref>^{commit}` says.
    tip = gitops.out(ctx.repo, "rev-parse", f"refs/heads/{records[0].branch}")
    gitops.out(ctx.repo, "-c", "user.name=a", "-c", "user.email=a@b", "tag", "-a", "-m", "t", "t1", tip)
    tag = gitops.out(ctx.repo, "rev-parse", "refs/tags/t1")
    assert tag != tip
    (gitops.common_dir(ctx.repo) / "refs" / "heads" / records[0].branch).write_text(tag + "\n")
    with git_calls() as calls:
        tips = gitworktrees.branch_tips(ctx.repo, ctx.prefix)
    assert [a[0] for a in calls] == ["for-each-ref", "rev-parse"]  # the tag alone asked again
    assert tips[records[0].branch] == tip and tips[records[1].branch] == records[1].head_sha
    for record in records:
        listed, alone = check_cluster(ctx, record, tips), check_cluster(ctx, record)
        assert listed.model_dump(exclude={"rows"}) == alone.model_dump(exclude={"rows"})
        # every row alike, but the seconds the type checker took
        assert [(r.check, r.status, r.evidence) for r in listed.rows] == [(r.check, r.status, r.evidence)
                                                                        for r in alone.rows]
    assert check_cluster(ctx, records[0], tips).head_sha == tip
