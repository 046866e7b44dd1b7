"""Owned, shared and contract paths: their spelling, matching, overlap and sparse cone.

Three kinds of pattern, all relative to the repo root:

- a folder, ending in ``/`` (``auth_api/``): everything under it;
- a glob, holding ``*``, ``?`` or ``[`` (``src/**/*.py``): gitwildmatch semantics, the same as
  ``.gitignore``, so a glob without a slash (``*.md``) matches at any depth;
- any other path (``app/routes.py``): that one file.

This module imports nothing of ours.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import unicodedata
from collections.abc import Iterable

import pathspec

_GLOB_CHARS = re.compile(r"[*?\[]")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def normalize(p: str) -> str:
    """The canonical spelling of a plan path: no leading ``./``, no doubled or ``.`` segments;
    a trailing ``/`` (a folder) is kept.

    >>> normalize("./auth_api//")
    'auth_api/'
    """
    p = p.strip()
    folder = p.endswith("/")
    parts = [s for s in p.split("/") if s not in ("", ".")]
    lead = "/" if p.startswith("/") else ""
    body = "/".join(parts)
    return lead + body + ("/" if folder and body else "")


def path_problem(p: str) -> str | None:
    """Why ``p`` cannot be a plan path, or None when it can."""
    if not p.strip():
        return "is empty; give a path relative to the repo root"
    if p.startswith(("/", "\\", "~")) or _DRIVE.match(p):
        return f"{p!r} is absolute; give it relative to the repo root"
    if ".." in p.replace("\\", "/").split("/"):
        return f"{p!r} uses '..'; a plan path must stay inside the repo, relative to its root"
    if p.startswith(("!", "#")):
        # gitwildmatch would read these as a negation or a comment, not as a path.
        return f"{p!r} starts with {p[0]!r}, which path patterns do not support"
    if any(unicodedata.category(c) == "Cc" for c in p):
        return f"{p!r} holds a control character (newline, tab, escape, ...); name the path without it"
    if any(_is_git_dir(part) for part in p.replace("\\", "/").split("/")):
        return (f"{p!r} lies inside '.git', which belongs to git and is shared by every worktree; "
                f"a plan cannot own it")
    return None


def _is_git_dir(part: str) -> bool:
    """``.git`` in any case, with the trailing dots and spaces Windows and macOS ignore; a glob
    segment starting with ``.`` that could match it (``.gi?``) counts too."""
    name = part.rstrip(". ").lower()
    if name == ".git":
        return True
    return part.startswith(".") and is_glob(part) and fnmatch.fnmatchcase(".git", part.lower())


def is_glob(p: str) -> bool:
    return bool(_GLOB_CHARS.search(p))


def glob_prefix(p: str) -> str:
    """The fixed folder a glob lives in (``src/api/``), or ``""`` when it may match anywhere.

    A glob without a slash before its end (``*.md``, ``auth*``) matches at any depth, as in
    ``.gitignore``, so its prefix is the whole repo.
    """
    if "/" not in p.rstrip("/"):
        return ""
    fixed: list[str] = []
    for segment in p.rstrip("/").split("/")[:-1]:
        if is_glob(segment):
            break
        fixed.append(segment + "/")
    return "".join(fixed)


def _region(p: str) -> str:
    """The smallest folder (or, for a file, the file itself) that holds every path ``p`` matches."""
    return glob_prefix(p) if is_glob(p) else p


def _within(inner: str, outer: str) -> bool:
    """``inner`` (a folder ending in ``/``, a file, or ``""``) lies in region ``outer``."""
    if outer == "" or inner == outer:
        return True
    return outer.endswith("/") and inner.startswith(outer)


class PathSet:
    """A set of plan patterns that answers "does this repo path belong here?".

    >>> PathSet(["auth_api/", "*.md", "app/routes.py"]).filter(["auth_api/x.py", "docs/a.md", "app/x.py"])
    ['auth_api/x.py', 'docs/a.md']
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = [normalize(p) for p in patterns]
        self._literal = [p for p in self.patterns if not is_glob(p)]
        self._spec = pathspec.GitIgnoreSpec.from_lines([p for p in self.patterns if is_glob(p)])

    def matches(self, path: str) -> bool:
        path = normalize(path)
        for p in self._literal:
            if path == p or (p.endswith("/") and path.startswith(p)):
                return True
        return self._spec.match_file(path)

    def filter(self, paths: Iterable[str]) -> list[str]:
        return [p for p in paths if self.matches(p)]


def _pair_overlaps(a: str, b: str) -> bool:
    if not is_glob(a) and not is_glob(b):
        return _within(a, b) or _within(b, a)
    if is_glob(a) and not is_glob(b) and not b.endswith("/"):
        return PathSet([a]).matches(b)
    if is_glob(b) and not is_glob(a) and not a.endswith("/"):
        return PathSet([b]).matches(a)
    ra, rb = _region(a), _region(b)
    return _within(ra, rb) or _within(rb, ra)


def first_overlap(a_patterns: Iterable[str], b_patterns: Iterable[str]) -> tuple[str, str] | None:
    """The first pair (one pattern of each side) that may match the same path, or None.

    The rule is conservative: a pair that *might* share a path overlaps, so two clusters never
    both own a file. Folders and files overlap when one contains or equals the other. A glob
    and a file overlap when the glob matches the file. Otherwise each glob stands for its fixed
    folder (``src/**/*.py`` for ``src/``; ``*.md`` for the whole repo) and the pair overlaps
    when one region contains the other: ``auth_api/*.py`` overlaps ``auth_api/``, and so do
    ``src/*.py`` and ``src/*.ts``, since proving two globs disjoint is beyond a cheap check.
    Give clusters disjoint folders to keep clear of this.
    """
    b_list = [normalize(p) for p in b_patterns]
    for a in (normalize(p) for p in a_patterns):
        for b in b_list:
            if _pair_overlaps(a, b):
                return a, b
    return None


def overlaps(a_patterns: Iterable[str], b_patterns: Iterable[str]) -> bool:
    """Whether two clusters' owned patterns may share a path; see ``first_overlap`` for the rule."""
    return first_overlap(a_patterns, b_patterns) is not None


def container(p: str, patterns: Iterable[str]) -> str | None:
    """The pattern among ``patterns`` whose paths include all of ``p``'s, or None.

    Used for shared and contract paths, which must not lie inside a cluster's owned paths:
    ``app/routes.py`` lies in ``app/`` and in ``app/*.py``; ``app/`` lies in ``app/``.
    """
    p = normalize(p)
    for owned in (normalize(o) for o in patterns):
        if is_glob(owned):
            if not is_glob(p) and PathSet([owned]).matches(p.rstrip("/")):
                return owned
        elif _within(_region(p), owned):
            return owned
    return None


def cone_problem(p: str) -> str | None:
    """Why a sparse (cone mode) checkout cannot hold every path ``p`` may match, or None."""
    if is_glob(p) and glob_prefix(normalize(p)) == "":
        return f"{p!r} has no fixed folder before its first wildcard, which a sparse checkout needs"
    return None


def cone_dirs(patterns: Iterable[str]) -> list[str]:
    """The folders ``git sparse-checkout set --cone`` needs so every pattern's paths are present.

    A folder gives itself, a file its folder, a glob its fixed folder; top-level files give
    nothing, since cone mode always includes them. Folders inside another listed folder are
    dropped. A glob with no fixed folder cannot be covered (see ``cone_problem``).

    >>> cone_dirs(["auth_api/", "app/routes.py", "src/**/*.py", "README.md", "auth_api/sub/"])
    ['app', 'auth_api', 'src']
    """
    dirs: set[str] = set()
    for p in (normalize(p) for p in patterns):
        if is_glob(p):
            d = glob_prefix(p)
        elif p.endswith("/"):
            d = p
        else:
            d = posixpath.dirname(p) + "/"
        if d.strip("/"):
            dirs.add(d)
    kept = [d for d in dirs if not any(o != d and d.startswith(o) for o in dirs)]
    return sorted(d.rstrip("/") for d in kept)
