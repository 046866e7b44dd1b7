"""Approval before landing, in local mode (which Prefect cannot suspend): the run ends integrated
and awaiting approval, nothing lands; ``work-clusters approve`` then opens the draft pull request
with the merge report as its body; the token is written nowhere. A decision lands exactly the
commit that was shown, or nothing; ``status`` tells of a person's turn. (On a server:
test_review_server.py.)"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefect_work_clusters.flows.cli import app
from prefect_work_clusters.flows.housekeeping import status_table
from prefect_work_clusters.flows.person import Turn
from prefect_work_clusters.flows.review import decide
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.integration.approval import Approval, Review
from prefect_work_clusters.tasks.integration.models import IntegrationResult
from prefect_work_clusters.tasks.plan.load import load_plan
from prefect_work_clusters.tasks.report import RunReport
from tests.conftest import cli, git, user_changes_expected
from tests.github_fake import fake_github
from tests.integration_helpers import add_to_registry, integrate, setup

TOKEN = "ghp_review0123456789TOKEN"


def test_a_local_run_awaits_approval_then_approve_opens_the_draft_pull_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, _ = setup(tmp_path)
    for cluster in ("api", "ui", "db"):
        add_to_registry(ctx, cluster)
        gitchanges.commit_empty(ctx.worktree(cluster), f"done\n\n{gitops.FINISHED_TRAILER}: {cluster} attempt 1")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    ctx.plan_file.write_text(ctx.plan_file.read_text().replace("integration:\n", (
        "integration:\n  approve: true\n  land: pull_request\n"
        f"  pull_request: {{remote: {remote}, repository: acme/shop, labels: [work-clusters]}}\n")))
    main = git(ctx.repo, "rev-parse", "main")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)

    waiting = cli("integrate", str(ctx.plan_file), "--repo", str(ctx.repo), cwd=tmp_path)

    assert waiting.returncode == 0, waiting.stdout + waiting.stderr
    assert "review: awaiting approval of" in waiting.stdout and "work-clusters approve" in waiting.stdout
    review = json.loads((ctx.runs_dir / "review.json").read_text())
    assert review["status"] == "awaiting" and review["flow_run_id"] is None  # local: nothing to resume
    assert git(remote, "for-each-ref") == "" and git(ctx.repo, "rev-parse", "main") == main
    assert "awaiting approval" in str(status_table(ctx.plan_file, ctx.repo).title)

    runner = CliRunner()
    with fake_github() as gh:
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        approved = runner.invoke(app, ["approve", str(ctx.plan_file), "--repo", str(ctx.repo), "--by", "alice",
                                       "--comment", "looks right"])
    assert approved.exit_code == 0, approved.output + repr(approved.exception)
    assert "review: approved by alice" in approved.output and "looks right" in approved.output
    assert "pull request #1 opened: https://github.example/acme/shop/pull/1" in approved.output
    [pull] = gh.pulls
    final = json.loads((ctx.runs_dir / "report.json").read_text())
    assert pull["draft"] and pull["base"]["ref"] == "main" and pull["head"]["ref"] == "clusters/shop/integration"
    assert pull["body"].startswith("# Merge report: shop") and "integrated and verified" in pull["body"]
    assert git(remote, "rev-parse", "clusters/shop/integration") == final["integration"]["final_sha"]
    assert final["review"]["status"] == "approved" and final["review"]["approved_by"] == "alice"
    assert final["land"]["url"] == "https://github.example/acme/shop/pull/1"
    markdown = (ctx.runs_dir / "merge-report.md").read_text()
    assert "- Review: approved by alice at " in markdown and "via work-clusters approve: looks right" in markdown
    assert git(ctx.repo, "rev-parse", "main") == main  # a pull request, not a fast-forward

    again = runner.invoke(app, ["approve", str(ctx.plan_file), "--repo", str(ctx.repo), "--reject"])
    assert again.exit_code != 0 and "has no run awaiting approval (its last decision: approved" in str(again.exception)

    seen = [waiting.stdout, waiting.stderr, approved.output, git(ctx.repo, "log", "--all", "-p"),
            git(remote, "log", "--all", "-p"), *(p.read_text(errors="replace")
                                                 for p in ctx.runs_dir.rglob("*") if p.is_file())]
    assert not [s for s in seen if TOKEN in s]


def test_status_says_when_a_persons_turn_was_asked(tmp_path: Path) -> None:
    ctx, _ = setup(tmp_path)
    assert "a person's turn" not in str(status_table(ctx.plan_file, ctx.repo).title)
    turn = Turn(key="person-ui-0123456789ab", flow_run_id="8b1f3c1e-0000-4000-8000-000000000000", cluster="ui",
                files=[("app/config.py", ["api"], "ui")], asked_at=datetime(2026, 11, 29, 18, 0, tzinfo=timezone.utc))
    (ctx.runs_dir / "person.json").write_text(turn.model_dump_json())
    assert str(status_table(ctx.plan_file, ctx.repo).title).endswith(
        "a person's turn asked 2026-11-29 18:00 UTC (flow run 8b1f3c1e-0000-4000-8000-000000000000): "
        "conflicts merging ui in app/config.py")


def report_of(ctx: RunContext, result: IntegrationResult) -> RunReport:
    now = datetime.now(timezone.utc)
    return RunReport(plan=ctx.plan.name, goal=ctx.plan.goal, repo=str(ctx.repo), workspace=str(ctx.workspace),
                     base_ref="main", base_ref_sha=result.base_sha, base_sha=result.base_sha, started_at=now,
                     finished_at=now, ok=result.ok, phases={}, clusters=[], checks=[], integration=result)


def test_a_decision_lands_exactly_what_was_shown(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path)
    for cluster in ("api", "ui"):
        add_to_registry(ctx, cluster)
    result = integrate(ctx, base)
    assert result.ok and result.final_sha
    asked = Review(status="awaiting", final_sha=result.final_sha, requested_at=datetime.now(timezone.utc))
    main = git(ctx.repo, "rev-parse", "main")

    rejected = decide(ctx, asked, report_of(ctx, result), Approval(approve=False, comment="later"), via="test")
    assert rejected.ok and rejected.land and rejected.land.message == "not landed: rejected (later)"
    assert rejected.review and rejected.review.status == "rejected" and rejected.review.decided_at

    git(ctx.integration_worktree, "commit", "-q", "--allow-empty", "-m", "someone else's commit")
    moved = decide(ctx, asked, report_of(ctx, result), Approval(approve=True), via="test")
    assert not moved.ok and moved.land and "moved since approval was asked" in moved.land.message
    assert git(ctx.repo, "rev-parse", "main") == main

    git(ctx.integration_worktree, "reset", "-q", "--hard", result.final_sha)
    user_changes_expected(ctx.repo)
    approved = decide(ctx, asked, report_of(ctx, result), Approval(approve=True, approved_by="bo"), via="test")
    assert approved.ok and approved.land and approved.land.landed, approved.land
    assert git(ctx.repo, "rev-parse", "main") == result.final_sha
    assert approved.review and approved.review.line().startswith("approved by bo at ")


def test_a_markdown_plan_asks_for_approval_with_a_bullet(tmp_path: Path) -> None:
    plan = tmp_path / "p.md"
    plan.write_text("# P\n\n## Clusters\n\n1. **A** (a/)\n   - do a\n2. **B** (b/)\n   - do b\n\n"
                    "## Integration\n\n- Approve: yes\n- Land: yes\n")
    assert load_plan(plan).integration.approve
