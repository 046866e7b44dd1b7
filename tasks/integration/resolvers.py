"""The conflict ladder's deterministic tiers: our additive resolver, and mergiraf where installed.

Both work on a worktree stopped mid-merge, one file at a time, and never stage a result that
still holds a conflict marker (``git diff --check``) or a Python file that no longer parses: such
a result is rejected and the conflict put back for the next tier.

The additive rule, per diff3 hunk: when both sides only inserted lines into the base (the base
is empty, or equal to one side, or a subsequence of both), the result keeps both insertions at
each place, ours then theirs, and an item line both sides added identically appears once. Where
the hunk and the item lines around it (one indentation, no blank line) make a sorted list on
each side, the result is sorted too: a sorted ``__all__`` or changelog stays sorted.

>>> text = "R = [\\n<<<<<<< HEAD\\n    'a',\\n||||||| base\\n=======\\n    'b',\\n>>>>>>> ui\\n]\\n"
>>> print(additive_resolve("r.py", text).text, end="")
R = [
    'a',
    'b',
]
"""

from __future__ import annotations

import ast
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

from prefect_work_clusters.tasks.git import merge as gitmerge
from prefect_work_clusters.tasks.git import mergiraf as gitmergiraf
from prefect_work_clusters.tasks.integration.models import TierAttempt

MARKER_SIZE = 7


@dataclass(frozen=True)
class Hunk:
    index: int
    line: int  # 1-based line of the opening marker in the conflicted file
    ours: list[str]
    base: list[str] | None  # None when the file was not written in diff3 style
    theirs: list[str]


def _marker(line: str, char: str) -> bool:
    head = line[:MARKER_SIZE]
    rest = line[MARKER_SIZE:MARKER_SIZE + 1]
    return head == char * MARKER_SIZE and (rest == "" or rest.isspace())


def parse_conflicts(text: str) -> list[str | Hunk]:
    """The file as plain lines (with their endings) and conflict hunks; ValueError if malformed."""
    out: list[str | Hunk] = []
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if not _marker(lines[i], "<"):
            out.append(lines[i])
            i += 1
            continue
        parts: dict[str, list[str]] = {"ours": [], "base": [], "theirs": []}
        start, current = i, "ours"
        has_base = False
        i += 1
        while i < len(lines) and not _marker(lines[i], ">"):
            if _marker(lines[i], "|") and current == "ours":
                current, has_base = "base", True
            elif _marker(lines[i], "=") and current in ("ours", "base"):
                current = "theirs"
            elif _marker(lines[i], "<"):
                raise ValueError(f"nested conflict marker at line {i + 1}")
            else:
                parts[current].append(lines[i])
            i += 1
        if i == len(lines) or current != "theirs":
            raise ValueError(f"unterminated conflict hunk from line {start + 1}")
        hunk_no = sum(isinstance(x, Hunk) for x in out) + 1
        out.append(Hunk(hunk_no, start + 1, parts["ours"], parts["base"] if has_base else None, parts["theirs"]))
        i += 1
    return out


def hunks(text: str) -> list[Hunk]:
    try:
        return [x for x in parse_conflicts(text) if isinstance(x, Hunk)]
    except ValueError:
        return []


def _insertions(base: list[str], side: list[str]) -> list[list[str]] | None:
    """What ``side`` inserted before each base line (and after the last), or None when it also
    deleted or changed a base line."""
    gaps: list[list[str]] = [[] for _ in range(len(base) + 1)]
    for tag, i1, _i2, j1, j2 in SequenceMatcher(a=base, b=side, autojunk=False).get_opcodes():
        if tag == "insert":
            gaps[i1].extend(side[j1:j2])
        elif tag != "equal":
            return None
    return gaps


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _keep_both(ours: list[str], theirs: list[str]) -> list[str]:
    """Ours, then theirs; a line of theirs that ours added identically is kept once when it is an
    item on its own (outermost indentation of the insertion, holding a word): an import, a
    registry entry. A body line such as ``    pass`` or a closing ``}`` is never merged away."""
    if ours == theirs:
        return list(ours)
    seen = {line.rstrip("\r\n") for line in ours}
    items = [line for line in theirs if line.strip()]
    outer = min((_indent(line) for line in items), default=0)
    kept = list(ours)
    for line in theirs:
        key = line.rstrip("\r\n")
        if key in seen and line.strip() and _indent(line) == outer and any(ch.isalnum() for ch in key):
            continue
        kept.append(line)
    if ours and len(kept) > len(ours) and not ours[-1].endswith("\n"):
        kept[len(ours) - 1] = ours[-1] + "\n"  # ours ended the file without a newline; theirs follows
    return kept


def additive_hunk(hunk: Hunk, before: Sequence[str] = (), after: Sequence[str] = ()) -> list[str] | None:
    """The hunk resolved by keeping both sides' insertions, or None when it is not additive.
    ``before`` and ``after`` are the item lines around it: where the list they make with each
    side is sorted, the result is sorted too."""
    if hunk.base is None:
        return None
    ours, theirs = _insertions(hunk.base, hunk.ours), _insertions(hunk.base, hunk.theirs)
    if ours is None or theirs is None:
        return None
    merged: list[str] = []
    for i, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        merged += _keep_both(o, t)
        if i < len(hunk.base):
            merged.append(hunk.base[i])
    if _one_indent([*before, *hunk.ours, *hunk.theirs, *hunk.base, *after]) and all(
            _sorted_items([*before, *side, *after]) for side in (hunk.ours, hunk.theirs)):
        return sorted(merged, key=_sort_key)  # a sorted list stays sorted, as a person would keep it
    return merged


def _items_around(parts: Sequence[str | Hunk], at: int, step: int) -> list[str]:
    """The plain item lines next to ``parts[at]`` (before it for ``step`` -1, after for 1), up
    to a blank line, another hunk or a change of indentation."""
    found: list[str] = []
    i = at + step
    while 0 <= i < len(parts) and isinstance(parts[i], str) and _one_indent([*found, str(parts[i])]):
        found.append(str(parts[i]))
        i += step
    return found[::step]


def _sort_key(line: str) -> str:
    """An item as a person sorts it: ``'b',`` after ``'a'`` (no trailing comma), case aside."""
    return line.strip().rstrip(",").strip().casefold()


def _sorted_items(lines: Sequence[str]) -> bool:
    keys = [_sort_key(line) for line in lines]
    return keys == sorted(keys)


def _one_indent(lines: Sequence[str]) -> bool:
    """Items of one list: every line non-blank, ended, at one indentation (code is never sorted)."""
    return all(line.strip() and line.endswith("\n") for line in lines) and len({_indent(x) for x in lines}) <= 1


@dataclass
class AdditiveResult:
    text: str | None
    reason: str


def python_error(path: str, text: str) -> str | None:
    """Why a Python file does not parse, or None (other files: None)."""
    if not path.endswith((".py", ".pyi")):
        return None
    try:
        ast.parse(text, filename=path)
    except (SyntaxError, ValueError) as exc:
        return f"does not parse as Python: {exc}"
    return None


def additive_resolve(path: str, text: str) -> AdditiveResult:
    """Resolve every hunk of a conflicted file additively, or none of them."""
    try:
        parts = parse_conflicts(text)
    except ValueError as exc:
        return AdditiveResult(None, f"cannot read the conflict markers: {exc}")
    found = [p for p in parts if isinstance(p, Hunk)]
    if not found:
        return AdditiveResult(None, "no conflict hunks in the file (not a content conflict)")
    out: list[str] = []
    for at, part in enumerate(parts):
        if isinstance(part, str):
            out.append(part)
            continue
        merged = additive_hunk(part, _items_around(parts, at, -1), _items_around(parts, at, 1))
        if merged is None:
            return AdditiveResult(None, f"hunk {part.index} (line {part.line}) changes or removes base lines")
        out += merged
    resolved = "".join(out)
    error = python_error(path, resolved)
    if error:
        return AdditiveResult(None, f"keeping both sides {error}")
    return AdditiveResult(resolved, f"{len(found)} hunk(s): both sides only added lines; kept both "
                                   "(sorted where the lists were sorted, else ours then theirs)")


def validate(worktree: Path, since: str, path: str) -> str | None:
    """Why a resolution written to ``path`` must be rejected, or None: leftover conflict markers
    (as ``git diff --check`` reports them against ``since``), or Python that does not parse."""
    markers = gitmerge.marker_lines(worktree, since, [path]).get(path)
    if markers:
        return f"leftover conflict markers at line(s) {', '.join(map(str, markers[:5]))}"
    file = worktree / path
    if file.is_file():
        return python_error(path, file.read_text(errors="replace"))
    return None


def additive_tier(worktree: Path, since: str, path: str) -> TierAttempt:
    file = worktree / path
    if not file.is_file():
        return TierAttempt(tier="additive", outcome="not-applicable", detail="the file is deleted on one side")
    original = file.read_bytes()
    try:
        text = original.decode("utf-8")
    except UnicodeDecodeError:
        return TierAttempt(tier="additive", outcome="not-applicable", detail="not a UTF-8 text file")
    result = additive_resolve(path, text)
    if result.text is None:
        return TierAttempt(tier="additive", outcome="not-applicable", detail=result.reason)
    file.write_text(result.text, encoding="utf-8")
    rejected = validate(worktree, since, path)
    if rejected:
        file.write_bytes(original)
        return TierAttempt(tier="additive", outcome="rejected", detail=rejected)
    gitmerge.stage(worktree, [path])
    return TierAttempt(tier="additive", outcome="resolved", detail=result.reason)


def mergiraf_executable() -> str | None:
    """mergiraf is used only when it is on PATH; it is never required."""
    return shutil.which("mergiraf")


def mergiraf_tier(worktree: Path, since: str, paths: list[str]) -> dict[str, TierAttempt]:
    """Re-merge ``paths`` with mergiraf as the merge driver; keep each result that validates."""
    exe = mergiraf_executable()
    if exe is None:
        return {p: TierAttempt(tier="mergiraf", outcome="unavailable", detail="mergiraf is not on PATH")
                for p in paths}
    present = [p for p in paths if (worktree / p).is_file()]
    failed = gitmergiraf.remerge_with_driver(worktree, present, exe)
    attempts: dict[str, TierAttempt] = {}
    for path in paths:
        if path not in present:
            attempts[path] = TierAttempt(tier="mergiraf", outcome="not-applicable",
                                         detail="the file is deleted on one side")
            continue
        if path in failed:
            gitmerge.restore_conflict(worktree, [path])
            attempts[path] = TierAttempt(tier="mergiraf", outcome="unresolved", detail="mergiraf could not merge it")
            continue
        rejected = validate(worktree, since, path)
        if rejected:
            gitmerge.restore_conflict(worktree, [path])
            attempts[path] = TierAttempt(tier="mergiraf", outcome="rejected", detail=rejected)
        else:
            gitmerge.stage(worktree, [path])
            attempts[path] = TierAttempt(tier="mergiraf", outcome="resolved", detail=f"merged by {exe}")
    return attempts
