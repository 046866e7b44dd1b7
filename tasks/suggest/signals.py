"""What the code and its history say about where the boundaries are.

Measured, not guessed, for ``work-clusters suggest`` and the fit figures of ``validate``:

- the Python import graph, file to file (grimp, in a subprocess: ``tasks.checks.independence``);
- logical coupling: the files that changed together in recent commits, renames followed to
  today's names, merges and huge commits (mass renames, formatting) left out;
- CODEOWNERS, where the repository has one (the last matching line wins, as on GitHub).

The folder tree itself is read from the file list. Other languages than Python have no import
graph here: the suggestion then rests on the folders and the history, and says so.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec

from prefect_work_clusters.tasks.checks.independence import probe_imports
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.plan.paths import PathSet
from prefect_work_clusters.tasks.plan.refs import module_paths

RECENT_COMMITS = 500
HUGE_COMMIT = 50  # files; such a commit says nothing about which files belong together
CODEOWNERS = ("CODEOWNERS", ".github/CODEOWNERS", "docs/CODEOWNERS", ".gitlab/CODEOWNERS")


@dataclass
class Signals:
    """The measured facts of one repository (paths relative to its root)."""

    files: list[str]
    imports: Counter[tuple[str, str]] = field(default_factory=Counter)  # (importer, imported) files
    commits: list[frozenset[str]] = field(default_factory=list)  # files of each recent commit
    owners: dict[str, tuple[str, ...]] = field(default_factory=dict)
    python: bool = False
    notes: list[str] = field(default_factory=list)


def tracked_files(repo: Path, globs: Sequence[str] = ()) -> list[str]:
    """The files git tracks at HEAD, kept to ``globs`` when given."""
    files = [p for p in gitops.out(repo, "ls-files", "-z").split("\0") if p]
    return PathSet(list(globs)).filter(files) if globs else files


def _package_roots(repo: Path, files: set[str]) -> list[str]:
    """Top-level importable packages at the root or under ``src/``."""
    roots = set()
    for path in files:
        parts = path.removeprefix("src/").split("/")
        if len(parts) >= 2 and parts[-1] == "__init__.py" and parts[0].isidentifier() and \
                (path.startswith("src/") or len(parts) == 2 or f"{parts[0]}/__init__.py" in files):
            roots.add(parts[0])
    return sorted(r for r in roots if f"{r}/__init__.py" in files or f"src/{r}/__init__.py" in files)


def _module_file(module: str, files: set[str]) -> str | None:
    return next((p for p in module_paths(module) if p in files), None)


def import_graph(repo: Path, files: list[str], workdir: Path, timeout: float = 120) -> tuple[Counter[tuple[str, str]],
                                                                                            str | None]:
    """File-to-file imports among ``files``; (graph, why there is none or None)."""
    present = set(files)
    roots = _package_roots(repo, present)
    if not roots:
        return Counter(), "no importable Python package at the root or under src/"
    found, why, _ = probe_imports(repo, roots, roots, workdir, dict(os.environ), timeout)
    if why:
        return Counter(), f"the import graph could not be built: {why}"
    graph: Counter[tuple[str, str]] = Counter()
    for imp in found:
        src, dst = _module_file(imp["importer"], present), _module_file(imp["imported"], present)
        if src and dst and src != dst:
            graph[(src, dst)] += 1
    return graph, None


def co_changes(repo: Path, files: list[str], limit: int = RECENT_COMMITS,
               huge: int = HUGE_COMMIT) -> list[frozenset[str]]:
    """The files of each of the last ``limit`` non-merge commits, under today's names (renames
    followed), kept to ``files``; commits of more than ``huge`` files are left out."""
    res = gitops.run(repo, "log", "--no-merges", f"-n{limit}", "-M", "--name-status", "-z", "--format=%x01",
                     check=False)
    if res.status != 0:
        return []
    present = set(files)
    renamed: dict[str, str] = {}  # old name -> today's name
    commits: list[frozenset[str]] = []
    for chunk in res.stdout.split("\x01")[1:]:
        fields = [f for f in chunk.strip("\n\0").split("\0") if f != ""]
        touched: set[str] = set()
        i = 0
        while i < len(fields):
            status = fields[i].strip()
            if status[:1] in ("R", "C") and i + 2 < len(fields):
                old, new = fields[i + 1], fields[i + 2]
                now = renamed.get(new, new)
                if status[:1] == "R":
                    renamed[old] = now
                touched.add(now)
                i += 3
            else:
                if i + 1 < len(fields):
                    touched.add(renamed.get(fields[i + 1], fields[i + 1]))
                i += 2
        kept = frozenset(touched & present)
        if 0 < len(touched) <= huge and kept:
            commits.append(kept)
    return commits


def code_owners(repo: Path, files: list[str]) -> dict[str, tuple[str, ...]]:
    """Each file's owners by the repository's CODEOWNERS; empty when there is none."""
    source = next((repo / c for c in CODEOWNERS if (repo / c).is_file()), None)
    if source is None:
        return {}
    rules: list[tuple[pathspec.PathSpec[Any], tuple[str, ...]]] = []
    for line in source.read_text(errors="replace").splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) >= 2:
            rules.append((pathspec.PathSpec.from_lines("gitwildmatch", [parts[0]]), tuple(sorted(parts[1:]))))
    owners: dict[str, tuple[str, ...]] = {}
    for path in files:
        for spec, who in reversed(rules):
            if spec.match_file(path):
                owners[path] = who
                break
    return owners


def measure(repo: Path, globs: Sequence[str], workdir: Path) -> Signals:
    """Every signal of ``repo`` (at HEAD), kept to ``globs`` when given."""
    files = tracked_files(repo, globs)
    signals = Signals(files=files, owners=code_owners(repo, files))
    signals.python = any(p.endswith(".py") for p in files)
    if signals.python:
        signals.imports, why = import_graph(repo, files, workdir)
        if why:
            signals.notes.append(f"imports not used: {why}; folders and history only")
    else:
        signals.notes.append("no Python here: the suggestion rests on the folder tree and the history "
                             "(files that change together), not on imports")
    signals.commits = co_changes(repo, files)
    if not signals.commits:
        signals.notes.append("no usable history (no commits of fewer than "
                             f"{HUGE_COMMIT} files): the suggestion rests on the folders and imports")
    return signals
