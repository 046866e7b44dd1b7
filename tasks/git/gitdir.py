"""A snapshot of what no agent may change in the shared git dir, a comparison, and a restore.

Watched (``snapshot``): the shared ``config`` and ``config.worktree``; every file under ``hooks/``
and ``info/`` (attributes, exclude, sparse-checkout); ``objects/info/alternates`` and ``shallow``
(both change which history git sees); every ref (``refs/replace/`` included); and the admin dirs
``worktrees/<name>/`` of the worktrees the caller names (HEAD, their own ``config.worktree`` and
``info/sparse-checkout``, ORIG_HEAD, MERGE_HEAD...). Not watched in an admin dir: ``index``,
``logs/`` and ``COMMIT_EDITMSG``, which git itself rewrites on every status and commit (the last
is only ever written: every commit of ours passes its message); an index changed behind a
cluster's back is found by that cluster's own worktree check instead (``tasks.agents.containment``).
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import refs as gitrefs
from prefect_work_clusters.tasks.git.stamps import Stamp, listing, settled, stamp_of

FILES = ("config", "config.worktree", "objects/info/alternates", "objects/info/http-alternates", "shallow")
FOLDERS = ("hooks", "info")
ADMIN_SKIP = ("index", "logs", "COMMIT_EDITMSG")
# A file's content, or a symlink's target as text; with its permission bits (a hook must be executable).
Content = tuple[int, bytes | str]


@dataclass
class GitDirState:
    files: dict[str, Content] = field(default_factory=dict)  # path relative to the shared git dir
    refs: dict[str, str] = field(default_factory=dict)  # full ref name -> object name


@dataclass
class Change:
    """One difference from the snapshot: a file or a ref, what it was (None: absent) and is."""

    kind: str  # "file" or "ref"
    name: str
    before: Content | str | None
    after: Content | str | None

    def describe(self) -> str:
        what = "added" if self.before is None else "deleted" if self.after is None else "changed"
        if self.kind == "ref":
            moved = f" ({str(self.before)[:12]} -> {str(self.after)[:12]})" if what == "changed" else ""
            return f"ref {self.name} {what}{moved}"
        return f".git/{self.name} {what}"


_files_seen: dict[str, tuple[Stamp, Content]] = {}
_files_lock = threading.Lock()


def _read(path: str, st: os.stat_result | None = None) -> Content | None:
    """A file's content; read again only when its stat changed since the last snapshot."""
    try:
        st = st or os.lstat(path)
        with _files_lock:
            seen = _files_seen.get(path)
        if seen is not None and seen[0] == stamp_of(st):
            return seen[1]
        if stat.S_ISLNK(st.st_mode):
            content: Content = (0o777, os.readlink(path))
        else:
            with open(path, "rb") as fh:
                content = (stat.S_IMODE(st.st_mode), fh.read())
        if os.lstat(path).st_ctime_ns != st.st_ctime_ns or not settled(st):  # changing now: not kept
            return content
    except OSError:
        return None
    with _files_lock:
        _files_seen[path] = (stamp_of(st), content)
    return content


def _scan(common: str, rel: str, skip: Iterable[str] = ()) -> Iterator[tuple[str, Content]]:
    """Every file under ``common/rel`` and its content; a symlinked folder counts as a file (its
    target), never followed. One ``lstat`` a file and a folder when nothing changed."""
    top = f"{common}{os.sep}{rel}"
    try:
        st = os.lstat(top)
    except OSError:
        return
    if not stat.S_ISDIR(st.st_mode):
        # ``hooks`` made a symlink (or a file): recorded as itself. Following it would list, and a
        # restore would then delete, files of the folder outside .git it points to.
        content = _read(top, st)
        if content is not None:
            yield rel, content
        return
    for name, is_dir in listing(top, st) or ():
        if name in skip:
            continue
        child = f"{rel}{os.sep}{name}"
        if is_dir:
            yield from _scan(common, child)
        elif (content := _read(f"{top}{os.sep}{name}")) is not None:
            yield child, content


def snapshot(repo: Path, admin: Iterable[str] = ()) -> GitDirState:
    """The watched state now; ``admin`` names the ``worktrees/<name>`` admin dirs to include."""
    common = str(gitops.common_dir(repo))
    files = {rel: content for rel in FILES if (content := _read(os.path.join(common, rel))) is not None}
    for folder in FOLDERS:
        files.update(_scan(common, folder))
    for name in admin:
        files.update(_scan(common, os.path.join("worktrees", name), ADMIN_SKIP))
    return GitDirState(files=files, refs=gitrefs.read(repo))


def admin_files(repo: Path, names: Iterable[str]) -> dict[str, Content]:
    """The watched files of the admin dirs ``names`` alone (a worktree's own, after our commit)."""
    common = str(gitops.common_dir(repo))
    return {rel: c for name in names for rel, c in _scan(common, os.path.join("worktrees", name), ADMIN_SKIP)}


def compare(before: GitDirState, after: GitDirState, admin: Iterable[str] = ()) -> list[Change]:
    """Every difference; files under ``worktrees/`` count only for the ``admin`` dirs named."""
    watched = tuple(os.path.join("worktrees", name) + os.sep for name in admin)

    def counts(rel: str) -> bool:
        return not rel.startswith("worktrees" + os.sep) or rel.startswith(watched)

    changes = [] if before.files == after.files else [  # equal, the common case: one comparison in C
        Change("file", rel, before.files.get(rel), after.files.get(rel))
        for rel in sorted(set(before.files) | set(after.files))
        if counts(rel) and before.files.get(rel) != after.files.get(rel)]
    changes += [] if before.refs == after.refs else [
        Change("ref", name, before.refs.get(name), after.refs.get(name))
        for name in sorted(set(before.refs) | set(after.refs)) if before.refs.get(name) != after.refs.get(name)]
    return changes


def undone(state: GitDirState, changes: Iterable[Change]) -> GitDirState:
    """``state`` as ``restore`` leaves it: each change set back to what it was. Trusted after a
    restore instead of a new snapshot, which would adopt what an agent still running wrote
    between the restore and the snapshot (seen: half of eight planted hooks kept)."""
    files, found = dict(state.files), dict(state.refs)
    for change in changes:
        if change.kind == "file":
            files.pop(change.name, None)
            if isinstance(change.before, tuple):
                files[change.name] = change.before
        else:
            found.pop(change.name, None)
            if isinstance(change.before, str):
                found[change.name] = change.before
    return GitDirState(files=files, refs=found)


def _write(path: str, content: Content) -> None:
    mode, data = content
    if os.path.lexists(path) and (os.path.islink(path) or not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):  # an agent replaced the file by a folder
        shutil.rmtree(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        os.symlink(data, path)
        return
    tmp = f"{path}.wc-restore"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def restore(repo: Path, changes: Iterable[Change]) -> None:
    """Undo ``changes``: files written back or removed, refs set back or deleted. Our git runs
    with hooks off, so restoring a ref runs nothing an agent planted."""
    common = str(gitops.common_dir(repo))
    # Added entries first: a folder an agent replaced by a symlink is unlinked before anything is
    # written back under its name, so nothing is ever written through it.
    for change in sorted(changes, key=lambda c: c.before is not None):
        if change.kind == "file":
            path = os.path.join(common, change.name)
            if change.before is None:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.lexists(path):
                    os.unlink(path)
            else:
                assert isinstance(change.before, tuple)
                _write(path, change.before)
        elif change.before is None:
            gitops.run(repo, "update-ref", "--no-deref", "-d", change.name, check=False)
        else:
            gitops.run(repo, "update-ref", "--no-deref", "-m", "work-clusters: restore a ref an agent changed",
                       change.name, str(change.before), check=False)
