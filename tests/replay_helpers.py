"""Replaying real upstream history as clusters (issue 13), for ``tests/test_replay.py`` and
``bench/bench_fidelity.py``.

``tests/data/more-itertools-window.bundle`` holds a window of more-itertools history (see
``tests/data/README.md``): the window's base, then its commits in upstream order. The repo under
test starts at the base with the window fetched under ``refs/upstream/window``; each cluster's
agent cherry-picks its own commits, in order, onto the base; the integration is then compared
with the upstream tip: the same commits applied one after another.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
BUNDLE = DATA / "more-itertools-window.bundle"
UPSTREAM = "refs/upstream/window"

# The command agent, for both roles. A cluster cherry-picks its commits in order; where one does
# not apply cleanly on its own branch (an earlier upstream commit it builds on is another
# cluster's), it keeps the commit's side of each conflicting hunk (``-X theirs``), and for a file
# git cannot merge at all, the commit's whole file: what a hurried agent would do. The integration
# agent resolves a conflict by taking the cluster's side of each conflicted file, and cannot fix
# what the accounting reports: so every difference from upstream must show in the report.
AGENT = textwrap.dedent('''
    import json, os, pathlib, subprocess, sys
    GIT = ["git", "-c", "user.name=replay", "-c", "user.email=replay@localhost"]
    if os.environ["WC_ROLE"] == "integration":
        for path in filter(None, os.environ.get("WC_CONFLICTS", "").splitlines()):
            if subprocess.run(GIT + ["checkout", "--theirs", "--", path]).returncode:
                subprocess.run(GIT + ["rm", "-q", "--", path], check=True)
        sys.exit(0)
    split = json.loads(pathlib.Path(os.environ["REPLAY_SPLIT"]).read_text())
    for sha in split[os.environ["WC_CLUSTER"]]:
        pick = GIT + ["cherry-pick", "--allow-empty", "--keep-redundant-commits", "-X", "theirs", sha]
        if subprocess.run(pick, capture_output=True).returncode == 0:
            continue
        unmerged = subprocess.run(GIT + ["diff", "--name-only", "--diff-filter=U"], capture_output=True,
                                  text=True, check=True).stdout.split()
        for path in unmerged:
            if subprocess.run(GIT + ["checkout", "--theirs", "--", path]).returncode:
                subprocess.run(GIT + ["rm", "-q", "--", path], check=True)
        subprocess.run(GIT + ["add", "-A"], check=True)
        subprocess.run(GIT + ["commit", "-q", "--allow-empty", "-C", sha], check=True)
''')


@dataclass
class Window:
    repo: Path
    base: str
    commits: list[str]  # upstream order
    tip: str
    files: dict[str, list[str]]  # commit -> the paths it changed
    authors: dict[str, str]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=T", "-c", "user.email=t@x", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def load_window(root: Path) -> Window:
    """A repo on ``main`` at the window's base, with the window under ``UPSTREAM``."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "fetch", "-q", str(BUNDLE), f"main:{UPSTREAM}")
    base, *commits = git(repo, "rev-list", "--reverse", UPSTREAM).split()
    git(repo, "checkout", "-q", "-B", "main", base)
    files = {c: git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", c).split() for c in commits}
    authors = {c: git(repo, "log", "-1", "--format=%an", c) for c in commits}
    return Window(repo, base, commits, commits[-1], files, authors)


def _area(paths: list[str]) -> str:
    for prefix, area in (("more_itertools/more.pyi", "api"), ("more_itertools/", "code"), ("tests/", "code"),
                         ("docs/", "docs"), ("README", "docs")):
        if any(p.startswith(prefix) for p in paths):
            return area
    return "build"


def by_area(w: Window) -> dict[str, list[str]]:
    """Commits by the area they touch: the typed API (stubs with their code), the rest of the
    library and its tests, the docs, the build."""
    return _group(w, lambda c: _area(w.files[c]))


def by_author(w: Window) -> dict[str, list[str]]:
    return _group(w, lambda c: "a-" + "".join(ch for ch in w.authors[c].lower() if ch.isascii() and ch.isalnum())[:20])


def interleaved(w: Window, count: int = 3) -> dict[str, list[str]]:
    """Commit ``i`` to cluster ``i % count``: neighbours in history land in different clusters."""
    return _group(w, lambda c: f"part{w.commits.index(c) % count}")


def _group(w: Window, key: Callable[[str], str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for c in w.commits:
        found.setdefault(key(c), []).append(c)
    return found


SPLITS: dict[str, Callable[[Window], dict[str, list[str]]]] = {
    "by-area": by_area, "by-author": by_author, "interleaved": interleaved}


def plan_yaml(w: Window, split: dict[str, list[str]]) -> str:
    """Every file the window touches is shared; each cluster owns a folder of its own (unused)."""
    shared = sorted({p for c in w.commits for p in w.files[c]})
    clusters = "".join(f"  - name: {name}\n    paths: [replay/{name}/]\n" for name in split)
    return (f"name: replay\ngoal: replay upstream history\nshared: {json.dumps(shared)}\nclusters:\n{clusters}"
            "integration:\n  verify: []\nlimits: {timeout_seconds: 300, retries: 0, concurrency: 2}\n"
            "contract: {on_empty: warn}  # a split may leave a cluster with no commit of its own\n")


def write_agent(root: Path, split: dict[str, list[str]]) -> tuple[str, dict[str, str]]:
    """The agent's command line and the environment it needs."""
    (root / "split.json").write_text(json.dumps(split))
    (root / "replay_agent.py").write_text(AGENT)
    return f"{sys.executable} {root / 'replay_agent.py'}", {"REPLAY_SPLIT": str(root / "split.json")}


@dataclass
class Difference:
    path: str
    lost: int  # upstream lines missing from the integrated file
    resurrected: int  # extra lines the base had and upstream removed
    duplicated: int  # other extra lines


def _lines(repo: Path, rev: str, path: str) -> Counter[str]:
    res = subprocess.run(["git", "cat-file", "blob", f"{rev}:{path}"], cwd=repo, capture_output=True, text=True)
    return Counter(n for n in (" ".join(x.split()) for x in res.stdout.splitlines()) if n) if res.returncode == 0 \
        else Counter()


def differences(w: Window, final: str, prepared: str) -> list[Difference]:
    """Every file where the integrated commit differs from the upstream tip, in lines; the files
    work-clusters itself put on the base (``prepared``: the plan) are not upstream's."""
    ours = set(git(w.repo, "diff", "--name-only", w.base, prepared).split())
    out = []
    for path in set(git(w.repo, "diff", "--name-only", "--no-renames", final, w.tip).split()) - ours:
        up, got, base = (_lines(w.repo, rev, path) for rev in (w.tip, final, w.base))
        extra = got - up
        resurrected = sum(min(n, base[k] - up[k]) for k, n in extra.items() if base[k] > up[k])
        out.append(Difference(path, (up - got).total(), resurrected, extra.total() - resurrected))
    return out
