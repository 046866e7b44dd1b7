"""Every ref of a repository and its object, read as cheaply as what changed allows.

Asked of git (``for-each-ref``, ~5 ms) only when ``packed-refs`` changed, a ref was deleted (a
packed value may show through), or a name or a file is not a plain ref; a branch moved or made
(every commit of ours and of an agent) is read from its own loose file, and nothing changed costs
nothing: which ref files changed is told by ``tasks.git.events`` (inotify; else one ``stat`` a
ref file and folder). The shared-git-dir guard reads the refs around every attempt.
"""

from __future__ import annotations

import os
import re
import shlex
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import events, stamps
from prefect_work_clusters.tasks.git import files as gitfiles

# A ref file's stamp and its read mark (``tasks.git.events``: a new one each time an event names
# it); None for a stamp too young when recorded to tell a second write within its tick from none.
Token = tuple[stamps.Stamp, int]
_ROOTS = (events.Root("reftable", deep=False), events.Root("packed-refs", deep=False), events.Root("refs"))


@dataclass
class _Refs:
    """What ``read`` last found: the ``packed-refs`` token, each loose ref file's token, the refs,
    and the symbolic refs' targets (``refs/remotes/origin/HEAD``: its object moves with them)."""

    packed: Token | None
    loose: dict[str, Token | None]
    found: dict[str, str]
    symbolic: dict[str, str]
    versions: tuple[int | None, ...]  # of the watched trees: all the same, nothing was written
    settled: bool  # no token None


_refs_seen: dict[str, _Refs] = {}
_refs_lock = threading.Lock()
# Ref names read from loose files without git: a strict subset of what git accepts (anything
# else, and a symbolic ref, is left to ``for-each-ref``).
_PLAIN_REF = re.compile(r"refs/(?:[A-Za-z0-9_-][A-Za-z0-9_.-]*/)*[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def _plain(name: str) -> bool:
    return bool(_PLAIN_REF.fullmatch(name)) and ".." not in name and not name.endswith(".") and not any(
        part.endswith(".lock") for part in name.split("/"))


def _loose(trees: list[events.Tree]) -> tuple[Token | None, dict[str, Token]] | None:
    """The ``packed-refs`` token and every loose ref file's token (git's lock files left out: git
    lists no ref for them). None for a reftable repository, or a racy or odd ``packed-refs``."""
    reftable, packed_refs, loose_refs = trees
    if reftable.files:
        return None
    packed: Token | None = None
    if packed_refs.files:
        st, mark = packed_refs.files["packed-refs"]
        if not stat.S_ISREG(st.st_mode) or not stamps.settled(st):
            return None
        packed = (stamps.stamp_of(st), mark)
    return packed, {rel: (stamps.stamp_of(st), mark) for rel, (st, mark) in loose_refs.files.items()
                    if not rel.endswith(".lock")}


def _updated(common: str, seen: _Refs, packed: Token | None, loose: dict[str, Token]) -> dict[str, str] | None:
    """The refs after only loose refs were written or added (as every commit and branch move of
    ours and of an agent does): those files read alone, and the racy ones again. None when git
    must list them: packed-refs changed, a loose ref was removed (a packed one may show through),
    a name or content is not a plain ref."""
    if packed != seen.packed or not set(seen.loose) <= set(loose):
        return None
    found = dict(seen.found)
    for name, token in loose.items():
        if seen.loose.get(name) == token:
            continue
        if not _plain(name):
            return None
        try:
            data = gitfiles.read_nowait(os.path.join(common, name), 100, follow=False)[1]
        except OSError:
            return None
        text = (data or b"").decode("ascii", errors="replace").removesuffix("\n")
        if data is None or not gitfiles.is_object_name(text):  # a FIFO, say: git is asked
            return None
        found[name] = text
    for name, target in seen.symbolic.items():
        if target in seen.symbolic or target not in found:
            return None
        found[name] = found[target]
    return found


def _keep(common: str, trees: list[events.Tree], tokens: tuple[Token | None, dict[str, Token]],
          found: dict[str, str], symbolic: dict[str, str]) -> None:
    """Recorded after the files were read: a stamp still racy then is not trusted next time,
    unless the kernel's events stand for it (a mark: any later write gives the file a new one)."""
    loose = {name: None if not token[1] and stamps.racy(token[0]) else token for name, token in tokens[1].items()}
    with _refs_lock:
        _refs_seen[common] = _Refs(tokens[0], loose, found, symbolic, tuple(t.version for t in trees),
                                   None not in loose.values())


def read(repo: Path) -> dict[str, str]:
    """Every ref (``refs/...``) and the object it names, as ``git for-each-ref`` lists them."""
    common = str(gitops.common_dir(repo))
    trees = events.trees(common, _ROOTS)
    with _refs_lock:
        seen = _refs_seen.get(common)
    if seen is not None and seen.settled and None not in seen.versions and seen.versions == tuple(
            t.version for t in trees):
        return dict(seen.found)  # the kernel saw no ref file written since
    tokens = _loose(trees)
    # Each token is taken before its file is read (or git lists the refs): a file written in
    # between has another stamp or mark on the next call, so it is read again then.
    if tokens is not None and seen is not None:
        found = _updated(common, seen, *tokens)
        if found is not None:
            _keep(common, trees, tokens, found, seen.symbolic)
            return dict(found)
    _refuse_odd(common, trees)
    text = gitops.out(repo, "for-each-ref", "--format=%(objectname) %(refname) %(symref)")
    found, symbolic = {}, {}
    for line in text.splitlines():
        sha, _, rest = line.partition(" ")
        name, _, target = rest.partition(" ")
        found[name] = sha
        if target:
            symbolic[name] = target
    if tokens is not None:
        _keep(common, trees, tokens, found, symbolic)
    return dict(found)


def _refuse_odd(common: str, trees: list[events.Tree]) -> None:
    """A FIFO, socket or device among the ref files: git would wait on it for ever (measured:
    ``git for-each-ref`` hangs on a FIFO in refs/heads/). No git is run; the run stops with the
    file to remove."""
    for tree in trees[1:]:
        for rel, (st, _) in tree.files.items():
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                path = os.path.join(common, rel)
                raise gitops.GitError(["for-each-ref"], 1, f"{path} is not a file git can read (a FIFO, socket or "
                                      "device: git would wait on it for ever); remove it "
                                      f"(rm {shlex.quote(path)}) and run again")


def head(repo: Path, worktree: Path) -> str:
    """A worktree's HEAD as ``git rev-parse HEAD`` prints it: while its HEAD file names a branch,
    that branch's tip as ``read`` keeps it (no git process); git is asked otherwise."""
    ref = gitops.head_ref(worktree)
    tip = read(repo).get(ref) if ref else None
    return tip or gitops.head(worktree)
