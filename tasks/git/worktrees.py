"""Worktrees: one per cluster and one for the integration, added and removed under a lock
(parallel `git worktree add` corrupts .git/worktrees), full or sparse."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from filelock import FileLock

from prefect_work_clusters.tasks.git.core import (
    NICE,
    PARALLEL_CHECKOUT,
    GitError,
    branch_exists,
    common_dir,
    out,
    remember_common_dir,
    resolve_ref,
    run,
)
from prefect_work_clusters.tasks.git.files import is_object_name
from prefect_work_clusters.tasks.proc.background import begin as in_background


@contextmanager
def worktree_lock(repo: Path) -> Iterator[None]:
    """Serialize worktree add/remove: parallel `git worktree add` corrupts .git/worktrees."""
    with FileLock(str(common_dir(repo) / "work-clusters-worktrees.lock")):
        yield


# What a caller knows of a worktree's branch: not there yet, made at the start just now, or there.
BranchState = Literal["absent", "made", "present"]


@dataclass
class Worktree:
    path: Path
    branch: str | None
    head: str


def worktrees(repo: Path) -> list[Worktree]:
    found: list[Worktree] = []
    entry: dict[str, str] = {}
    for line in (out(repo, "worktree", "list", "--porcelain") + "\n\n").splitlines():
        if not line.strip():
            if "worktree" in entry:
                branch = entry.get("branch", "").removeprefix("refs/heads/") or None
                found.append(Worktree(Path(entry["worktree"]), branch, entry.get("HEAD", "")))
            entry = {}
            continue
        key, _, value = line.partition(" ")
        entry[key] = value
    return found


def branch_tips(repo: Path, prefix: str) -> dict[str, str | None]:
    """Every branch under ``prefix`` (``clusters/<plan>/``) and the commit it names (as
    ``resolve_ref``), in one call; None for a branch that names no commit. A branch pointing at
    anything but a commit (a tag object an agent wrote into a loose ref) is asked again alone."""
    text = out(repo, "for-each-ref", "--format=%(objectname) %(objecttype) %(refname)",
               f"refs/heads/{prefix.rstrip('/')}/")
    tips: dict[str, str | None] = {}
    for line in text.splitlines():
        sha, kind, ref = line.split(" ", 2)
        tips[ref.removeprefix("refs/heads/")] = sha if kind == "commit" else resolve_ref(repo, ref)
    return tips


@dataclass
class WorktreeInfo:
    path: Path
    branch: str
    start_sha: str
    created: bool
    sparse_dirs: list[str] = field(default_factory=list)
    new_branch: bool = False  # the branch was made here, at ``start``: it holds no commits of its own


def ensure_worktree(repo: Path, path: Path, branch: str, start: str,
                    sparse_dirs: Sequence[str] | None = None, *,
                    listed: Sequence[Worktree] | None = None,
                    known: BranchState | None = None, checkout: bool = True) -> WorktreeInfo:
    """A worktree at ``path`` on ``branch`` (created from ``start`` if the branch is new).

    An existing worktree of that branch at that path is reused, so a second run resumes. With
    ``sparse_dirs`` the checkout holds only those folders plus top-level files, with a sparse
    index (the index lists the folders left out, not their files: ``add``, ``commit`` and
    ``status`` cost the cone, not the repo); the final ``checkout`` fills the index, without which
    `git status` shows every other file deleted.

    Safe to call from several threads for different paths: only registering the worktree
    (``worktree add --no-checkout``, and ``sparse-checkout set``, which may write the shared
    config) holds the repository's worktree lock; the checkout, which writes this worktree's own
    files and index, runs outside it, so checkouts of several worktrees proceed together.
    ``listed`` (``worktrees(repo)``) and ``known`` (what the caller knows of the branch:
    ``absent``, ``made`` at ``start`` just now by ``make_branches``, or ``present``) spare the git
    calls that find them when the caller already knows, as when preparing many worktrees at once.
    ``checkout=False`` leaves a new worktree's index and files empty, for a caller that fills them
    later (``merge.catch_up``) once it knows which commit they should hold.
    """
    path = path.resolve()
    with worktree_lock(repo):
        for wt in worktrees(repo) if listed is None else listed:
            if wt.path.resolve() == path:
                if wt.branch != branch:
                    raise GitError(["worktree", "add", str(path)], 1,
                                   f"{path} is already a worktree of branch {wt.branch}")
                return WorktreeInfo(path, branch, wt.head, created=False, sparse_dirs=list(sparse_dirs or []))
        if path.exists() and any(path.iterdir()):
            raise GitError(["worktree", "add", str(path)], 1,
                           f"{path} exists and is not empty; remove it or choose another --workspace")
        path.parent.mkdir(parents=True, exist_ok=True)
        state = known or ("present" if branch_exists(repo, branch) else "absent")
        if state == "absent":
            run(repo, "worktree", "add", "--no-checkout", "-b", branch, str(path), start)
        else:
            run(repo, "worktree", "add", "--no-checkout", str(path), branch)
        remember_common_dir(path, common_dir(repo))
        # The first sparse worktree turns extensions.worktreeConfig on in the shared config; after
        # that, setting the cone writes this worktree's own files only, and needs no lock.
        sparse_later = sparse_dirs is not None and _worktree_config_on(repo)
        if sparse_dirs is not None and not sparse_later:
            _sparse_set(path, sparse_dirs)
    if sparse_later and sparse_dirs is not None:
        _sparse_set(path, sparse_dirs)
    if checkout:
        run(path, *PARALLEL_CHECKOUT, "checkout", "-q")
    # A branch made here sits at ``start``: when that is an object name already, no git is asked.
    new = state != "present"  # made here, at ``start``: no commit of its own yet
    head = start if new and is_object_name(start) else out(path, "rev-parse", "HEAD")
    return WorktreeInfo(path, branch, head, created=True, sparse_dirs=list(sparse_dirs or []), new_branch=new)


def make_branches(repo: Path, branches: Sequence[str], start: str, reason: str) -> frozenset[str]:
    """Make ``branches``, none of which exists, at ``start``, in one git call and all or none (an
    ``update-ref --stdin`` transaction; ``worktree add -b`` starts a ``git branch`` for each one, 7 ms
    apiece, under the worktree lock). The names made; none when git refused any (a name taken
    meanwhile, or one git does not allow): the caller then makes them one by one and meets the error
    where it belongs."""
    if not branches:
        return frozenset()
    lines = "".join(f"create refs/heads/{branch} {start}\n" for branch in branches)
    made = run(repo, "update-ref", "-m", reason, "--stdin", stdin=lines, check=False).status == 0
    return frozenset(branches) if made else frozenset()


_worktree_config_seen: set[Path] = set()


def _worktree_config_on(repo: Path) -> bool:
    """Whether the repository's own config has ``extensions.worktreeConfig`` on (kept once seen)."""
    common = common_dir(repo)
    if common not in _worktree_config_seen:
        found = run(repo, "config", "--file", str(common / "config"), "--type=bool", "--get",
                    "extensions.worktreeConfig", check=False).stdout.strip()
        if found != "true":
            return False
        _worktree_config_seen.add(common)
    return True


def _sparse_set(path: Path, dirs: Sequence[str]) -> None:
    run(path, "sparse-checkout", "set", "--cone", "--sparse-index", "--", *dirs)


def remove_worktree(repo: Path, path: Path, force: bool = False) -> None:
    with worktree_lock(repo):
        run(repo, "worktree", "remove", *(["--force"] if force else []), str(path))


def remove_worktrees(repo: Path, paths: Sequence[Path]) -> None:
    """Remove worktrees of ``repo`` and whatever they hold (``git worktree remove --force`` each,
    in effect). Each ``git worktree remove`` reads every worktree of the repository, so 100 of
    them cost 14 s one after another; here their folders are deleted side by side, never
    following a symlink, and one ``git worktree prune`` drops their registrations. Only folders
    git lists as linked worktrees of ``repo`` are deleted; one that cannot be is left to git,
    whose refusal is the error."""
    begin_removal(repo, paths).finish()


# Processes deleting a removal's folders side by side (git and the disk wait on each other), and
# how far below the run's own work they run when it goes on meanwhile.
REMOVERS = 4
REMOVAL_NICE = 10
RM = shutil.which("rm")  # without it (a bare container), finish deletes the folders itself


@dataclass
class Removal:
    """Worktree folders being deleted by ``rm`` processes (``begin_removal``), which hold no lock
    of this process (a thread deleting them slowed the run's own Python beside it by half);
    ``finish`` waits for them, then drops their registrations. ``begun``: the removers' start,
    after a last look at the folders, in a thread of its own; the look's notes."""

    repo: Path
    paths: list[Path]
    removers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    begun: Future[list[str]] | None = None

    def start(self, background: bool) -> None:
        lower = [NICE, "-n", str(REMOVAL_NICE)] if background and NICE else []
        self.removers = [subprocess.Popen([*lower, RM, "-rf", "--", *map(str, self.paths[n::REMOVERS])],  # noqa: S603
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
                         for n in range(min(REMOVERS, len(self.paths)))] if RM else []

    def finish(self) -> list[str]:
        """Wait for the folders; one written into while it went (by a process the run does not
        control) is deleted again and named in what this returns; then the registrations go."""
        notes = self.begun.result() if self.begun is not None else []  # its error, if any, is the run's
        for remover in self.removers:
            remover.wait()
        failed: list[Path] = []
        for path in self.paths:
            if not os.path.lexists(path):
                continue
            if _delete_tree(path):
                if self.removers:  # it was there after they ended: written into meanwhile
                    notes.append(f"files appeared in {path} while the run removed it (written by a process the "
                                 "run does not control?); deleted them too")
                continue
            failed.append(path)
        with worktree_lock(self.repo):
            for path in failed:  # git's refusal is the error
                run(self.repo, "worktree", "remove", "--force", str(path))
            run(self.repo, "worktree", "prune")
        return notes


def begin_removal(repo: Path, paths: Sequence[Path], background: bool = False,
                  first: Callable[[], list[str]] | None = None) -> Removal:
    """Begin deleting the folders of those of ``paths`` git lists as linked worktrees of ``repo``
    (``rm -rf`` never follows a symlink, in them or in their place); their registrations stay
    until ``Removal.finish``, so the shared git dir does not change before then. ``background``:
    at a lower CPU priority, for while the run goes on (its integration). ``first``: a last look
    at them, taken before they go, beside the caller (which goes on meanwhile); its notes lead
    those ``finish`` returns."""
    listed = {w.path.resolve() for w in worktrees(repo)[1:]}  # the first is the main worktree
    removal = Removal(repo, [p for p in paths if p.resolve() in listed and not p.is_symlink()])
    if first is None:
        removal.start(background)
        return removal

    def look_then_start() -> list[str]:
        notes = first()
        removal.start(background)
        return notes
    removal.begun = in_background("wc-removal", look_then_start)
    return removal


def _delete_tree(path: Path) -> bool:
    try:
        shutil.rmtree(path)  # symlinks inside are unlinked, not followed
    except OSError:
        return False
    return True


def prune_worktrees(repo: Path) -> None:
    with worktree_lock(repo):
        run(repo, "worktree", "prune")


