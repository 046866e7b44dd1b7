"""Landing as a pull request: push the integration branch, then open (or update) its pull request
through the GitHub REST API.

The token (``tasks.credentials``) never reaches a command line or a URL: git gets it from the
askpass helper every remote call uses (``tasks.git.remote.askpass_env``), the API in a header.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel

from prefect_work_clusters.tasks import credentials
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.errors import BadInput, WorkClustersError
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import remote as gitremote
from prefect_work_clusters.tasks.plan.models import PullRequestOptions

BODY_LIMIT = 65_536  # characters the API takes in a pull request's body
API_TIMEOUT = 30.0


class PullRequestError(WorkClustersError):
    """The push or the API refused; the message says which and why, never the token."""


class PullRequest(BaseModel):
    number: int
    url: str
    created: bool


def github_token(name: str | None) -> str:
    """The token (``tasks.credentials``: the named block, else the environment); refused in one
    line when there is none."""
    try:
        found = credentials.token(name)
    except BadInput as exc:
        raise PullRequestError(str(exc)) from None
    if not found:
        raise PullRequestError("land: pull_request needs a GitHub token: set GITHUB_TOKEN or name a Secret block "
                               "in integration.pull_request.credentials")
    return found


def push(ctx: RunContext, options: PullRequestOptions, sha: str, token: str) -> None:
    """Push ``sha`` as the integration branch: it is ours, rewritten by every run, so forced. The
    token reaches git as every remote's does, through the askpass helper."""
    with gitremote.askpass_env(token) as env:
        res = gitops.run(ctx.repo, "push", "--quiet", "--force", options.remote,
                         f"{sha}:refs/heads/{ctx.integration_branch}", env=env, check=False, timeout=300)
    if res.status != 0:
        why = " ".join(gitremote.scrub(res.stderr or res.stdout).replace(token, "***").strip().splitlines()[-3:])
        raise PullRequestError(f"git push to {gitremote.scrub(options.remote)} failed: {why}")


def trimmed_body(report: str, artifact_url: str | None) -> str:
    """The merge report as the body, cut to what the API accepts, the artifact's link kept."""
    link = f"\n\nMerge report in Prefect: {artifact_url}\n" if artifact_url else ""
    if len(report) + len(link) <= BODY_LIMIT:
        return report + link
    cut = "\n\n… (cut: the whole report is in the run's merge-report.md)"
    return report[:BODY_LIMIT - len(cut) - len(link)] + cut + link


def api_url() -> str:
    return os.environ.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")


def _call(client: httpx.Client, method: str, path: str, **kwargs: Any) -> Any:
    try:
        res = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise PullRequestError(f"GitHub API {method} {path}: {exc.__class__.__name__}: {exc}") from None
    if res.status_code >= 400:
        try:
            message = res.json().get("message", "")
        except ValueError:
            message = res.text[:200]
        raise PullRequestError(f"GitHub API {method} {path} answered {res.status_code}: {message}")
    return res.json()


def open_or_update(options: PullRequestOptions, head: str, base: str, title: str, body: str,
                   token: str) -> PullRequest:
    """The open pull request of ``head`` updated, else a new one (a draft unless told otherwise)."""
    owner = options.repository.split("/")[0]
    headers: Mapping[str, str] = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                                  "X-GitHub-Api-Version": "2022-11-28"}
    with httpx.Client(base_url=api_url(), headers=headers, timeout=API_TIMEOUT) as client:
        pulls = f"/repos/{options.repository}/pulls"
        found = _call(client, "GET", pulls, params={"head": f"{owner}:{head}", "state": "open"})
        if found:
            number = found[0]["number"]
            pr = _call(client, "PATCH", f"{pulls}/{number}", json={"title": title, "body": body, "base": base})
        else:
            pr = _call(client, "POST", pulls, json={"title": title, "head": head, "base": base, "body": body,
                                                    "draft": options.draft})
        if options.labels:
            _call(client, "POST", f"/repos/{options.repository}/issues/{pr['number']}/labels",
                  json={"labels": options.labels})
    return PullRequest(number=pr["number"], url=pr["html_url"], created=not found)
