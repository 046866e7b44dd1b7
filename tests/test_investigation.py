"""Investigation clusters: findings from parallel read-only agents, a tracked change flagged, the
synthesis prompt holding every finding, the artifacts read back, and the emitted build plan valid."""

from __future__ import annotations

import ast
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from prefect_work_clusters.flows.examples.perf_investigation.build import build_example_repo
from prefect_work_clusters.flows.work_clusters import integrate_clusters, work_clusters
from prefect_work_clusters.tasks.agents.attempt import AgentFailed, run_attempt
from prefect_work_clusters.tasks.errors import PlanError, WorkClustersError
from prefect_work_clusters.tasks.investigation.check import restart
from prefect_work_clusters.tasks.investigation.findings import TypedFinding, parse_findings
from prefect_work_clusters.tasks.investigation.fixes import as_folders, emit_plan, group_by_paths
from prefect_work_clusters.tasks.investigation.synthesis import recorded_findings, run_synthesis
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.plan.load import load_plan
from prefect_work_clusters.tasks.plan.models import IntegrationOptions
from prefect_work_clusters.tasks.resolve import resolve_run
from prefect_work_clusters.tasks.worktrees import prepare
from tests.conftest import CLI, git, make_repo, rebaseline, snapshot, write_agent
from tests.loop_helpers import BASE_FILES

# An investigator: waits until all three have started (they run in parallel), writes findings
# whose typed block is built from its cluster's name, and records its environment.
INVESTIGATOR = """
import json, time
cluster, rec = os.environ["WC_CLUSTER"], pathlib.Path(os.environ["RECORD_DIR"])
(rec / f"started-{cluster}").write_text("")
deadline = time.monotonic() + 30
while len(list(rec.glob("started-*"))) < 3 and time.monotonic() < deadline:
    time.sleep(0.05)
seen = len(list(rec.glob("started-*")))
findings = [{"title": f"{cluster} is slow", "severity": "High", "evidence": [f"{cluster} took 812 ms", "p95 2.1 s"],
             "location": f"{cluster}/core.py:7 handle", "proposed_fix": f"cache {cluster} lookups",
             "paths": [f"{cluster}/"]},
            {"title": f"{cluster} logs too much", "severity": "low", "evidence": f"{cluster}: 40 MB a day",
             "proposed_fix": "", "paths": []}]
text = f"# {cluster}\\n\\nSaw {seen} investigators running.\\n\\n```json\\n{json.dumps(findings)}\\n```\\n"
pathlib.Path(os.environ["WC_FINDINGS_FILE"]).write_text(text)
if cluster == "db":
    pathlib.Path("README.md").write_text("# shop, edited by an investigator\\n")
(rec / f"{cluster}.env").write_text(repr({"seen": seen, "cwd": os.getcwd(),
                                          "env": {k: v for k, v in os.environ.items() if k.startswith("WC_")}}))
"""

SYNTHESIZER = """
rec = pathlib.Path(os.environ["RECORD_DIR"])
(rec / "synthesis.env").write_text(repr({k: v for k, v in os.environ.items() if k.startswith("WC_")}))
found = sorted(p.name for p in pathlib.Path(os.environ["WC_FINDINGS_DIR"]).iterdir())
pathlib.Path(os.environ["WC_ACTION_PLAN_FILE"]).write_text("# Action plan\\n\\n1. cache db lookups (db-1)\\n\\n"
                                                         + ", ".join(found) + "\\n")
"""


def _plan(agent: str, synthesis: str, extra: str = "") -> str:
    clusters = "".join(f"  - name: {c}\n    kind: investigation\n    paths: [{c}/]\n    tasks: [profile {c}]\n"
                       for c in ("api", "ui", "db"))
    return (f"name: shop\ngoal: Find why the shop is slow\nagent: {{command: {json.dumps(agent.split())}}}\n"
            f"integration: {{agent: {{command: {json.dumps(synthesis.split())}}}}}\n"
            f"clusters:\n{clusters}limits: {{timeout_seconds: 60, retries: 0, concurrency: 3}}\n{extra}")


def _artifact(key: str) -> Any:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert found, f"no artifact {key}"
    return max(found, key=lambda a: str(a.created)).data


def _table(key: str) -> list[dict[str, str]]:
    data = _artifact(key)
    return json.loads(data) if isinstance(data, str) else data  # type: ignore[no-any-return]


def _finding(fid: str, paths: list[str], fix: str = "fix it", severity: str = "medium") -> TypedFinding:
    return TypedFinding(id=fid, cluster=fid.split("-")[0], title=f"title {fid}", severity=severity,  # type: ignore[arg-type]
                        proposed_fix=fix, paths=paths)


def test_findings_document_parses_typed_findings_and_names_every_problem() -> None:
    good = json.dumps([{"title": "N+1", "severity": "High", "evidence": ["300 queries", "70%"],
                        "location": "a.py:3", "proposed_fix": "batch", "paths": ["./app/api//"]}])
    text = (f"# Findings\n\n```\n{{\"not\": \"findings\"}}\n```\n\n```json\n{good}\n```\n\n"
            '```json\n{"findings": [{"title": "no index", "severity": "critical"}]}\n```\n')
    found, problems = parse_findings(text, "db")
    assert problems == []
    assert [(f.id, f.severity) for f in found] == [("db-1", "high"), ("db-2", "critical")]
    assert found[0].evidence == "300 queries\n70%" and found[0].paths == ["app/api/"]
    bad = ('```json\n{"title": "x"\n```\n\n```json\n{"title": "x", "severity": "high"}\n```\n\n```json\n'
           '[{"title": "x", "severity": "urgent", "owner": "me", "paths": ["/etc/passwd", "../up"]}]\n```\n')
    found, problems = parse_findings(bad, "db")
    assert found == []
    assert "line 1: the ```json block is not valid JSON" in problems[0]
    assert "line 5" in problems[1] and "a list of findings" in problems[1]
    joined = "\n".join(problems[2:])
    for needle in ("severity", "owner: Extra inputs are not permitted", "is absolute", "uses '..'"):
        assert needle in joined


def test_fixes_are_grouped_by_overlapping_paths_into_a_plan_that_validates(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, {"app/api/reports.py": "", "app/db/store.py": "", "app/db/schema.sql": "",
                                "web/page.js": "", "lib/a.py": "", "lib/b.py": ""})
    findings = [_finding("backend-1", ["app/api/reports.py", "app/db/store.py"], severity="high"),
                _finding("database-1", ["app/db"], "add an index"),  # a folder without its slash
                _finding("frontend-1", ["web/page.js"], severity="low"),
                _finding("backend-2", ["lib/a.py"]), _finding("backend-3", ["lib/a.py", "lib/b.py"]),
                _finding("backend-4", ["lib/b.py"]),  # joins lib/a.py's group through backend-3
                _finding("database-2", [], "vacuum"), _finding("frontend-2", ["web/"], "")]
    groups = group_by_paths(as_folders([f for f in findings if f.paths and f.proposed_fix], repo))
    assert [[f.id for f in g] for g in groups] == [["backend-1", "database-1"], ["backend-2", "backend-3", "backend-4"],
                                                   ["frontend-1"]]
    plan = load_plan(_write(tmp_path / "inv.yaml", _plan("true", "true")), repo)
    out = tmp_path / "out" / "fixes.yaml"
    emitted = emit_plan(plan, findings, repo, out)
    assert emitted.left_out == ["database-2", "frontend-2"]
    built = load_plan(out, repo)  # what `work-clusters validate` runs
    assert built.name == "shop-fixes" and all(c.kind == "build" for c in built.clusters)
    by = {c.name: c for c in built.clusters}
    assert by["fix-api-reports-app-db"].paths == ["app/api/reports.py", "app/db/"]
    assert any("add an index (database-1, medium: title database-1)" in t for t in by["fix-api-reports-app-db"].tasks)
    assert [c.paths for c in built.clusters][1:] == [["lib/a.py", "lib/b.py"], ["web/page.js"]]
    with pytest.raises(WorkClustersError, match="one cluster"):
        emit_plan(plan, findings[:2], repo, tmp_path / "one.yaml")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


MARKDOWN = """# Perf regression

Find why the shop is slow

## Clusters

1. **Backend Cluster** (api/)
   - Profile endpoints, identify slow queries
   - Kind: investigation

2. **Frontend Cluster** (ui/)
   - Bundle size, render performance
   - Kind: investigation

3. **Database Cluster** (db/)
   - Query plans, index usage
   - Kind: {kind}
"""


def test_a_plan_builds_or_investigates_never_both(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, BASE_FILES)
    plan = load_plan(_write(tmp_path / "perf.md", MARKDOWN.format(kind="investigation")), repo)
    assert [c.kind for c in plan.clusters] == ["investigation"] * 3
    with pytest.raises(PlanError, match=r"perf\.md:17: clusters\.2\.kind: cluster 'database' is kind build"):
        load_plan(_write(tmp_path / "perf.md", MARKDOWN.format(kind="build")), repo)
    mixed = _plan("true", "true").replace("    kind: investigation\n    paths: [ui/]", "    paths: [ui/]")
    with pytest.raises(PlanError, match=r"clusters\.1\.kind: cluster 'ui' is kind build in a plan of investigation"):
        load_plan(_write(tmp_path / "mixed.yaml", mixed), repo)
    extra = "integration: {verify: [pytest], land: true, agent: x}\n"
    text = _plan("true", "true").replace("integration: {agent: {command: [\"true\"]}}\n", extra)
    with pytest.raises(PlanError) as exc:
        load_plan(_write(tmp_path / "inv.yaml", text), repo)
    assert "integration.verify: has no meaning in an investigation" in str(exc.value)
    assert "integration.land: has no meaning in an investigation" in str(exc.value)


def test_attempts_fail_on_tracked_changes_and_bad_findings_and_are_retried(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path, BASE_FILES)
    agent = write_agent(tmp_path, """
cluster, attempt = os.environ["WC_CLUSTER"], os.environ["WC_ATTEMPT"]
out = pathlib.Path(os.environ["WC_FINDINGS_FILE"])
pathlib.Path(os.environ["RECORD_DIR"], f"{cluster}-{attempt}.prompt").write_text(
    pathlib.Path(os.environ["WC_PROMPT_FILE"]).read_text())
if attempt == "1" and cluster == "api":  # commits one edit, leaves another uncommitted
    pathlib.Path("contracts/api.py").write_text("changed = True\\n")
    subprocess.run(["git", "commit", "-qam", "oops"], check=True)
    pathlib.Path("README.md").write_text("changed too\\n")
if attempt == "1" and cluster == "ui":
    out.write_text("```json\\n[{'title': 'single quotes'}]\\n```\\n")
elif attempt == "2" or cluster == "api":
    out.write_text('# ok\\n\\n```json\\n[{"title": "t", "severity": "info"}]\\n```\\n')
pathlib.Path(".cache").mkdir(exist_ok=True)  # an untracked scratch file is not a tracked change
pathlib.Path(".cache/profile.out").write_text("x")
""")
    monkeypatch.setenv("RECORD_DIR", str(tmp_path))
    text = _plan("true", "true").replace("retries: 0", "retries: 1")
    ctx = resolve_run(_write(tmp_path / "inv.yaml", text), repo, RunOptions(agent_cmd=agent))
    prepared = prepare(ctx)
    base = prepared.base_sha
    failures = {}
    for cluster in ("api", "ui", "db"):
        with pytest.raises(AgentFailed) as exc:
            run_attempt(ctx, cluster, 1)
        assert exc.value.retryable
        failures[cluster] = str(exc.value)
    assert "changed README.md, contracts/api.py (undone)" in failures["api"]
    assert "not valid JSON" in failures["ui"]
    assert "wrote no findings" in failures["db"] and "WC_FINDINGS_FILE" in failures["db"]
    wt = ctx.worktree("api")
    assert git(wt, "rev-parse", "HEAD") == base and git(wt, "status", "--porcelain") == "?? .cache/"
    for cluster in ("api", "ui", "db"):
        record = run_attempt(ctx, cluster, 2)
        assert record.status == "succeeded"
        assert git(repo, "diff", "--name-only", base, record.branch) == ""  # nothing of it is committed
    prompt = (tmp_path / "api-2.prompt").read_text()
    assert "Kind: investigation" in prompt and "Change no tracked file" in prompt and "```json" in prompt
    assert "Feedback: why attempt 1 failed" in prompt and "changed README.md" in prompt
    assert str(ctx.runs_dir / "findings" / "api.md") in prompt


def test_synthesis_that_fails_or_is_missing_still_leaves_an_ordered_action_plan(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, BASE_FILES)
    synthesizer = write_agent(tmp_path, """
if os.environ["WC_ATTEMPT"] == "1":
    pathlib.Path("README.md").write_text("rewritten\\n")
    pathlib.Path(os.environ["WC_ACTION_PLAN_FILE"]).write_text("# plan\\n")
else:
    sys.exit(1)
""")
    text = _plan("true", synthesizer).replace("retries: 0", "retries: 1")
    ctx = resolve_run(_write(tmp_path / "inv.yaml", text), repo)
    base = prepare(ctx).base_sha
    findings = [_finding("api-1", ["api/"], "cache it", "high"), _finding("db-1", ["db/"], "index it", "low")]
    result = run_synthesis(ctx, base, [], findings, [])
    assert not result.ok and result.attempts == 2 and result.failure == "the synthesis agent exited with status 1"
    second = ctx.prompt_file("synthesis", 2).read_text()
    assert "changed tracked files (README.md; undone)" in second
    assert git(ctx.integration_worktree, "status", "--porcelain") == ""
    assert git(ctx.integration_worktree, "rev-parse", "HEAD") == base
    assert result.text.index("## 1. cache it") < result.text.index("## 2. index it")
    assert "The synthesis agent failed (the synthesis agent exited with status 1)" in result.text
    alone = ctx.model_copy(update={"plan": ctx.plan.model_copy(update={"agent": None,
                                                                        "integration": IntegrationOptions()})})
    result = run_synthesis(alone, base, [], findings, [])
    assert result.ok and result.agent is None and "No synthesis agent is set" in result.text


@pytest.mark.usefixtures("prefect_harness")
def test_three_parallel_investigations_are_synthesized_and_a_tracked_change_is_flagged(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = make_repo(tmp_path, BASE_FILES)
    records = tmp_path / "records"
    records.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(records))
    investigator = write_agent(tmp_path, INVESTIGATOR, "investigator.py")
    synthesizer = write_agent(tmp_path, SYNTHESIZER, "synthesizer.py")
    plan = _write(tmp_path / "shop.yaml", _plan(investigator, synthesizer, "contract: {on_violation: fail}\n"))
    before = snapshot(repo)

    state = work_clusters(plan=str(plan), repo=str(repo), return_state=True)

    assert state.is_failed() and "changed tracked files: db" in str(state.message)
    assert snapshot(repo) == before
    runs = repo.parent / "repo.clusters" / "shop" / ".runs"
    report = json.loads((runs / "report.json").read_text())
    envs = {c: ast.literal_eval((records / f"{c}.env").read_text()) for c in ("api", "ui", "db")}
    assert all(e["seen"] == 3 for e in envs.values())  # all three ran at the same time
    for cluster, e in envs.items():
        assert e["env"]["WC_FINDINGS_FILE"] == str(runs / "findings" / f"{cluster}.md")
        assert e["env"]["WC_ROLE"] == "cluster" and Path(e["cwd"]) == runs.parent / cluster
    inv = report["investigation"]
    ids = [f["id"] for f in inv["findings"]]
    assert sorted(ids) == ["api-1", "api-2", "db-1", "db-2", "ui-1", "ui-2"]
    assert [d["status"] for d in inv["documents"]] == ["written"] * 3
    assert [c["status"] for c in report["clusters"]] == ["succeeded"] * 3
    checks = {c["cluster"]: c for c in report["checks"]}
    assert checks["db"]["status"] == "violation" and checks["db"]["files_changed"] == ["README.md"]
    assert checks["api"]["status"] == "ok" and not any(c["mergeable"] for c in checks.values())
    assert report["integration"] is None  # nothing is merged
    table = {(r["cluster"], r["check"]): r for r in _table("contract-check-shop")}
    assert table[("db", "scope")]["status"] == "❌ violation" and "README.md" in table[("db", "scope")]["evidence"]
    # The synthesis: its environment, and a prompt that holds every finding in full.
    env = ast.literal_eval((records / "synthesis.env").read_text())
    assert env["WC_ROLE"] == "synthesis" and env["WC_CLUSTER"] == "synthesis"
    assert env["WC_FINDINGS_DIR"] == str(runs / "findings")
    assert env["WC_ACTION_PLAN_FILE"] == str(runs / "action-plan.md")
    prompt = Path(env["WC_PROMPT_FILE"]).read_text()
    for f in inv["findings"]:
        for field in ("title", "location", "proposed_fix"):
            assert f[field] in prompt, (f["id"], field)
        assert f"`{f['id']}` ({f['cluster']}, {f['severity']})" in prompt
        assert all(f"  > {line}" in prompt for line in f["evidence"].splitlines())
    assert "changed tracked files (README.md)" in prompt
    # The artifacts, through the client, and the same in report.json.
    action_plan = (runs / "action-plan.md").read_text()
    assert "api.md, db.md, findings.json, ui.md" in action_plan
    assert _artifact("action-plan-shop") == action_plan == inv["action_plan"]["text"]
    rows = _table("findings-shop")
    assert sorted(r["id"] for r in rows) == sorted(ids) and rows[0]["severity"] == "❌ high"
    assert "# Investigation report: shop" in _artifact("investigation-report-shop")
    # The next wave: the findings' fixes as a build plan that validates.
    ctx = resolve_run(plan, repo, agents_needed=False)
    emitted = emit_plan(ctx.plan, recorded_findings(ctx), repo, tmp_path / "fixes.yaml")
    assert sorted(emitted.clusters.values()) == [["api/"], ["db/"], ["ui/"]]
    assert load_plan(emitted.path, repo).clusters[0].tasks[0].startswith("cache ")
    # `integrate` on an investigation runs the synthesis again, from the recorded findings.
    for path in [records / "synthesis.env", *records.glob("started-*")]:
        path.unlink()
    assert integrate_clusters(plan=str(plan), repo=str(repo), return_state=True).is_failed()  # db's change stands
    assert (records / "synthesis.env").exists() and not list(records.glob("started-*"))  # no investigator ran
    assert json.loads((runs / "report.json").read_text())["investigation"]["findings"] == inv["findings"]


def test_a_rerun_investigates_the_current_base(tmp_path: Path) -> None:
    repo = make_repo(tmp_path, BASE_FILES)
    ctx = resolve_run(_write(tmp_path / "inv.yaml", _plan("true", "true")), repo, RunOptions(rerun=True))
    first = prepare(ctx)
    (repo / "api" / "new.py").write_text("NEW = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "the code moved on")
    rebaseline(repo)
    notes = restart(ctx)
    assert notes == [f"rerun: clusters/shop/{c} started again from the current base" for c in ("api", "ui", "db")]
    second = prepare(ctx)
    assert second.base_sha != first.base_sha and {r.base_sha for r in second.records} == {second.base_sha}
    assert (ctx.worktree("api") / "api" / "new.py").exists()


@pytest.mark.usefixtures("prefect_harness")
def test_the_bundled_example_investigates_with_real_tools_and_emits_a_valid_plan(tmp_path: Path) -> None:
    repo, plan = build_example_repo(tmp_path)
    state = work_clusters(plan=str(plan), repo=str(repo), return_state=True)
    assert state.is_completed(), state.message
    report = json.loads((repo.parent / "shop-reports.clusters/perf-regression/.runs/report.json").read_text())
    titles = " | ".join(f["title"] for f in report["investigation"]["findings"])
    for needle in ("orders is scanned in full", "N+1", "orders_of() runs a query 300 times",
                   "rank() grows with the square", "chartlib is bundled 2 times", "opens a file 301 times"):
        assert needle in titles
    assert "Scripted synthesis, not an LLM" in report["investigation"]["action_plan"]["text"]
    assert git(repo, "status", "--porcelain") == ""
    # From the command line, from the run's findings: no Prefect needed.
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / ".prefect-home")}
    out = tmp_path / "fixes.yaml"
    res = subprocess.run([*CLI, "emit-plan", str(plan), str(out), "--repo", str(repo)], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "fix-db-schema (app/db/schema.sql)" in res.stdout
    res = subprocess.run([*CLI, "validate", str(out), "--repo", str(repo)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 0 and "valid" in res.stdout, res.stderr
    assert len(load_plan(out, repo).clusters) == 5


def test_emit_plan_of_a_build_plan_is_bad_input(tmp_path: Path) -> None:
    from tests.loop_helpers import shop_repo

    repo, plan = shop_repo(tmp_path)
    res = subprocess.run([*CLI, "run", str(plan), "--repo", str(repo), "--agent-cmd", "true", "--emit-plan", "x.yaml"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "PREFECT_HOME": str(tmp_path / ".prefect-home")})
    assert res.returncode == 2 and "only an investigation" in res.stderr, res.stderr
    assert not (tmp_path / "repo.clusters").exists()
