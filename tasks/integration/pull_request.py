"""Landing as a pull request: push the integration branch, then open (or update) its pull request
through the GitHub REST API.

The token never reaches a command line, a URL or a file. git gets it as an ``http.extraHeader``
scoped to the remote's URL through ``GIT_CONFIG_*`` variables (git 2.31+): unlike an askpass
helper it needs no script written to disk, and unlike a token in the URL it cannot show up in
``git remote -v``, in a reflog or in an error message quoting the URL. The API gets it in a header.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.plan.models import PullRequestOptions

BODY_LIMIT = 65_536  # characters the API takes in a pull request's body
API_TIMEOUT = 30.0


class PullRequestError(WorkClustersError):
    """The push or the API refused; the message says which and why, never the token."""


class PullRequest(BaseModel):
    number: int
    url: str
    created: bool


def github_token(credentials: str | None) -> str:
    """The token: the named Prefect ``Secret`` block (or ``GitHubCredentials`` block, when
    prefect-github is installed), else ``$GITHUB_TOKEN``."""
    if credentials:
        from prefect.blocks.system import Secret

        try:
            secret: Any = Secret.load(credentials, _sync=True)  # type: ignore[call-arg]
            return str(secret.get())
        except ValueError:
            pass
        try:
            from prefect_github import GitHubCredentials
        except ImportError:
            raise PullRequestError(f"integration.pull_request.credentials: no Secret block named {credentials!r}; "
                                   "save one (prefect block create secret) or set GITHUB_TOKEN") from None
        token = GitHubCredentials.load(credentials, _sync=True).token
        if token is None:
            raise PullRequestError(f"GitHubCredentials block {credentials!r} holds no token")
        return str(token.get_secret_value())
    token = os.environ.get("GITHUB_TOKEN", "")
    if not token:
        raise PullRequestError("land: pull_request needs a GitHub token: set GITHUB_TOKEN or name a Secret block "
                               "in integration.pull_request.credentials")
    return token


def push_env(repo: Path, remote: str, token: str) -> dict[str, str]:
    """git's environment that authenticates to ``remote``'s https URL only; empty for other URLs."""
    url = remote if "://" in remote else gitops.run(repo, "remote", "get-url", remote, check=False).stdout.strip()
    if not url.startswith("https://"):
        return {}
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"http.{url}.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"}


def push(ctx: RunContext, options: PullRequestOptions, sha: str, token: str) -> None:
    """Push ``sha`` as the integration branch: it is ours, rewritten by every run, so forced."""
    res = gitops.run(ctx.repo, "push", "--quiet", "--force", options.remote,
                     f"{sha}:refs/heads/{ctx.integration_branch}",
                     env=push_env(ctx.repo, options.remote, token), check=False, timeout=300)
    if res.status != 0:
        why = " ".join((res.stderr or res.stdout).replace(token, "***").strip().splitlines()[-3:])
        raise PullRequestError(f"git push to {options.remote} failed: {why}")


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
