"""A git remote between machines: a bare repository in a temp dir as the remote, our own clone of
it, the plan's branches pushed there (never forced), and a token that reaches git and nothing else."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from prefect.blocks.system import Secret
from typer.testing import CliRunner

from prefect_work_clusters.flows.cli import app
from prefect_work_clusters.flows.cluster import work_clusters_cluster
from prefect_work_clusters.flows.housekeeping import status_table
from prefect_work_clusters.flows.work_clusters import integrate_clusters, work_clusters
from prefect_work_clusters.tasks import credentials
from prefect_work_clusters.tasks.errors import BadInput
from prefect_work_clusters.tasks.git import core
from prefect_work_clusters.tasks.git import remote as gitremote
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.resolve import resolve_any
from tests.conftest import git, user_changes_expected, write_agent
from tests.loop_helpers import WRITER, shop_repo

SECRET = "ghp_remote-test-token-0123456789"


def bare_remote(tmp_path: Path) -> tuple[Path, Path]:
    """The shop repo with its plan committed, pushed to a bare repository: (remote, the user's repo)."""
    repo, plan = shop_repo(tmp_path)
    (repo / "shop.yaml").write_text(plan.read_text())
    git(repo, "add", "shop.yaml")
    git(repo, "commit", "-qm", "plan")
    user_changes_expected(repo)  # the test committed the plan itself
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(tmp_path / "remote.git")], check=True)
    return tmp_path / "remote.git", repo


def remote_branches(remote_dir: Path) -> dict[str, str]:
    lines = git(remote_dir, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads/").splitlines()
    return dict(line.split() for line in lines)


def test_what_counts_as_a_remote(tmp_path: Path) -> None:
    remote_dir, repo = bare_remote(tmp_path)
    assert gitremote.is_remote(str(remote_dir)) and gitremote.is_remote(f"file://{remote_dir}")
    assert gitremote.is_remote("https://github.com/o/r.git") and gitremote.is_remote("git@github.com:o/r.git")
    assert not gitremote.is_remote(str(repo)) and not gitremote.is_remote(str(repo / "api"))
    assert not gitremote.is_remote(str(tmp_path / "missing"))
    assert gitremote.scrub(f"https://bot:{SECRET}@host/r.git and ssh://git@h/r") == "https://host/r.git and ssh://h/r"
    with pytest.raises(BadInput, match="dispatch needs a remote repo"):
        resolve_any("shop.yaml", repo, RunOptions(dispatch="work-clusters-cluster/cluster"))


def test_the_token_reaches_git_through_askpass_and_no_message(tmp_path: Path) -> None:
    # git itself asks the helper, as it would for an https remote, through our hardened git calls
    # (GIT_TERMINAL_PROMPT=0 stops only the terminal prompt); the token is in no argv.
    with gitremote.askpass_env(SECRET) as env:
        filled = core.run(tmp_path, "credential", "fill", stdin="protocol=https\nhost=example.com\n\n",
                          env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), **env}).stdout
        assert f"password={SECRET}" in filled and "username=x-access-token" in filled
        assert SECRET not in Path(env["GIT_ASKPASS"]).read_text()
    assert not Path(env["GIT_ASKPASS"]).exists()
    # A URL with the token in it: git's own error names the URL, our message does not hold the token.
    url = f"https://bot:{SECRET}@127.0.0.1:9/nothing.git"
    with pytest.raises(BadInput) as caught:
        resolve_any("shop.yaml", url, RunOptions(workspace=str(tmp_path / "ws")))
    assert "cannot clone or fetch https://127.0.0.1:9/nothing.git" in str(caught.value)
    assert SECRET not in str(caught.value)


@pytest.mark.usefixtures("prefect_harness")
def test_a_run_against_a_bare_remote_pushes_every_branch_and_lands_fast_forward(
        tmp_path: Path, records: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        capfd: pytest.CaptureFixture[str]) -> None:
    remote_dir, repo = bare_remote(tmp_path)
    main_before = git(remote_dir, "rev-parse", "main")
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    monkeypatch.chdir(tmp_path / "records")  # the plan is not here: it is read from the remote's base
    ws = tmp_path / "ws"
    agent = write_agent(tmp_path, WRITER)

    state = work_clusters(plan="shop.yaml", repo=str(remote_dir), agent_cmd=agent, workspace=str(ws),
                          land=True, return_state=True)

    assert state.is_completed(), state.message
    clone = ws / "remote"
    assert git(clone, "config", "remote.origin.url") == str(remote_dir)
    report_file = ws / "remote.clusters/shop/.runs/report.json"
    assert report_file.exists()
    pushed = remote_branches(remote_dir)
    assert {"clusters/shop/base", "clusters/shop/api", "clusters/shop/ui", "clusters/shop/db",
            "clusters/shop/integration"} <= set(pushed)
    final = git(clone, "rev-parse", "clusters/shop/integration")
    assert pushed["clusters/shop/integration"] == final
    assert pushed["main"] == final and git(remote_dir, "merge-base", "--is-ancestor", main_before, final) == ""
    assert git(remote_dir, "show", f"{final}:ui/impl.py") == "NAME = 'ui'"
    assert git(repo, "rev-parse", "main") == main_before  # the user's own repo is not the remote

    # One cluster as its own flow run, elsewhere (its own clone): it starts from the remote's
    # branch (resume), runs again, and pushes fast-forward.
    # Its credentials from a Secret block, named as a flow parameter (loaded inside the flow run).
    Secret(value=SECRET).save("remote-token", overwrite=True)
    assert credentials.token("remote-token") == SECRET
    with pytest.raises(BadInput, match="credentials block 'no-such-block' cannot be loaded"):
        credentials.token("no-such-block")
    api_before = pushed["clusters/shop/api"]
    child = work_clusters_cluster(repo=f"file://{remote_dir}", plan="shop.yaml", cluster="api",
                                  base_branch="clusters/shop/base", agent_cmd=agent, rerun=True,
                                  credentials="remote-token", workspace=str(tmp_path / "elsewhere"),
                                  return_state=True)
    assert child.is_completed(), child.message
    api_after = remote_branches(remote_dir)["clusters/shop/api"]
    assert api_after != api_before and git(remote_dir, "merge-base", "--is-ancestor", api_before, api_after) == ""
    assert (tmp_path / "elsewhere/cluster-api/remote/.git").is_dir()
    assert len((tmp_path / "records/runs.log").read_text().split()) == 4

    # A branch that moved on the remote (someone else's commit) is reported, never overwritten.
    theirs = git(remote_dir, "commit-tree", f"{api_before}^{{tree}}", "-p", api_before, "-m", "someone else's")
    git(remote_dir, "update-ref", "refs/heads/clusters/shop/api", theirs)
    refused = work_clusters_cluster(repo=f"file://{remote_dir}", plan="shop.yaml", cluster="api",
                                    base_branch="clusters/shop/base", agent_cmd=agent, rerun=True,
                                    workspace=str(tmp_path / "elsewhere"), return_state=True)
    assert refused.is_failed() and "refused" in (refused.message or ""), refused.message
    assert remote_branches(remote_dir)["clusters/shop/api"] == theirs

    # status, integrate and clean take the URL as run does, and find the run's clone (--workspace).
    where = ["--repo", str(remote_dir), "--workspace", str(ws)]
    shown = CliRunner().invoke(app, ["status", "shop.yaml", *where])
    assert shown.exit_code == 0, shown.output + repr(shown.exception)
    assert f"plan shop on {remote_dir}: integrated and verified" in shown.output
    heads = list(status_table(Path("shop.yaml"), str(remote_dir), RunOptions(workspace=str(ws))).columns[2].cells)
    assert theirs[:12] in heads, heads  # the remote's branch, not this clone's older one
    again = integrate_clusters(plan="shop.yaml", repo=str(remote_dir), workspace=str(ws), return_state=True)
    assert again.is_completed(), again.message
    integrated = remote_branches(remote_dir)["clusters/shop/integration"]
    assert git(remote_dir, "merge-base", "--is-ancestor", theirs, integrated) == ""  # caught up, pushed
    cleaned = CliRunner().invoke(app, ["clean", "shop.yaml", *where, "--branches"])
    assert cleaned.exit_code == 0, cleaned.output + repr(cleaned.exception)
    # Merged into the integration: deleted here and there; the integration is on no other branch: kept.
    assert "kept branch clusters/shop/integration: it has commits found on no other branch" in cleaned.output
    assert f"deleted on {remote_dir}: clusters/shop/base, clusters/shop/api, clusters/shop/ui, " \
           "clusters/shop/db" in cleaned.output
    assert remote_branches(remote_dir) == {"main": pushed["main"], "clusters/shop/integration": integrated}
    # A delete is conditional on the commit judged: a branch that moved there meanwhile stays.
    assert "stale info" in (gitremote.delete(clone, {"clusters/shop/integration": final}, {}) or "")
    assert remote_branches(remote_dir)["clusters/shop/integration"] == integrated

    # The token was there for git all along, and is in nothing we wrote or said.
    seen = [caplog.text, *capfd.readouterr(), state.message or ""]
    seen += [p.read_text(errors="replace") for folder in (ws, tmp_path / "elsewhere") for p in folder.rglob("*")
             if p.is_file() and ".git" not in p.parts]
    assert not [s for s in seen if SECRET in s]
    assert credentials.token(None) == SECRET
