"""Linux's inotify through ``ctypes`` on libc: one non-blocking event queue, its watches, its events.

``AVAILABLE`` is False where libc has no inotify (not Linux). Errors that mean "nothing there"
(ENOENT, and ENOTDIR for a folder's watch) are None; ENOSPC (the user's watch budget, shared by
all their processes) is ``Full``; anything else (EACCES: an unreadable file) is ``Refused``.

This module imports nothing of ours.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Iterator

MODIFY, ATTRIB, CLOSE_WRITE, MOVED_FROM, MOVED_TO = 0x2, 0x4, 0x8, 0x40, 0x80
CREATE, DELETE, DELETE_SELF, MOVE_SELF = 0x100, 0x200, 0x400, 0x800
UNMOUNT, OVERFLOW, IGNORED, ONLYDIR, DONT_FOLLOW = 0x2000, 0x4000, 0x8000, 0x01000000, 0x02000000
SELF = DELETE_SELF | MOVE_SELF | UNMOUNT | IGNORED  # the watched inode itself went
FILE_MASK = MODIFY | ATTRIB | CLOSE_WRITE | DELETE_SELF | MOVE_SELF | DONT_FOLLOW
DIR_MASK = FILE_MASK | MOVED_FROM | MOVED_TO | CREATE | DELETE | ONLYDIR
_EVENT = struct.Struct("iIII")


class Full(Exception):
    """The kernel refused a watch for want of room (``max_user_watches``)."""


class Refused(Exception):
    """The kernel refused a watch for another reason (EACCES)."""


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _libc()
AVAILABLE = _LIBC is not None


class Queue:
    """One inotify instance: watches are added and removed, events read without blocking."""

    def __init__(self) -> None:
        assert _LIBC is not None
        self.fd = int(_LIBC.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC))
        if self.fd < 0:  # EMFILE: the user's instances (128 here) are spent
            raise Full()

    def add(self, path: str, mask: int) -> int | None:
        """The watch descriptor (the same for every path of one inode); None: nothing there."""
        assert _LIBC is not None
        wd = int(_LIBC.inotify_add_watch(self.fd, os.fsencode(path), mask))
        if wd >= 0:
            return wd
        err = ctypes.get_errno()
        if err in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise Full() if err == errno.ENOSPC else Refused()

    def remove(self, wd: int) -> None:
        assert _LIBC is not None
        _LIBC.inotify_rm_watch(self.fd, wd)

    def events(self) -> Iterator[tuple[int, int, str]]:
        """Every queued event (watch, mask, name in a folder or ""), until the queue is empty."""
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            offset = 0
            while offset < len(data):
                wd, mask, _, size = _EVENT.unpack_from(data, offset)
                yield wd, mask, os.fsdecode(data[offset + 16:offset + 16 + size].rstrip(b"\0"))
                offset += 16 + size

    def close(self) -> None:
        os.close(self.fd)
