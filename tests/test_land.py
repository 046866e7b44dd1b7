"""Landing: only a fast-forward, only when everything is green, and never at the cost of the
user's uncommitted or untracked files."""

from __future__ import annotations

from pathlib import Path

from prefect_work_clusters.tasks.context import CommandResult
from prefect_work_clusters.tasks.integration.accounting import Accounting, ClusterTally, LineIssue
from prefect_work_clusters.tasks.integration.land import land, refusals
from prefect_work_clusters.tasks.integration.models import IntegrationResult, MergeStep
from tests.conftest import git, rebaseline, user_changes_expected
from tests.integration_helpers import add_to_registry, integrate, setup


def green() -> IntegrationResult:
    return IntegrationResult(
        branch="clusters/shop/integration", worktree="/wt", base_sha="b" * 40, final_sha="f" * 40,
        steps=[MergeStep(cluster="api", branch="clusters/shop/api", status="merged")],
        verify=[CommandResult(command="pytest -q", exit_code=0)],
        accounting=Accounting(files=1, clusters=[ClusterTally(cluster="api", branch="clusters/shop/api", added=3,
                                                              removed=0)]))


def test_land_refuses_whatever_is_red_and_says_why() -> None:
    assert refusals(green()) == []
    stopped = green().model_copy(update={"final_sha": None, "steps": [
        MergeStep(cluster="api", branch="b", status="merged"), MergeStep(cluster="ui", branch="b", status="conflict"),
        MergeStep(cluster="db", branch="b", status="not-reached")]})
    assert refusals(stopped) == ["not every cluster merged: ui (conflict), db (not-reached)"]
    failing = green().model_copy(update={"verify": [CommandResult(command="pytest -q", exit_code=1)]})
    assert refusals(failing) == ["integration verification failed: `pytest -q`"]
    lossy = green().model_copy(update={"accounting": Accounting(files=1, issues=[
        LineIssue(path="app/config.py", kind="lost", by=["ui"], count=1, lines=["X = 1"])])})
    assert refusals(lossy) == ["changes not accounted for: 1 lost in app/config.py (ui)"]
    everything = failing.model_copy(update={"accounting": lossy.accounting, "steps": stopped.steps})
    assert len(refusals(everything)) == 3 and not everything.ok


def test_land_fast_forwards_the_checked_out_main_and_keeps_the_users_files(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path)
    for cluster in ("api", "ui", "db"):
        add_to_registry(ctx, cluster)
    repo = ctx.repo
    (repo / "notes.txt").write_text("the user's untracked file\n")
    (repo / "README.md").write_text("# shop, edited but not committed\n")
    before = git(repo, "rev-parse", "main")
    user_changes_expected(repo)  # it lands; the test checks the user's files itself

    refused = land(ctx, green().model_copy(update={"verify": [CommandResult(command="x", exit_code=1)]}))
    assert not refused.landed and "verification failed" in refused.message
    assert git(repo, "rev-parse", "main") == before

    result = integrate(ctx, base)
    landed = land(ctx, result)

    assert landed.landed and landed.branch == "main", landed.message
    assert git(repo, "rev-parse", "main") == result.final_sha
    assert git(repo, "merge-base", "--is-ancestor", before, "main") == ""  # a fast-forward: before is kept
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"
    assert (repo / "notes.txt").read_text() == "the user's untracked file\n"
    assert (repo / "README.md").read_text() == "# shop, edited but not committed\n"
    assert (repo / "app/registry.py").read_text().count("'ui',") == 1  # the checkout moved with the branch
    assert git(repo, "status", "--porcelain").splitlines() == ["M README.md", "?? notes.txt"]  # (stripped)


def test_land_refuses_when_the_users_uncommitted_edit_would_be_overwritten(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path)
    add_to_registry(ctx, "api")
    (ctx.repo / "app/registry.py").write_text("REGISTRY = ['mine, not committed']\n")
    rebaseline(ctx.repo)  # land is refused: this edit and everything else must stay as it is
    before = git(ctx.repo, "rev-parse", "main")

    landed = land(ctx, integrate(ctx, base))

    assert not landed.landed and "git refused to fast-forward main" in landed.message
    assert git(ctx.repo, "rev-parse", "main") == before
    assert (ctx.repo / "app/registry.py").read_text() == "REGISTRY = ['mine, not committed']\n"
