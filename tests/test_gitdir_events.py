"""The shared-git-dir snapshot told what changed by inotify (``tasks.git.events``) is exactly what
reading everything finds: after each change an agent could make, and after each event that
forces a full read (the queue overflowed, a folder removed, a symlink on the way, the watch
budget spent, inotify switched off)."""

from __future__ import annotations

import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefect_work_clusters.tasks.agents import guard
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import events, gitdir
from prefect_work_clusters.tasks.git import refs as gitrefs
from tests.conftest import git, make_repo

T = TypeVar("T")


def _content(path: Path) -> gitdir.Content | None:
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return 0o777, os.readlink(path)
        return stat.S_IMODE(st.st_mode), path.read_bytes()
    except OSError:
        return None


def _truth(repo: Path, admin: list[str]) -> gitdir.GitDirState:
    """What the guard watches, read with no cache at all, and the refs as git lists them."""
    common = gitops.common_dir(repo)
    files = {rel: c for rel in gitdir.FILES if (c := _content(common / rel)) is not None}

    def scan(rel: str, skip: tuple[str, ...] = ()) -> None:
        path = common / rel
        if not path.is_dir() or path.is_symlink():
            if (c := _content(path)) is not None:
                files[rel] = c
            return
        for name in sorted(os.listdir(path)):
            if name not in skip:
                scan(f"{rel}/{name}")

    for folder in gitdir.FOLDERS:
        if os.path.lexists(common / folder):
            scan(folder)
    for name in admin:
        if (common / "worktrees" / name).is_dir():
            scan(f"worktrees/{name}", gitdir.ADMIN_SKIP)
    listed = git(repo, "for-each-ref", "--format=%(objectname) %(refname)")
    return gitdir.GitDirState(files=files, refs=dict(reversed(line.split(" ")) for line in listed.splitlines()))


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    repo = make_repo(tmp_path, {"a.txt": "a\n"})
    git(repo, "branch", "other")
    yield repo
    events.close(str(gitops.common_dir(repo)))


def _agree(repo: Path, monkeypatch: pytest.MonkeyPatch, admin: list[str]) -> None:
    truth = _truth(repo, admin)
    told = gitdir.snapshot(repo, admin)  # the watches' answer first: a missed event shows as stale
    with monkeypatch.context() as forced:
        forced.setenv(events.OFF_ENV, "1")
        full = gitdir.snapshot(repo, admin)
    assert told == truth
    assert full == truth


def test_every_kind_of_change_is_seen_as_a_full_read_sees_it(tmp_path: Path, repo: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    common = gitops.common_dir(repo)
    hooks, info, outside = common / "hooks", common / "info", tmp_path / "outside"
    outside.mkdir()
    admin: list[str] = []
    _agree(repo, monkeypatch, admin)
    mirror = events._MIRRORS[str(common)]
    assert mirror.queue is not None and mirror.wds  # watching, not walking
    before = events.trees(str(common), gitdir.FOLDER_ROOTS)
    (common / "FETCH_HEAD").write_bytes(b"not watched")  # git's own churn beside the watched files
    assert events.trees(str(common), gitdir.FOLDER_ROOTS) == before  # nothing read again

    def same_size_same_mtime(path: Path, data: bytes) -> None:
        st = os.lstat(path)
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
        os.write(fd, data)
        os.close(fd)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    steps = [
        lambda: (hooks / "pre-commit").write_text("#!/bin/sh\nexit 0\n"),
        lambda: same_size_same_mtime(hooks / "pre-commit", b"#!/bin/sh\nexit 1\n"),
        lambda: (hooks / "pre-commit").chmod(0o755),
        lambda: os.link(hooks / "pre-commit", outside / "linked"),
        lambda: same_size_same_mtime(outside / "linked", b"#!/bin/sh\nrm -rf\n"),  # the folder hears nothing
        lambda: (outside / "new").write_text("moved in\n"),
        lambda: os.replace(outside / "new", hooks / "pre-commit"),  # renamed over
        lambda: same_size_same_mtime(outside / "linked", b"#!/bin/sh\nexit 2\n"),  # the old inode: not .git's now
        lambda: (info / "exclude").unlink(),
        lambda: (hooks / "sub").mkdir(),
        lambda: (hooks / "sub" / "post-commit").write_text("in a new folder\n"),
        lambda: same_size_same_mtime(hooks / "sub" / "post-commit", b"in a NEW folder\n"),
        lambda: (common / "config").write_text((common / "config").read_text() + "[wc]\n\tplanted = in place\n"),
        lambda: git(repo, "config", "core.hooksPath", "/tmp/evil"),  # lock file renamed over
        lambda: (common / "objects" / "info" / "alternates").write_text("/tmp/elsewhere\n"),
        lambda: (common / "shallow").write_text("0" * 40 + "\n"),
        lambda: (common / "shallow").unlink(),  # git refuses a shallow file naming no commit
        lambda: git(repo, "update-ref", "refs/heads/other", "HEAD"),
        lambda: git(repo, "branch", "third"),
        lambda: git(repo, "pack-refs", "--all"),
        lambda: (common / "refs" / "heads" / "third").write_text(git(repo, "rev-parse", "HEAD") + "\n"),
        lambda: git(repo, "update-ref", "-d", "refs/heads/third"),
        lambda: git(repo, "tag", "v1"),
        lambda: (common / "refs" / "replace").mkdir(exist_ok=True),
        lambda: git(repo, "update-ref", f"refs/replace/{'1' * 40}", "HEAD"),
        lambda: git(repo, "update-ref", "-d", f"refs/replace/{'1' * 40}"),
        lambda: git(repo, "worktree", "add", "-q", "--detach", str(tmp_path / "wt1")),
        lambda: admin.append("wt1"),
        lambda: (common / "worktrees" / "wt1" / "HEAD").write_text(git(repo, "rev-parse", "HEAD") + "\n"),
        lambda: (common / "worktrees" / "wt1" / "index").write_bytes(b"skipped"),
        lambda: (common / "worktrees" / "wt1" / "ORIG_HEAD").write_text("planted\n"),
        lambda: git(repo, "worktree", "add", "-q", "--detach", str(tmp_path / "wt2")),
        lambda: admin.append("wt2"),
        lambda: git(repo, "worktree", "remove", "--force", str(tmp_path / "wt1")),  # a watched folder removed
        lambda: shutil.rmtree(hooks / "sub"),
        lambda: (shutil.rmtree(info), os.symlink(outside, info)),  # a symlink where a folder was
        lambda: (outside / "exclude").write_text("behind the symlink: not watched, not read\n"),
        lambda: (info.unlink(), info.mkdir(), (info / "exclude").write_text("back\n")),
        lambda: (common / "objects" / "info").rename(outside / "objinfo"),  # a folder on the way moved
        lambda: os.symlink(outside / "objinfo", common / "objects" / "info"),  # and a symlink on the way
        lambda: (outside / "objinfo" / "alternates").write_text("/tmp/other\n"),
        lambda: ((common / "objects" / "info").unlink(), (outside / "objinfo").rename(common / "objects" / "info")),
        lambda: (common / "objects" / "info" / "alternates").write_text("/tmp/back\n"),
    ]
    for step in steps:
        step()
        _agree(repo, monkeypatch, admin)


def test_an_overflowing_queue_and_a_spent_watch_budget_read_everything(repo: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    common = str(gitops.common_dir(repo))
    hooks = Path(common) / "hooks"
    _agree(repo, monkeypatch, [])
    mirror = events._MIRRORS[common]
    assert mirror.builds == 1
    # More events than the kernel queues (16,384 here): the queue says it overflowed.
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    for i in range(limit // 3 + 100):
        (hooks / f"h{i}").touch()
        (hooks / f"h{i}").unlink()
    (hooks / "planted").write_text("after the overflow\n")
    git(repo, "branch", "made-then")
    _agree(repo, monkeypatch, [])
    assert mirror.builds == 2  # a fresh watch set, and everything read again
    # The watch budget: past it the base is walked until its watch is closed.
    monkeypatch.setattr(events, "MAX_WATCHES", 3)
    (hooks / "planted").write_text("changed while walking\n")
    _agree(repo, monkeypatch, [])
    assert mirror.closed
    (hooks / "planted").unlink()
    _agree(repo, monkeypatch, [])
    assert gitrefs.read(repo)["refs/heads/made-then"] == git(repo, "rev-parse", "HEAD")


_NAMES = ("a", "b", "sub/c")
_OPS = ("write", "same-size", "chmod", "link-write", "rename-over", "delete", "rmdir", "ref")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_OPS), st.sampled_from(_NAMES), st.binary(min_size=1, max_size=3)),
                min_size=1, max_size=8))
def test_random_sequences_agree_with_a_full_read(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch,
                                                  ops: list[tuple[str, str, bytes]]) -> None:
    """Any sequence of those changes, each one checked, over one warm watch set."""
    common = gitops.common_dir(repo)
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    for op, name, data in ops:
        path = common / "hooks" / name
        path.parent.mkdir(exist_ok=True)
        if op == "ref":
            git(repo, "update-ref", f"refs/heads/{name}", "HEAD")
        elif op == "rmdir":
            shutil.rmtree(common / "hooks" / "sub", ignore_errors=True)
        elif op == "delete" or not path.exists() and op != "write" and op != "rename-over":
            path.unlink(missing_ok=True)
        elif op == "write":
            path.write_bytes(data)
        elif op == "same-size":
            before = os.lstat(path)
            path.write_bytes(bytes(reversed(path.read_bytes())))
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        elif op == "chmod":
            path.chmod(path.stat().st_mode ^ 0o100)
        elif op == "link-write":
            link = outside / f"link-{name.replace('/', '-')}"
            link.unlink(missing_ok=True)
            os.link(path, link)
            with open(link, "r+b") as fh:
                fh.write(data[:1])
        else:
            (outside / "new").write_bytes(data)
            os.replace(outside / "new", path)
        _agree(repo, monkeypatch, [])


def _soon(fn: Callable[[], T], seconds: float = 30) -> T:
    """``fn()``, failing the test instead of hanging it when ``fn`` waits for ever."""
    box: list[T] = []
    raised: list[BaseException] = []

    def call() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # noqa: BLE001 - raised again in the test's thread
            raised.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn} hung"
    if raised:
        raise raised[0]
    return box[0]


def test_a_fifo_planted_where_git_keeps_a_file_never_hangs_the_guard(tmp_path: Path) -> None:
    """Opening a FIFO to read waits for a writer; git itself hangs on one in refs/ (measured)."""
    repo = make_repo(tmp_path, {"README.md": "# r\n"})
    wt = tmp_path / "wt"
    git(repo, "worktree", "add", "-q", "-b", "wt", str(wt))
    common = gitops.common_dir(repo)
    before = gitdir.snapshot(repo, ["wt"])
    os.mkfifo(common / "hooks" / "post-commit")
    after = _soon(lambda: gitdir.snapshot(repo, ["wt"]))
    changes = gitdir.compare(before, after, ["wt"])
    assert [c.describe() for c in changes] == [".git/hooks/post-commit added"]
    gitdir.restore(repo, changes)
    assert not os.path.lexists(common / "hooks" / "post-commit")

    os.mkfifo(common / "refs" / "heads" / "evil")  # a ref file git cannot read
    with pytest.raises(gitops.GitError, match="refs/heads/evil is not a file git can read"):
        _soon(lambda: gitrefs.read(repo))
    os.unlink(common / "refs" / "heads" / "evil")

    link = guard.git_link(wt)
    assert link and link.startswith("gitdir:")
    (wt / ".git").unlink()
    os.mkfifo(wt / ".git")  # the worktree's link to its git dir
    assert _soon(lambda: guard.git_link(wt)) is None
    assert _soon(lambda: gitops.run(wt, "status", check=False)).status == 128  # git is not started on it
    assert _soon(lambda: gitops.head_ref(wt)) == ""
