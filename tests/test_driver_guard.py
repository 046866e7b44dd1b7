"""The driver guard's own rules (``tasks.git.drivers``): which ``-c`` overrides neutralise a planted
filter, merge driver or signing program, and a config planted while the guard reads it. Hostile
agents planting them in a real run are in ``test_containment.py``."""

from __future__ import annotations

from pathlib import Path

from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git.drivers import MERGE_FILE, DriverGuard, overrides_for
from tests.conftest import git, git_calls


def test_overrides_neutralise_only_what_was_planted() -> None:
    lfs = {("filter.lfs.process", "git-lfs filter-process"), ("filter.lfs.clean", "git-lfs clean -- %f")}
    planted = {("filter.lfs.clean", "/tmp/evil"), ("filter.ev.smudge", "/tmp/evil"), ("merge.ev.driver", "/tmp/evil"),
               ("gpg.ssh.program", "/tmp/evil")}
    args = overrides_for(planted, lfs)
    pairs = dict(a.split("=", 1) for a in args[1::2])
    assert pairs == {"filter.lfs.clean": "git-lfs clean -- %f",  # the user's own filter keeps working
                     "filter.ev.smudge": "", "filter.ev.required": "false", "merge.ev.driver": MERGE_FILE,
                     "commit.gpgSign": "false", "tag.gpgSign": "false", "gpg.ssh.program": "ssh-keygen"}
    assert set(args[0::2]) == {"-c"}


def test_a_config_planted_while_the_guard_reads_it_is_read_again_before_our_git_runs(tmp_path: Path) -> None:
    """An agent plants a filter one ``git config`` at a time: the guard's read sees the first
    command, the second lands while it reads. The call's overrides must cover both, or that very
    git call would run the smudge command planted under the read."""
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", str(repo))
    common = gitops.common_dir(repo)
    guard = DriverGuard()
    guard.trust(common, "")
    git(repo, "config", "filter.ev.clean", "/tmp/evil")
    reads: list[str] = []

    def read() -> str:
        listing = gitops.run(repo, "config", "--list", "--show-origin", "-z", drivers=False).stdout
        if not reads:  # the agent's next `git config`, while this read was under way
            git(repo, "config", "filter.ev.smudge", "/tmp/evil")
        reads.append(listing)
        return listing

    args = guard.args(str(repo), lambda: common, None, read)
    pairs = dict(a.split("=", 1) for a in args[1::2])
    assert len(reads) == 2
    assert pairs == {"filter.ev.clean": "", "filter.ev.smudge": "", "filter.ev.required": "false"}


def test_signing_before_the_run_trusts_the_config_is_read_once_until_the_config_changes(tmp_path: Path) -> None:
    """Before the run's start (the base commit; integration called on its own) the signing of our
    commit-tree calls comes from the config as it is: one listing for a hundred commits, and a
    new one once the config file changes."""
    repo = tmp_path / "repo"
    git(tmp_path, "init", "-q", str(repo))
    with git_calls() as calls:
        assert [gitops.signing(repo) for _ in range(100)] == [()] * 100
        git(repo, "config", "commit.gpgSign", "true")
        git(repo, "config", "user.signingKey", "ABCD1234")
        assert gitops.signing(repo) == ("-SABCD1234",)
    assert sum(1 for args in calls if args[:2] == ("config", "--list")) == 2
