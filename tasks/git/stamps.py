"""Stat stamps: whether a file or folder may have changed since it was last read, without reading it.

The change time (ctime) is in every stamp: a write or ``utime`` always moves it, and no process
can set it back, so nothing can make a changed file look unchanged. The kernel's file clock
advances in ticks of a few ms, so a second write within the tick of a stamp leaves the stamp as it
was: a stamp younger than ``RACY_NS`` is never trusted to mean "unchanged" (git's "racily clean"
rule for its index).

This module imports nothing of ours.
"""

from __future__ import annotations

import os
import threading
import time

Stamp = tuple[int, int, int, int, int]
RACY_NS = 100_000_000
_dirs_seen: dict[str, tuple[Stamp, tuple[tuple[str, bool], ...]]] = {}
_dirs_lock = threading.Lock()


def stamp_of(st: os.stat_result) -> Stamp:
    return st.st_ctime_ns, st.st_mtime_ns, st.st_size, st.st_ino, st.st_mode


def racy(stamp: Stamp) -> bool:
    """Whether a stamp is too young to tell a second write within its tick from none."""
    return stamp[0] >= time.time_ns() - RACY_NS


def settled(st: os.stat_result) -> bool:
    """Whether a stamp may be kept as "unchanged while it stays the same"."""
    return not racy(stamp_of(st))


def listing(path: str, st: os.stat_result) -> tuple[tuple[str, bool], ...] | None:
    """A folder's entries (name, is a folder), listed again only when its stat changed: adding,
    removing or renaming an entry always moves the folder's ctime. One ``stat`` instead of a
    listing per folder is most of a comparison's cost with 100 worktrees' admin dirs."""
    stamp = stamp_of(st)
    with _dirs_lock:
        seen = _dirs_seen.get(path)
    if seen is not None and seen[0] == stamp:
        return seen[1]
    try:
        with os.scandir(path) as entries:
            found = tuple((e.name, e.is_dir(follow_symlinks=False)) for e in entries)
        if os.lstat(path).st_ctime_ns != st.st_ctime_ns or not settled(st):
            return found
    except OSError:
        return None
    with _dirs_lock:
        _dirs_seen[path] = (stamp, found)
    return found
