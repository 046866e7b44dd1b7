"""Python-aware checks of the integrated tree, after every merge, clean or not: git merges lines,
not programs, so a clean merge can leave a module that binds a name twice (the stale value
winning), lists an ``__all__`` entry twice, or imports a name twice.

Each check yields keys with a count of surplus copies; a key is a finding only when the integrated
file holds more of it than the base and every merged cluster's own version of the file: what a
side already did on purpose is not the merge's doing.

>>> sorted(duplicates("import os\\nimport os\\n__all__ = ['a', 'a']\\nX = 1\\nX = 2\\n").items())
[(('bound', 'X'), (1, 5)), (('entry', '__all__', "'a'"), (1, 3)), (('import', 'os'), (1, 2))]
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

from pydantic import BaseModel, Field

from prefect_work_clusters.tasks.git import merge as gitmerge

Key = tuple[str, ...]


class PyFinding(BaseModel):
    path: str
    line: int
    message: str
    reason: str = Field(default="", description="the decision that explains it, if any")
    explained_by: str = ""


def _bindings(stmt: ast.stmt) -> Iterator[str]:
    """Names a top-level statement binds unconditionally (not ``x += 1``, not inside an ``if``)."""
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _overload(stmt):
        yield stmt.name
    elif isinstance(stmt, ast.ClassDef):
        yield stmt.name
    elif isinstance(stmt, ast.Assign):
        for target in stmt.targets:
            if isinstance(target, ast.Name):
                yield target.id
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
        yield stmt.target.id


def _overload(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """``@overload`` signatures (and ``@f.register`` helpers named ``_``) are meant to repeat."""
    names = {d.id if isinstance(d, ast.Name) else d.attr if isinstance(d, ast.Attribute) else ""
             for d in fn.decorator_list}
    return "overload" in names or fn.name == "_"


def _imports(stmt: ast.stmt) -> Iterator[str]:
    if isinstance(stmt, ast.Import):
        yield from (f"{a.name} as {a.asname}" if a.asname else a.name for a in stmt.names)
    elif isinstance(stmt, ast.ImportFrom):
        module = "." * stmt.level + (stmt.module or "")
        yield from (f"from {module} import {a.name}" + (f" as {a.asname}" if a.asname else "") for a in stmt.names)


def _literals(tree: ast.Module) -> Iterator[tuple[str, ast.List | ast.Tuple | ast.Set]]:
    """Every list, tuple or set literal, named by the module-level name it is assigned to."""
    for stmt in tree.body:
        owner = next(_bindings(stmt), "") if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else ""
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            owner = stmt.target.id
        for node in ast.walk(stmt):
            if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                yield owner or "a literal", node


def duplicates(text: str) -> Mapping[Key, tuple[int, int]]:
    """Key -> (surplus copies, line of the last copy) for one module's source; {} if it does not parse."""
    return _scan(text) or {}


def _parses(text: str) -> bool:
    return _scan(text) is not None


# One accounting asks about the same texts again and again (the integrated file and each side of
# every suspect file, and all of it again after the integration agent's fix): measured, 32 scans
# of 13 texts of a 3,500-line module in one replayed run, 3.4 s of its 3.8 s of Python checks.
@functools.lru_cache(maxsize=32)
def _scan(text: str) -> Mapping[Key, tuple[int, int]] | None:
    """:func:`duplicates` of ``text``, read-only as it is shared; None if it does not parse."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return None
    found: dict[Key, tuple[int, int]] = {}

    def seen(key: Key, line: int) -> None:
        count, _ = found.get(key, (-1, 0))
        found[key] = (count + 1, line)

    for stmt in tree.body:
        for name in _bindings(stmt):
            seen(("bound", name), stmt.lineno)
        for name in _imports(stmt):
            seen(("import", name), stmt.lineno)
    surplus = {k: v for k, v in found.items() if v[0] > 0}
    for owner, node in _literals(tree):  # within one literal: two sets may each hold 'queue'
        lines: dict[str, list[int]] = {}
        for elt in node.elts:
            if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                lines.setdefault(repr(elt.value), []).append(elt.lineno)
        for value, at in lines.items():
            if len(at) > 1:
                count, _ = surplus.get(("entry", owner, value), (0, 0))
                surplus[("entry", owner, value)] = (count + len(at) - 1, at[-1])
    return MappingProxyType(surplus)


def _message(key: Key, copies: int) -> str:
    times = "twice" if copies == 1 else f"{copies + 1} times"
    if key[0] == "bound":
        return f"`{key[1]}` is bound {times} at module level (the last binding wins)"
    if key[0] == "import":
        return f"`{key[1]}` is imported {times}"
    return f"{key[2]} is listed {times} in `{key[1]}`"


def findings_for(path: str, final: str | None, sides: Sequence[str | None]) -> list[PyFinding]:
    """Findings in ``final`` that no side (the base, each cluster's version) already had."""
    if final is None:
        return []
    try:
        ast.parse(final)
    except (SyntaxError, ValueError) as exc:
        parsed = [s for s in sides if s is not None and _parses(s)]
        return [PyFinding(path=path, line=getattr(exc, "lineno", None) or 1,
                          message=f"does not parse as Python: {exc}")] if parsed else []
    before = [duplicates(s) for s in sides if s is not None]
    out: list[PyFinding] = []
    for key, (copies, line) in sorted(duplicates(final).items(), key=lambda kv: kv[1][1]):
        if copies > max((d.get(key, (0, 0))[0] for d in before), default=0):
            out.append(PyFinding(path=path, line=line, message=_message(key, copies)))
    return out


def python_findings(repo: Path, base: str, final: str, paths: Sequence[str], branches: Mapping[str, str],
                    changed: Mapping[str, Mapping[str, object]]) -> list[PyFinding]:
    """Findings in each Python file of ``paths`` at ``final``; the sides are ``base`` and the
    branch of every cluster whose change (``changed``: cluster -> path -> change) holds the file.
    The sides are read only for files that hold a duplicate or do not parse: two batch reads."""
    finals = gitmerge.read_blobs(repo, [f"{final}:{p}" for p in paths])
    suspect = [p for p in paths if (text := finals[f"{final}:{p}"]) is not None
               and (duplicates(text) or not _parses(text))]
    sides = {p: [base, *(branches[c] for c, ch in changed.items() if p in ch)] for p in suspect}
    blobs = gitmerge.read_blobs(repo, [f"{rev}:{p}" for p in suspect for rev in sides[p]])
    out: list[PyFinding] = []
    for p in suspect:
        out += findings_for(p, finals[f"{final}:{p}"], [blobs[f"{rev}:{p}"] for rev in sides[p]])
    return out
