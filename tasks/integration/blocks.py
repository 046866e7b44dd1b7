"""Duplicated blocks: one copy too many of a run of lines, where clusters' changes overlap.

Line counts alone cannot tell two clusters that made the same change (one copy is right) from two
that each wrote a ``return None`` (two are right), so the change accounting accepts either where
clusters added the same line. A run of ``BLOCK`` consecutive lines is another matter: when the
integrated file holds it more often than the base and every merged cluster's own version of the
file, the same block was kept twice (a function, a workflow, a changelog entry), as git's clean
merge or a keep-both resolution of two branches that each carry it does.

>>> duplicated("a\\nb\\nc\\nd\\nx\\na\\nb\\nc\\nd\\n", ["a\\nb\\nc\\nd\\n"])
['a', 'b', 'c', 'd']
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from prefect_work_clusters.tasks.git import merge as gitmerge

BLOCK = 4


def _lines(text: str | None) -> list[str]:
    return [n for n in (" ".join(x.split()) for x in (text or "").splitlines()) if n]


def _runs(lines: Sequence[str]) -> Counter[tuple[str, ...]]:
    return Counter(tuple(lines[i:i + BLOCK]) for i in range(len(lines) - BLOCK + 1))


def duplicated(final: str | None, sides: Sequence[str | None]) -> list[str]:
    """The lines of ``final`` in runs it holds more than once and more often than any side does
    (copies beyond the allowed count only), in file order."""
    lines = _lines(final)
    allowed: Counter[tuple[str, ...]] = Counter()
    for side in sides:
        allowed |= _runs(_lines(side))
    seen: Counter[tuple[str, ...]] = Counter()
    flagged: set[int] = set()
    for i in range(len(lines) - BLOCK + 1):
        run = tuple(lines[i:i + BLOCK])
        seen[run] += 1
        if seen[run] > max(allowed[run], 1):  # a run the merge formed anew is not a copy
            flagged.update(range(i, i + BLOCK))
    return [lines[i] for i in sorted(flagged)]


def duplicated_blocks(repo: Path, base: str, final: str, sides: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Per path of ``sides`` (path -> the cluster branches that changed it), the duplicated lines;
    every version is read in one ``git cat-file --batch``."""
    specs = [f"{rev}:{p}" for p, revs in sides.items() for rev in (final, base, *revs)]
    blobs = gitmerge.read_blobs(repo, specs)
    found = {p: duplicated(blobs[f"{final}:{p}"], [blobs[f"{rev}:{p}"] for rev in (base, *revs)])
             for p, revs in sides.items()}
    return {p: lines for p, lines in found.items() if lines}
