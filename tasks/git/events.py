"""The files under a git dir's watched folders, each with its ``lstat``, kept current by the kernel.

``trees(base, roots)`` answers what a walk answers (every file under each root folder, or the
root file alone), but on Linux a ``_Mirror`` per base and process keeps an inotify watch on each
of those folders and files and reads again only what an event names: a comparison costs what
changed since the last one, not what exists. A folder's watch reports its entries (made,
removed, renamed, written, chmod); a file's own watch reports writes through a hard link made
elsewhere, which its folder never hears of.

Exact by order: the queue is drained first, then what it names is watched and only then read,
so any change after a read leaves an event for the next call (a change during it, one more
read). Anything unusual (the queue overflowed, a watched folder removed or moved, a symlink
where a folder was on the way to a root, a watch refused) makes a fresh watch set and a full
read; with no inotify (not Linux, too many watches, ``WORK_CLUSTERS_NO_INOTIFY`` set) every call
walks, with the stat stamps of ``tasks.git.stamps``. Not seen by either: a write through a
shared ``mmap``, which raises no event (and changes a stamp only on a page's first write).

This module imports nothing of ours but ``stamps`` and ``inotify``.
"""

from __future__ import annotations

import atexit
import itertools
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prefect_work_clusters.tasks.git import inotify, stamps

OFF_ENV = "WORK_CLUSTERS_NO_INOTIFY"
MAX_MIRRORS = 8  # per process; the user's inotify instances are few (128 here) and shared
MAX_WATCHES = 20_000  # past that a walk is cheaper than the user's shared watch budget

Entry = tuple[os.stat_result, int]  # a file's lstat and its mark: a new one each time it is read
_marks = itertools.count(1)


@dataclass(frozen=True)
class Root:
    """What to list under the base: ``rel`` (``/``-separated) and, when ``deep``, every file
    under it (a symlinked folder counts as a file, never followed; ``skip`` names left out right
    under it); not ``deep``: the path alone, whatever it is."""

    rel: str
    deep: bool = True
    skip: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Tree:
    """A root's files. Equal versions (never None) mean the same files, unchanged since."""

    version: int | None
    files: Mapping[str, Entry]


def walk(base: str, root: Root) -> dict[str, Entry]:
    """A root's files now, read without events: one ``lstat`` a file, folders listed again only
    when their stamp moved."""
    found: dict[str, Entry] = {}

    def visit(rel: str, st: os.stat_result, top: bool) -> None:
        if not (root.deep and stat.S_ISDIR(st.st_mode)):
            found[rel] = (st, 0)
            return
        for name, _ in stamps.listing(f"{base}/{rel}", st) or ():
            if not (top and name in root.skip):
                try:
                    visit(f"{rel}/{name}", os.lstat(f"{base}/{rel}/{name}"), False)
                except OSError:
                    continue

    try:
        visit(root.rel, os.lstat(f"{base}/{root.rel}"), True)
    except OSError:
        pass
    return found


class _Unusual(Exception):
    """Events cannot tell what changed: a fresh watch set and a full read."""


class _Mirror:
    """One base's watches and what they keep; every method but ``look`` and ``close`` runs
    holding ``lock``."""

    def __init__(self, base: str) -> None:
        self.base, self.lock, self.fresh, self.closed, self.builds = base, threading.Lock(), True, False, 0
        self.queue: inotify.Queue | None = None
        self.roots: dict[str, Root] = {}
        self.ancestors: set[str] = set()  # folders on the way to a root, the base ("") first
        self.wds: dict[int, set[str]] = {}  # a watch and the paths it stands for (hard links: several)
        self.wd_of: dict[str, int] = {}
        self.dirs: dict[str, int] = {}  # watched folders and their inodes
        self.trees: dict[str, Tree] = {}
        self.unbuilt: set[str] = set()  # roots asked for since the last refresh

    def look(self, roots: Sequence[Root]) -> list[Tree] | None:
        with self.lock:
            if self.closed:
                return None
            for root in roots:
                if self.roots.get(root.rel) is not root:  # new (or an equal copy): kept once
                    if self.roots.setdefault(root.rel, root) != root:
                        raise ValueError(f"{root.rel} is watched as {self.roots[root.rel]}, not {root}")
                    self.ancestors.update("/".join(root.rel.split("/")[:i]) for i in range(root.rel.count("/") + 1))
                    self.unbuilt.add(root.rel)
            try:
                try:
                    self._refresh()
                except _Unusual:
                    self.fresh = True
                    self._refresh()
            except _Unusual:
                self.fresh = True  # still unusual (a symlinked folder on the way): walked, tried again next time
                return None
            except inotify.Full:
                self._close()
                return None
            return [self.trees[root.rel] for root in roots]

    def close(self) -> None:
        with self.lock:
            self._close()

    def _close(self) -> None:
        if self.queue is not None:
            self.queue.close()
        self.queue, self.closed = None, True

    def _refresh(self) -> None:
        dirty = set() if self.fresh else self._drain()
        if self.fresh:
            if self.queue is not None:
                self.queue.close()
                self.queue = None
            self.queue = inotify.Queue()
            self.wds, self.wd_of, self.dirs, self.trees, self.fresh = {}, {}, {}, {}, False
            self.builds += 1
            if not self._watch_dir(""):
                raise _Unusual()
        for rel in sorted(dirty, key=lambda r: r.count("/")):  # a folder before what is in it
            self._changed(rel)
        for rel in self.unbuilt if self.trees else self.roots:
            if rel not in self.trees:
                self._build(self.roots[rel])
        self.unbuilt.clear()
        if len(self.wds) > MAX_WATCHES:
            raise inotify.Full()

    def _drain(self) -> set[str]:
        """The paths the queued events name; a folder's own removal or move is unusual."""
        dirty: set[str] = set()
        assert self.queue is not None
        for wd, mask, name in self.queue.events():
            if mask & inotify.OVERFLOW:
                raise _Unusual()
            for rel in list(self.wds.get(wd, ())):
                if rel not in self.dirs:  # a file's own watch
                    dirty.add(rel)
                elif mask & inotify.SELF:
                    raise _Unusual()
                elif name:
                    dirty.add(f"{rel}/{name}" if rel else name)
            if mask & inotify.IGNORED and wd in self.wds:  # a file's inode is gone, and its watch
                for rel in self.wds.pop(wd):
                    self.wd_of.pop(rel, None)
        return dirty

    def _changed(self, rel: str) -> None:
        if rel in self.dirs:  # chmod of a folder, or a folder replaced (its own watch says so too)
            try:
                st = os.lstat(f"{self.base}/{rel}")
            except OSError:
                raise _Unusual() from None
            if not stat.S_ISDIR(st.st_mode) or st.st_ino != self.dirs[rel]:
                raise _Unusual()
            return
        if rel in self.roots:
            self._build(self.roots[rel])
        elif rel in self.ancestors:  # a folder on the way to roots appeared
            for below in self.roots.values():
                if below.rel.startswith(f"{rel}/"):
                    self._build(below)
        elif (holder := self._holder(rel)) is not None and holder.rel in self.trees:
            files = dict(self.trees[holder.rel].files)
            had = files.pop(rel, None) is not None
            kept = len(files)
            self._visit(holder, rel, files, None)
            if had or len(files) > kept:  # a lock file come and gone changes nothing
                self.trees[holder.rel] = Tree(next(_marks), files)

    def _holder(self, rel: str) -> Root | None:
        """The deep root ``rel`` lies under, unless ``rel`` is one of the names it skips."""
        parts = rel.split("/")
        for i in range(1, len(parts)):
            root = self.roots.get("/".join(parts[:i]))
            if root is not None and root.deep:
                return None if i == len(parts) - 1 and parts[i] in root.skip else root
        return None

    def _build(self, root: Root) -> None:
        """A root read afresh: the folders on its way watched (a missing one: it is empty)."""
        for old in self.trees.pop(root.rel, Tree(None, {})).files:
            self._unmap(old)
        parts = root.rel.split("/")
        files: dict[str, Entry] = {}
        for i in range(1, len(parts)):
            if not self._watch_dir("/".join(parts[:i])):
                break
        else:
            self._visit(root, root.rel, files, None if root.deep else False)
        self.trees[root.rel] = Tree(next(_marks), files)

    def _watch_dir(self, rel: str) -> bool:
        """Watch a folder on the way to a root: False when it is missing, unusual when it is not a
        folder (a symlink followed there would show files outside the base)."""
        if rel in self.dirs:
            return True
        wd = self._add(rel, inotify.DIR_MASK if rel else inotify.DIR_MASK & ~inotify.DONT_FOLLOW)
        if wd is None:
            if os.path.lexists(f"{self.base}/{rel}"):
                raise _Unusual()
            return False
        try:
            st = os.lstat(f"{self.base}/{rel}")
        except OSError:
            raise _Unusual() from None
        self._map(wd, rel)
        self.dirs[rel] = st.st_ino
        return True

    def _visit(self, root: Root, rel: str, files: dict[str, Entry], is_dir: bool | None) -> None:
        """Watch ``rel``, then read it: a folder's entries, a file's ``lstat``."""
        path = f"{self.base}/{rel}"
        if is_dir is not False and (wd := self._add(rel, inotify.DIR_MASK)) is not None:
            try:
                st = os.lstat(path)
                with os.scandir(path) as found:
                    entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in found]
            except OSError:
                raise _Unusual() from None  # replaced since it was watched: its watch says so
            self._map(wd, rel)
            self.dirs[rel] = st.st_ino
            for name, sub in entries:
                if not (rel == root.rel and name in root.skip):
                    self._visit(root, f"{rel}/{name}", files, sub)
            return
        wd = self._add(rel, inotify.FILE_MASK)
        if wd is None:
            self._unmap(rel)
            return
        self._map(wd, rel)
        try:
            files[rel] = (os.lstat(path), next(_marks))
        except OSError:
            return

    def _add(self, rel: str, mask: int) -> int | None:
        """A watch on ``rel``; None when it is gone or, for a folder's mask, not a folder."""
        assert self.queue is not None
        try:
            return self.queue.add(f"{self.base}/{rel}" if rel else self.base, mask)
        except inotify.Refused:  # an unreadable file: read in full until it is readable again
            raise _Unusual() from None

    def _map(self, wd: int, rel: str) -> None:
        if self.wd_of.get(rel) != wd:
            self._unmap(rel)
            self.wd_of[rel] = wd
            self.wds.setdefault(wd, set()).add(rel)

    def _unmap(self, rel: str) -> None:
        """``rel`` no longer names the inode its watch is on; the watch goes with its last path."""
        wd = self.wd_of.pop(rel, None)
        if wd is not None and wd in self.wds:
            self.wds[wd].discard(rel)
            if not self.wds[wd]:
                del self.wds[wd]
                assert self.queue is not None
                self.queue.remove(wd)


_MIRRORS: OrderedDict[str, _Mirror] = OrderedDict()
_MIRRORS_LOCK = threading.Lock()


def trees(base: str, roots: Sequence[Root]) -> list[Tree]:
    """Each root's files with their ``lstat`` (``walk``), from the base's watches when it has them."""
    if inotify.AVAILABLE and not os.environ.get(OFF_ENV):
        with _MIRRORS_LOCK:
            mirror = _MIRRORS.get(base)
            if mirror is None:
                mirror = _MIRRORS[base] = _Mirror(base)
                while len(_MIRRORS) > MAX_MIRRORS:
                    _MIRRORS.popitem(last=False)[1].close()
            _MIRRORS.move_to_end(base)
        found = mirror.look(roots)
        if found is not None:
            return found
    return [Tree(None, walk(base, root)) for root in roots]


def close(base: str) -> None:
    """Drop the base's watches (the run's watch ended); the next ``trees`` call starts afresh."""
    with _MIRRORS_LOCK:
        mirror = _MIRRORS.pop(base, None)
    if mirror is not None:
        mirror.close()


def _close_all() -> None:
    for base in list(_MIRRORS):
        close(base)


def _forget_in_child() -> None:
    """A forked child shares the parent's inotify queues: reading one would take the parent's
    events. It drops them (its locks may be held by a parent's thread) and makes its own."""
    global _MIRRORS_LOCK
    for mirror in _MIRRORS.values():
        if mirror.queue is not None:
            mirror.queue.close()
    _MIRRORS.clear()
    _MIRRORS_LOCK = threading.Lock()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
