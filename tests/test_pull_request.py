"""Landing as a pull request, against a fake GitHub API on loopback and a bare repo as the remote:
the branch is pushed, exactly one draft pull request is opened with the report as its body, a
second landing updates it, and the token is never written anywhere but the request header."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.errors import PlanError
from prefect_work_clusters.tasks.integration import pull_request as pr
from prefect_work_clusters.tasks.integration.land import land
from prefect_work_clusters.tasks.plan.load import load_plan
from prefect_work_clusters.tasks.plan.models import PullRequestOptions
from tests.conftest import git
from tests.github_fake import fake_github
from tests.integration_helpers import add_to_registry, integrate, setup

TOKEN = "ghp_fake0123456789abcdefTOKEN"
TWO_CLUSTERS = "name: p\nclusters:\n  - {name: a, paths: [a/]}\n  - {name: b, paths: [b/]}\n"


def pull_request_ctx(ctx: RunContext, remote: Path, **options: object) -> RunContext:
    opts = PullRequestOptions.model_validate({"remote": str(remote), "repository": "acme/shop", **options})
    integration = ctx.plan.integration.model_copy(update={"land": "pull_request", "pull_request": opts})
    return ctx.model_copy(update={"plan": ctx.plan.model_copy(update={"integration": integration})})


def test_land_pushes_the_branch_and_opens_one_draft_pull_request_then_updates_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, base = setup(tmp_path)
    for cluster in ("api", "ui"):
        add_to_registry(ctx, cluster)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    ctx = pull_request_ctx(ctx, remote, labels=["work-clusters"])
    main = git(ctx.repo, "rev-parse", "main")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)

    with fake_github() as gh:
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        result = integrate(ctx, base)
        first = land(ctx, result, "# Merge report: shop\n\n**integrated and verified**\n", "http://ui/artifacts/key/x")
        assert first.landed and first.url == "https://github.example/acme/shop/pull/1", first.message
        assert git(remote, "rev-parse", "refs/heads/clusters/shop/integration") == result.final_sha
        [opened] = gh.pulls
        assert opened["draft"] is True and opened["title"] == "Build the shop"
        assert (opened["head"]["ref"], opened["base"]["ref"]) == ("clusters/shop/integration", "main")
        assert opened["body"].startswith("# Merge report: shop") and "http://ui/artifacts/key/x" in opened["body"]
        assert opened["labels"] == ["work-clusters"]

        add_to_registry(ctx, "db")  # a second run: one more cluster, the same pull request
        again = integrate(ctx, base)
        second = land(ctx, again, "# Merge report: shop (second run)\n")
        assert second.landed and "#1 updated" in second.message, second.message
        assert len(gh.pulls) == 1 and gh.pulls[0]["body"].startswith("# Merge report: shop (second run)")
        assert git(remote, "rev-parse", "refs/heads/clusters/shop/integration") == again.final_sha

    assert [r["method"] for r in gh.requests] == ["GET", "POST", "POST", "GET", "PATCH", "POST"]
    assert gh.requests[0]["query"] == {"head": ["acme:clusters/shop/integration"], "state": ["open"]}
    assert {r["headers"]["Authorization"] for r in gh.requests} == {f"Bearer {TOKEN}"}
    assert git(ctx.repo, "rev-parse", "main") == main  # a pull request lands nothing locally
    assert TOKEN not in first.model_dump_json() + second.model_dump_json()
    assert TOKEN not in git(ctx.repo, "config", "--list") + git(remote, "config", "--list")


def test_refusals_are_one_line_without_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, base = setup(tmp_path)
    add_to_registry(ctx, "api")
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    ctx = pull_request_ctx(ctx, remote)
    result = integrate(ctx, base)

    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    no_token = land(ctx, result, "report")
    assert not no_token.landed and "needs a GitHub token: set GITHUB_TOKEN" in no_token.message

    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with fake_github() as gh:
        monkeypatch.setenv("GITHUB_API_URL", gh.url)
        gh.fail_with = (422, "Validation Failed")
        refused = land(ctx, result, "report")
    assert not refused.landed and refused.message.startswith("pull request not opened: GitHub API GET")
    assert "answered 422: Validation Failed" in refused.message and TOKEN not in refused.message

    gone = pull_request_ctx(ctx, tmp_path / "no-such-remote.git")
    unpushed = land(gone, result, "report")
    assert not unpushed.landed and "git push to" in unpushed.message and "\n" not in unpushed.message


def test_the_body_is_cut_to_the_api_limit_and_keeps_the_link() -> None:
    body = pr.trimmed_body("x" * 70_000, "http://ui/artifacts/key/merge-report-shop")
    assert len(body) == pr.BODY_LIMIT and body.endswith("http://ui/artifacts/key/merge-report-shop\n")
    assert pr.trimmed_body("short", None) == "short"


@pytest.mark.parametrize(("integration", "message"), [
    ("land: pull_request", "integration.pull_request: is required with land: pull_request"),
    ("pull_request: {repository: acme/shop}", "integration.pull_request: has no effect unless integration.land"),
    ("land: pull_request\n  pull_request: {repository: shop}", "integration.pull_request.repository"),
    ("land: merge", "integration.land"),
])
def test_plan_validation_names_the_field(tmp_path: Path, integration: str, message: str) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(f"{TWO_CLUSTERS}integration:\n  {integration}\n")
    with pytest.raises(PlanError, match=message.replace("(", r"\(")):
        load_plan(plan)


def test_a_plan_with_approval_and_a_pull_request_loads(tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text(f"{TWO_CLUSTERS}integration:\n  approve: true\n"
                    "  land: pull_request\n  pull_request: {repository: acme/shop, base: develop}\n")
    loaded = load_plan(plan).integration
    assert loaded.approve and loaded.land == "pull_request" and loaded.pull_request
    options = loaded.pull_request
    assert (options.remote, options.base, options.draft) == ("origin", "develop", True)
