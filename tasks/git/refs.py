"""Every ref of a repository and its object, read as cheaply as what changed allows.

Asked of git (``for-each-ref``, ~5 ms) only when ``packed-refs`` changed, a ref was deleted (a
packed value may show through), or a name or a file is not a plain ref; a branch moved or made
(every commit of ours and of an agent) is read from its own loose file, and nothing changed costs
one ``stat`` a ref file and folder. The shared-git-dir guard reads the refs around every attempt.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import stamps


@dataclass
class _Refs:
    """What ``read`` last found: the ``packed-refs`` stamp, each loose ref file's stamp, the refs,
    and the symbolic refs' targets (``refs/remotes/origin/HEAD``: its object moves with them)."""

    packed: stamps.Stamp | None
    loose: dict[str, stamps.Stamp]
    found: dict[str, str]
    symbolic: dict[str, str]


_refs_seen: dict[str, _Refs] = {}
_refs_lock = threading.Lock()
_OBJECT_NAME = re.compile(rb"([0-9a-f]{40}|[0-9a-f]{64})\n?")
# Ref names read from loose files without git: a strict subset of what git accepts (anything
# else, and a symbolic ref, is left to ``for-each-ref``).
_PLAIN_REF = re.compile(r"refs/(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def _plain(name: str) -> bool:
    return bool(_PLAIN_REF.fullmatch(name)) and ".." not in name and not name.endswith(".") and not any(
        part.endswith(".lock") for part in name.split("/"))


def _loose(common: str) -> tuple[stamps.Stamp | None, dict[str, stamps.Stamp]] | None:
    """The ``packed-refs`` stamp and every loose ref file's stamp (git's lock files left out: git
    lists no ref for them). None for a reftable repository, or a racy ``packed-refs``."""
    if os.path.exists(os.path.join(common, "reftable")):
        return None
    try:
        st = os.stat(os.path.join(common, "packed-refs"))
        if not stamps.settled(st):
            return None
        packed: stamps.Stamp | None = stamps.stamp_of(st)
    except OSError:
        packed = None
    loose: dict[str, stamps.Stamp] = {}

    def walk(rel: str) -> None:
        try:
            st = os.lstat(os.path.join(common, rel))
        except OSError:
            return
        if stat.S_ISDIR(st.st_mode):
            for name, _ in stamps.listing(os.path.join(common, rel), st) or ():
                walk(f"{rel}/{name}")
        elif not rel.endswith(".lock"):
            loose[rel] = stamps.stamp_of(st)

    walk("refs")
    return packed, loose


def _updated(common: str, seen: _Refs, packed: stamps.Stamp | None,
             loose: dict[str, stamps.Stamp]) -> dict[str, str] | None:
    """The refs after only loose refs were written or added (as every commit and branch move of
    ours and of an agent does): those files read alone, and the racy ones again. None when git
    must list them: packed-refs changed, a loose ref was removed (a packed one may show through),
    a name or content is not a plain ref."""
    if packed != seen.packed or not set(seen.loose) <= set(loose):
        return None
    found = dict(seen.found)
    for name, stamp in loose.items():
        if seen.loose.get(name) == stamp and not stamps.racy(stamp):
            continue
        if not _plain(name):
            return None
        try:
            with open(os.path.join(common, name), "rb") as fh:
                data = fh.read(100)
        except OSError:
            return None
        if not _OBJECT_NAME.fullmatch(data):
            return None
        found[name] = data.decode().strip()
    for name, target in seen.symbolic.items():
        if target in seen.symbolic or target not in found:
            return None
        found[name] = found[target]
    return found


def read(repo: Path) -> dict[str, str]:
    """Every ref (``refs/...``) and the object it names, as ``git for-each-ref`` lists them."""
    common = str(gitops.common_dir(repo))
    found_stamps = _loose(common)
    with _refs_lock:
        seen = _refs_seen.get(common)
    # Each stamp is taken before its file is read (or git lists the refs): a file written in
    # between has another stamp on the next call, so it is read again then.
    if found_stamps is not None and seen is not None:
        found = _updated(common, seen, *found_stamps)
        if found is not None:
            with _refs_lock:
                _refs_seen[common] = _Refs(found_stamps[0], found_stamps[1], found, seen.symbolic)
            return dict(found)
    text = gitops.out(repo, "for-each-ref", "--format=%(objectname) %(refname) %(symref)")
    found, symbolic = {}, {}
    for line in text.splitlines():
        sha, _, rest = line.partition(" ")
        name, _, target = rest.partition(" ")
        found[name] = sha
        if target:
            symbolic[name] = target
    if found_stamps is not None:
        with _refs_lock:
            _refs_seen[common] = _Refs(found_stamps[0], found_stamps[1], found, symbolic)
    return dict(found)


def head(repo: Path, worktree: Path) -> str:
    """A worktree's HEAD as ``git rev-parse HEAD`` prints it: while its HEAD file names a branch,
    that branch's tip as ``read`` keeps it (no git process); git is asked otherwise."""
    ref = gitops.head_ref(worktree)
    tip = read(repo).get(ref) if ref else None
    return tip or gitops.head(worktree)
