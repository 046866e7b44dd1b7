"""What git keeps in files, read without git and without ever waiting: a worktree's ``.git`` link,
a ref's or HEAD's object name, a hook. An agent can put a FIFO in any of those places, and opening
a FIFO to read waits for a writer; git itself hangs on one (``for-each-ref`` over a FIFO ref, any
command in a worktree whose ``.git`` is one).

This module imports nothing of ours.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

OBJECT_NAME = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256, as git prints it
# The index a worktree's files are written whole into, in its admin dir, and moved over its
# ``index`` once whole: a fill runs beside the agents, and the containment guard, which compares the
# admin dirs while they work, would see git's ``index.lock`` come and go.
WHOLE_INDEX = "work-clusters-index"


def is_object_name(text: str) -> bool:
    return OBJECT_NAME.fullmatch(text) is not None


def read_nowait(path: str, limit: int = -1, *, follow: bool = True) -> tuple[os.stat_result, bytes | None]:
    """A file's stat and up to ``limit`` bytes, None for the bytes when it is not a regular file.
    Never waits: an agent can put a FIFO where git keeps a file (``.git``, ``HEAD``, a hook, a ref),
    and opening a FIFO to read waits for a writer. Opened without blocking and judged on the open
    file itself, so one swapped in after a caller's ``lstat`` is caught too; ``follow=False``
    refuses a symlink (OSError). Raises OSError when the file cannot be opened."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (0 if follow else os.O_NOFOLLOW)
    with os.fdopen(os.open(path, flags), "rb") as fh:
        st = os.fstat(fh.fileno())
        return st, (fh.read(limit) if stat.S_ISREG(st.st_mode) else None)


def odd_git_link(cwd: Path | str) -> bool:
    """Whether ``cwd/.git`` (followed, as git follows it) is neither a folder nor a file: an
    agent's FIFO, say."""
    try:
        mode = os.stat(os.path.join(cwd, ".git")).st_mode
    except OSError:
        return False
    return not (stat.S_ISDIR(mode) or stat.S_ISREG(mode))


def git_link(path: str) -> str | None:
    """What ``<path>/.git`` names: itself when it is a folder, the target of a ``gitdir:`` file
    (a linked worktree), or None (a subfolder, or no repository)."""
    dotgit = os.path.join(path, ".git")
    if os.path.isdir(dotgit):
        return dotgit
    try:
        data = read_nowait(dotgit, 4096)[1]
    except OSError:
        return None
    text = (data or b"").decode("utf-8", errors="surrogateescape")
    return text.removeprefix("gitdir:").strip() if text.startswith("gitdir:") else None
