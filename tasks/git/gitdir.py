"""A snapshot of what no agent may change in the shared git dir, a comparison, and a restore.

Watched (``snapshot``): the shared ``config`` and ``config.worktree``; every file under ``hooks/``
and ``info/`` (attributes, exclude, sparse-checkout); ``objects/info/alternates`` and ``shallow``
(both change which history git sees); every ref (``refs/replace/`` included); and the admin dirs
``worktrees/<name>/`` of the worktrees the caller names (HEAD, their own ``config.worktree`` and
``info/sparse-checkout``, ORIG_HEAD, MERGE_HEAD...). Not watched in an admin dir: ``index``,
``logs/`` and ``COMMIT_EDITMSG``, which git itself rewrites on every status and commit (the last
is only ever written: every commit of ours passes its message), and the index a whole write of
the files goes into before it becomes ``index`` (``files.WHOLE_INDEX``); an index changed behind a
cluster's back is found by that cluster's own worktree check instead (``tasks.agents.containment``).

A snapshot costs what changed since the last one: ``tasks.git.events`` says which watched files
the kernel saw written (inotify), only those are read again, and a root with none is taken
whole from the last snapshot; without inotify each file's stat stamp says it.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import events
from prefect_work_clusters.tasks.git import files as gitfiles
from prefect_work_clusters.tasks.git import refs as gitrefs
from prefect_work_clusters.tasks.git.stamps import Stamp, settled, stamp_of

FILES = ("config", "config.worktree", "objects/info/alternates", "objects/info/http-alternates", "shallow")
FOLDERS = ("hooks", "info")
ADMIN_SKIP = ("index", "logs", "COMMIT_EDITMSG", gitfiles.WHOLE_INDEX, gitfiles.WHOLE_INDEX + ".lock")
# A file's content, or a symlink's target as text; with its permission bits (a hook must be executable).
Content = tuple[int, bytes | str]


@dataclass
class GitDirState:
    files: dict[str, Content] = field(default_factory=dict)  # path relative to the shared git dir
    refs: dict[str, str] = field(default_factory=dict)  # full ref name -> object name
    admin: set[str] | None = field(default=None, compare=False, repr=False)  # ``admin_names``, once known

    def admin_names(self) -> set[str]:
        """The ``worktrees/<name>`` admin dirs that have a watched file here."""
        if self.admin is None:
            prefix = "worktrees" + os.sep
            self.admin = {rel[len(prefix):].partition(os.sep)[0] for rel in self.files if rel.startswith(prefix)}
        return self.admin


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


def _regular(path: str) -> Content:
    """A file's permission bits and bytes. A FIFO, socket or device (an agent can plant one in
    ``hooks/``) is never read (``files.read_nowait``): it is recorded as its whole mode, which no
    regular file's bits equal, and no content."""
    st, data = gitfiles.read_nowait(path, follow=False)
    return (stat.S_IMODE(st.st_mode), data) if data is not None else (st.st_mode, b"")


def _read(path: str, st: os.stat_result | None = None) -> Content | None:
    """A file's content; read again only when its stat changed since the last snapshot."""
    try:
        st = st or os.lstat(path)
        with _files_lock:
            seen = _files_seen.get(path)
        if seen is not None and seen[0] == stamp_of(st):
            return seen[1]
        content: Content = (0o777, os.readlink(path)) if stat.S_ISLNK(st.st_mode) else _regular(path)
        if os.lstat(path).st_ctime_ns != st.st_ctime_ns or not settled(st):  # changing now: not kept
            return content
    except OSError:
        return None
    with _files_lock:
        _files_seen[path] = (stamp_of(st), content)
    return content


FILE_ROOTS = tuple(events.Root(rel, deep=False) for rel in FILES)
FOLDER_ROOTS = tuple(events.Root(rel) for rel in FOLDERS)
_contents_seen: dict[tuple[str, str], tuple[int, dict[str, Content]]] = {}


@functools.lru_cache(maxsize=4096)
def _admin_root(name: str) -> events.Root:
    return events.Root(f"worktrees/{name}", skip=frozenset(ADMIN_SKIP))


def _files(common: str, roots: list[events.Root], present: set[str] | None = None) -> dict[str, Content]:
    """Every watched file's content under ``roots``: a root the kernel saw unchanged since the
    last call costs nothing, a changed one reads again only files whose stamp moved. A symlinked
    folder counts as a file (its target), never followed: following it would list, and a
    restore would then delete, files of the folder outside .git it points to. ``present``
    collects the roots that hold a file."""
    files: dict[str, Content] = {}
    for root, tree in zip(roots, events.trees(common, roots), strict=True):
        key = (common, root.rel)
        seen = _contents_seen.get(key)
        if tree.version is not None and seen is not None and seen[0] == tree.version:
            found = seen[1]
        else:
            found = {rel: c for rel, (st, _) in tree.files.items() if (c := _read(f"{common}/{rel}", st)) is not None}
            if tree.version is not None:
                _contents_seen[key] = (tree.version, found)
        files.update(found)
        if found and present is not None:
            present.add(root.rel)
    return files


def snapshot(repo: Path, admin: Iterable[str] = ()) -> GitDirState:
    """The watched state now; ``admin`` names the ``worktrees/<name>`` admin dirs to include."""
    common = str(gitops.common_dir(repo))
    present: set[str] = set()
    files = _files(common, [*FILE_ROOTS, *FOLDER_ROOTS, *map(_admin_root, admin)], present)
    names = {rel.partition("/")[2] for rel in present if rel.startswith("worktrees/")}
    return GitDirState(files=files, refs=gitrefs.read(repo), admin=names)


def admin_files(repo: Path, names: Iterable[str]) -> dict[str, Content]:
    """The watched files of the admin dirs ``names`` alone (a worktree's own, after our commit)."""
    return _files(str(gitops.common_dir(repo)), list(map(_admin_root, names)))


def compare(before: GitDirState, after: GitDirState, admin: Iterable[str] = ()) -> list[Change]:
    """Every difference; files under ``worktrees/`` count only for the ``admin`` dirs named."""
    watched = tuple(f"worktrees{os.sep}{name}{os.sep}" for name in admin)

    def counts(rel: str) -> bool:
        return not rel.startswith("worktrees" + os.sep) or rel.startswith(watched)

    # Equal, the common case: one comparison in C. Otherwise only what differs is sorted (the
    # other worktrees' admin files change all the time while agents commit).
    changes = [] if before.files == after.files else [
        Change("file", rel, before.files.get(rel), after.files.get(rel))
        for rel in sorted(rel for rel in before.files.keys() | after.files.keys()
                          if before.files.get(rel) != after.files.get(rel)) if counts(rel)]
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
