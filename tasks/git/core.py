"""Every git process of the project starts in ``run`` here, through gitpython's command wrapper.

Why the command wrapper and not gitpython's object API: ``repo.index.add`` changes the process's
working directory and is not thread-safe (files land in the wrong worktree when agents finish
together), a held ``IndexFile`` goes stale after a command-line merge, and every live ``Repo``
keeps ``cat-file`` processes. Plumbing commands are exact and thread-safe; ``git.Git(path)``
holds no process. Measured cost: about 3 ms a call against 1.4 ms for a bare ``subprocess.run``
(a 100-cluster run makes ~5,000 calls, so ~8 s of 70 s); all benchmark targets are met with it.
The wrapper runs git in the process's own directory when the one asked for does not exist, so
``run`` refuses such a directory itself, as ``git -C`` would.

Every git process runs hardened (``HARDENED``, ``HARDENED_ENV``): every worktree shares the git
dir, and an agent can write its config, hooks and refs; nothing it planted may run in our git.
The user's own hooks do not run in our git either. Filters, merge drivers and signing
programs the user's config did not hold when the run started are overridden (``tasks.git.drivers``).

This module imports nothing of ours but the error types, the driver guard and ``files``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import BinaryIO

import git

from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.git.drivers import GUARD as DRIVERS
from prefect_work_clusters.tasks.git.files import git_link, odd_git_link, read_nowait

# Variables that tie git to one repository (`git rev-parse --local-env-vars`). A hook or a test
# runner may have set them; if they leaked into our git calls every command would act on the
# wrong repository. They are dropped per call (``run``), never from the process's environment.
LOCAL_ENV_VARS = (
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT",
    "GIT_OBJECT_DIRECTORY", "GIT_DIR", "GIT_WORK_TREE", "GIT_IMPLICIT_WORK_TREE", "GIT_GRAFT_FILE",
    "GIT_INDEX_FILE", "GIT_NO_REPLACE_OBJECTS", "GIT_REPLACE_REF_BASE", "GIT_PREFIX",
    "GIT_INTERNAL_SUPER_PREFIX", "GIT_SHALLOW_FILE", "GIT_COMMON_DIR",
)
# No hooks (planted or the user's), no fsmonitor daemon; `-c` also reaches the git processes a
# git command starts itself (through GIT_CONFIG_PARAMETERS). No automatic maintenance either: every
# `git commit` otherwise starts `git maintenance run --auto` (a process per commit, and at times a
# gc of the user's repository racing the run's agents); the user's own next git command runs it.
HARDENED = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "maintenance.auto=false")
# No replace objects (`git replace` could make an edited contract read as the base's), and never a
# credential prompt that would wait forever.
HARDENED_ENV = {"GIT_NO_REPLACE_OBJECTS": "1", "GIT_TERMINAL_PROMPT": "0"}
# Checkouts write files with one worker per core (git's parallel checkout). Measured on this machine
# at 100,000 files: 21 s instead of 63 s at load 6, most of it the kernel's time creating files,
# which one process leaves waiting on each other. Below 2,000 files (git's own threshold is 100)
# one process writes them: a sparse cluster worktree's few hundred files do not repay starting the
# workers, and worktrees are made several at once anyway (100 sparse worktrees: 0.6 s less CPU).
PARALLEL_CHECKOUT = ("-c", "checkout.workers=0", "-c", "checkout.thresholdForParallelism=2000")
NICE = shutil.which("nice")  # coreutils; without it, background git runs at the usual priority
# No git call of ours may hang a run: the longest legitimate one (a checkout of a huge tree, a
# merge) takes seconds.
TIMEOUT_SECONDS = 600.0

FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "work-clusters",
    "GIT_AUTHOR_EMAIL": "work-clusters@localhost",
    "GIT_COMMITTER_NAME": "work-clusters",
    "GIT_COMMITTER_EMAIL": "work-clusters@localhost",
}
FINISHED_TRAILER = "Work-Clusters-Finished"


class GitError(WorkClustersError):
    """A git command failed; ``str()`` gives the command and git's own message."""

    def __init__(self, argv: Sequence[str], status: int, stderr: str) -> None:
        self.argv = list(argv)
        self.status = status
        self.stderr = stderr.strip()
        super().__init__(f"git {' '.join(argv)} failed ({status}): {self.stderr.splitlines()[-1:] or ''}")


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str


# git's messages in English whatever the user's locale: some of them are parsed (rerere's).


def _argv(args: Sequence[str], env: Mapping[str, str], overrides: Sequence[str] = (),
          idle: bool = False) -> list[str]:
    """The hardened git command line; inherited repository variables (not the ones ``env`` sets
    on purpose, such as a private ``GIT_INDEX_FILE``) are unset for this call alone. ``idle``:
    at the lowest CPU priority (``nice``), when there is one."""
    unset = [name for name in LOCAL_ENV_VARS if name in os.environ and name not in env]
    prefix = ["env", *(arg for name in unset for arg in ("-u", name))] if unset else []
    lowest = [NICE, "-n", "19"] if idle and NICE else []
    return [*lowest, *prefix, "git", *HARDENED, *overrides, *args]


def _config_listing(cwd: str) -> str:
    # Listing the config runs no filter or driver, so it needs no overrides (and must not ask for them).
    return run(Path(cwd), "config", "--list", "--show-origin", "--includes", "-z", check=False, drivers=False).stdout


def _common_or_none(cwd: str) -> Path | None:
    try:
        return common_dir(Path(cwd))
    except GitError:
        return None


def _driver_overrides(cwd: str) -> tuple[str, ...]:
    if not DRIVERS.active():
        return ()
    return DRIVERS.args(cwd, lambda: _common_or_none(cwd), git_link(cwd), lambda: _config_listing(cwd))


def trust_config(repo: Path) -> None:
    """Record the filters, merge drivers and signing programs the user's config holds now (the
    start of a run): from here on, any other one is overridden in our git calls."""
    DRIVERS.trust(common_dir(repo), _config_listing(str(repo)))


def signing(repo: Path) -> tuple[str, ...]:
    """What our ``commit-tree`` calls pass to sign as ``git commit`` and ``git merge`` would: ``-S``
    (with the user's key) where the user's config signs commits. git's plumbing reads no
    ``commit.gpgSign`` (since 2.9.1), so without it a run's merges would be the only unsigned
    commits of a repository that signs. The config as the run trusted it before its first agent
    (``trust_config``): an agent that turns signing on, or names a key, changes nothing here."""
    return DRIVERS.signing(common_dir(repo), lambda: _config_listing(str(repo)))


@contextmanager
def _feed(stdin: str | None) -> Iterator[BinaryIO | None]:
    """``stdin`` as a file: the wrapper does not write a pipe while it reads the output."""
    if stdin is None:
        yield None
        return
    with tempfile.TemporaryFile() as feed:
        feed.write(stdin.encode())
        feed.seek(0)
        yield feed


def run(cwd: Path, *args: str, env: Mapping[str, str] | None = None, check: bool = True,
        timeout: float = TIMEOUT_SECONDS, stdin: str | None = None, drivers: bool = True,
        idle: bool = False) -> Result:
    """Run ``git args`` in ``cwd`` with ``env`` added to the environment (and ``stdin`` as its
    input); raise GitError on a non-zero exit when ``check``. A ``cwd`` that is not a folder fails
    as ``git -C`` would (status 128), never running git anywhere else; a call past ``timeout`` is
    killed. ``drivers=False`` leaves out the overrides of planted filters and drivers (only for
    reading the config itself); ``idle`` runs it, and the processes it starts, at the lowest CPU
    priority (work in the background that must not slow the agents)."""
    if not os.path.isdir(cwd):
        res = Result(128, "", f"fatal: cannot change to '{cwd}': No such file or directory")
    elif odd_git_link(cwd):  # git would read it and wait for ever
        res = Result(128, "", f"fatal: {os.path.join(cwd, '.git')} is a FIFO, socket or device, not a git link")
    else:
        extra = {**HARDENED_ENV, **(env or {})}
        overrides = _driver_overrides(os.path.abspath(cwd)) if drivers else ()
        try:
            with _feed(stdin) as feed:
                status, stdout, stderr = git.Git(str(cwd)).execute(
                    _argv(args, extra, overrides, idle), with_extended_output=True, with_exceptions=False, env=extra,
                    strip_newline_in_stdout=False, kill_after_timeout=timeout, istream=feed)
        except git.GitCommandNotFound as exc:
            raise GitError(args, 127, f"git is not installed or not on PATH ({exc})") from None
        res = Result(status, stdout, stderr)
    if check and res.status != 0:
        raise GitError(args, res.status, res.stderr or res.stdout)
    return res


def out(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    return run(cwd, *args, env=env).stdout.strip()


# -- repository facts ------------------------------------------------------------------------


def is_git_repo(path: Path) -> bool:
    if not path.is_dir():
        return False
    return run(path, "rev-parse", "--is-inside-work-tree", check=False).stdout.strip() == "true"


def toplevel(path: Path) -> Path:
    return Path(out(path, "rev-parse", "--show-toplevel"))


_common_dirs: dict[tuple[str, str], Path] = {}
_common_dirs_lock = threading.Lock()


def common_dir(repo: Path) -> Path:
    """The repository's shared git dir (the same for all its worktrees). Every lock, identity
    and worktree call needs it, so it is asked of git once per path and per ``.git`` link: a
    folder re-made as a worktree of another repository is asked again."""
    key = os.path.abspath(repo)
    link = git_link(key)
    with _common_dirs_lock:
        known = _common_dirs.get((key, link)) if link else None
    if known is not None:
        return known
    # No driver overrides: finding them needs this very answer.
    found = Path(run(repo, "rev-parse", "--path-format=absolute", "--git-common-dir", drivers=False).stdout.strip())
    if link:
        with _common_dirs_lock:
            _common_dirs[(key, link)] = found
    return found


def remember_common_dir(worktree: Path, common: Path) -> None:
    """Record ``common`` as the shared git dir of a worktree just made from it (by its ``.git``
    link as it is now), so that no git is asked again: one process less per new worktree."""
    key = os.path.abspath(worktree)
    link = git_link(key)
    if link:
        with _common_dirs_lock:
            _common_dirs[(key, link)] = common


def git_dir(worktree: Path) -> Path:
    """The worktree's own git dir: ``.git`` of the main checkout, ``<common>/worktrees/<name>``
    of a linked worktree (its HEAD, index, logs and merge state)."""
    return Path(out(worktree, "rev-parse", "--path-format=absolute", "--git-dir"))


def detach(worktree: Path, at: str | None = None) -> None:
    """Detach the worktree's HEAD at its commit (``at``, when the caller just read it): commits
    then move HEAD only, no branch ref."""
    run(worktree, "update-ref", "--no-deref", "-m", "work-clusters: detach for the sandbox", "HEAD",
        at or head(worktree))


def attach(worktree: Path, branch: str) -> None:
    """Point the worktree's HEAD at ``branch`` again (the files and the index stay as they are)."""
    run(worktree, "symbolic-ref", "-m", "work-clusters: attach after the sandbox", "HEAD", f"refs/heads/{branch}")


def head_ref(worktree: Path) -> str:
    """What ``git symbolic-ref --quiet HEAD`` prints (empty when HEAD is detached), read from the
    worktree's HEAD file; git is asked only when that is not a plain file holding one ``ref:`` line."""
    link = git_link(os.path.abspath(worktree))
    if link:
        head = os.path.join(worktree, link, "HEAD")  # a relative link is relative to the worktree
        try:
            data = read_nowait(head, 1024, follow=False)[1]
        except OSError:
            data = None
        plain, text = data is not None, (data or b"").decode("utf-8", errors="replace")
        if plain and text.startswith("ref: refs/") and text.count("\n") == 1 and text.endswith("\n"):
            return text[5:-1]
    return run(worktree, "symbolic-ref", "--quiet", "HEAD", check=False).stdout.strip()


def resolve_ref(repo: Path, ref: str) -> str | None:
    """The commit SHA ``ref`` names, or None when it names no commit."""
    res = run(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}", check=False)
    return res.stdout.strip() or None if res.status == 0 else None


def branch_name_ok(repo: Path, name: str) -> bool:
    return run(repo, "check-ref-format", "--branch", name, check=False).status == 0


def branch_exists(repo: Path, branch: str) -> bool:
    return resolve_ref(repo, f"refs/heads/{branch}") is not None


def current_branch(repo: Path) -> str | None:
    res = run(repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False)
    return res.stdout.strip() or None


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    return run(repo, "merge-base", "--is-ancestor", ancestor, descendant, check=False).status == 0


@cache
def _identity_env(common: Path) -> tuple[tuple[str, str], ...]:
    """Commit identity for our own commits: the user's if git has one, else a clear fallback."""
    res = run(common, "config", "user.email", check=False)
    return () if res.stdout.strip() else tuple(FALLBACK_IDENTITY.items())


def identity_env(repo: Path) -> dict[str, str]:
    """Environment that lets a commit succeed on a machine with no git identity configured."""
    return dict(_identity_env(common_dir(repo)))


def head(worktree: Path) -> str:
    return out(worktree, "rev-parse", "HEAD")
