"""The hostile agent of the containment tests: it does its normal work, then the attacks $ATTACKS
names for its cluster; and what those tests share around it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.resolve import resolve_run
from tests.conftest import git, user_changes_expected, write_agent
from tests.loop_helpers import plan_yaml, shop_repo

# Normal work first (<cluster>/impl.py), then on attempt 1 the attacks $ATTACKS names for this cluster.
HOSTILE = """
import json, stat
cluster, attempt = os.environ["WC_CLUSTER"], os.environ["WC_ATTEMPT"]
wt = pathlib.Path(os.environ["WC_WORKTREE"])
(wt / cluster / "impl.py").write_text(f"NAME = {cluster!r}\\n")
attacks = json.loads(os.environ.get("ATTACKS", "{}")).get(cluster, []) if attempt == "1" else []
marker = pathlib.Path(os.environ["MARKER_DIR"])
common = pathlib.Path(subprocess.run(["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
                                     capture_output=True, text=True, check=True).stdout.strip())

def script(name):
    path = marker.parent / f"evil-{name}.sh"
    path.write_text(f"#!/bin/sh\\ntouch {marker}/{name}\\ncat\\n")
    path.chmod(0o755)
    return str(path)

def gitc(*args, env=None):
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                          env={**os.environ, **(env or {})}).stdout.strip()

for attack in attacks:
    if attack == "hooks":
        for hook in ("pre-commit", "post-commit", "post-merge", "post-checkout", "reference-transaction",
                     "pre-merge-commit", "commit-msg", "prepare-commit-msg"):
            (common / "hooks" / hook).write_text(f"#!/bin/sh\\ntouch {marker}/hook-{hook}\\n")
            (common / "hooks" / hook).chmod(0o755)
    elif attack == "hooks-fifo":  # opened to read, a FIFO waits for a writer: the guard must not
        os.mkfifo(common / "hooks" / "post-commit")
    elif attack == "hooks-symlink":  # the whole folder swapped for a link to one outside .git
        import shutil
        outside = marker.parent / "outside-hooks"
        outside.mkdir(exist_ok=True)
        (outside / "post-commit").write_text(f"#!/bin/sh\\ntouch {marker}/hooks-symlink\\n")
        (outside / "post-commit").chmod(0o755)
        shutil.rmtree(common / "hooks")
        (common / "hooks").symlink_to(outside)
    elif attack == "hookspath":
        folder = marker.parent / "evil-hooks"
        folder.mkdir(exist_ok=True)
        (folder / "post-commit").write_text(f"#!/bin/sh\\ntouch {marker}/hookspath\\n")
        (folder / "post-commit").chmod(0o755)
        gitc("config", "core.hooksPath", str(folder))
    elif attack == "fsmonitor":
        gitc("config", "core.fsmonitor", script("fsmonitor"))
    elif attack == "filter":
        gitc("config", "filter.ev.clean", script("filter"))
        gitc("config", "filter.ev.smudge", script("filter"))
        (common / "info").mkdir(exist_ok=True)
        (common / "info" / "attributes").write_text("* filter=ev merge=ev\\n")
    elif attack == "merge":
        gitc("config", "merge.ev.driver", script("merge") + " %A %O %B")
        (common / "info").mkdir(exist_ok=True)
        (common / "info" / "attributes").write_text("* merge=ev\\n")
    elif attack == "exclude":
        (common / "info").mkdir(exist_ok=True)
        (common / "info" / "exclude").write_text("ui/\\n")
    elif attack == "replace":
        base = gitc("rev-parse", "clusters/shop/base")
        index = marker.parent / "evil-index"
        env = {"GIT_INDEX_FILE": str(index)}
        gitc("read-tree", base, env=env)
        blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], input="EDITED = True\\n",
                              capture_output=True, text=True, check=True).stdout.strip()
        gitc("update-index", "--cacheinfo", f"100644,{blob},contracts/api.py", env=env)
        tree = gitc("write-tree", env=env)
        fake = gitc("commit-tree", tree, "-p", f"{base}^", "-m", "base", env={
            "GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@x", "GIT_COMMITTER_NAME": "x", "GIT_COMMITTER_EMAIL": "x@x"})
        gitc("replace", base, fake)
    elif attack == "move-other":
        gitc("update-ref", "refs/heads/clusters/shop/db", gitc("rev-parse", "clusters/shop/base^"))
    elif attack == "move-integration":  # made before the agents start, its files written while they work
        gitc("update-ref", "refs/heads/clusters/shop/integration", gitc("rev-parse", "clusters/shop/base^"))
    elif attack == "user-checkout":
        (pathlib.Path(os.environ["USER_REPO"]) / "planted.txt").write_text("by an agent\\n")
    elif attack == "integration-worktree":  # made before the agents start; its verify would run this
        skip_all = "import pytest\\npytest.skip('x', allow_module_level=True)\\n"
        (wt.parent / "integration" / "conftest.py").write_text(skip_all)
    elif attack == "other-worktree":
        other = wt.parent / "db"
        (other / "db" / "injected.py").write_text("BACKDOOR = 1\\n")
        (other / "api" / "injected.py").write_text("BACKDOOR = 2\\n")
print(f"agent {cluster} done, attacks: {attacks}")
"""


def hostile_ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attacks: dict[str, list[str]], extra: str = "",
         verify: str | None = None) -> RunContext:
    repo, plan = shop_repo(tmp_path, plan_yaml(extra=extra, verify=verify))
    marker = tmp_path / "markers"
    marker.mkdir()
    monkeypatch.setenv("MARKER_DIR", str(marker))
    monkeypatch.setenv("ATTACKS", json.dumps(attacks))
    monkeypatch.setenv("USER_REPO", str(repo))
    return resolve_run(plan, repo, RunOptions(agent_cmd=write_agent(tmp_path, HOSTILE)))


def cluster_verify(ctx: RunContext, command: str) -> RunContext:
    clusters = [c.model_copy(update={"verify": [command]}) for c in ctx.plan.clusters]
    return ctx.model_copy(update={"plan": ctx.plan.model_copy(update={"clusters": clusters})})


def markers(tmp_path: Path) -> list[str]:
    return sorted(os.listdir(tmp_path / "markers"))


def users_git_runs_nothing_planted(ctx: RunContext, tmp_path: Path) -> None:
    """The user's own plain git after the run: status, a commit, a merge of a cluster branch."""
    user_changes_expected(ctx.repo)
    (ctx.repo / "README.md").write_text("# shop, edited by the user\n")
    git(ctx.repo, "status")
    git(ctx.repo, "commit", "-qam", "user's own commit")
    git(ctx.repo, "merge", "-q", "--no-edit", ctx.branch("api"))
    assert markers(tmp_path) == []
