"""Change accounting speed (issue 13): every line of 100 clusters accounted in a 100,000-file repo.

    python bench/bench_accounting.py [--clusters 100] [--files 100000] [--repeat 3] [--out results.json]

The repo is made with ``git fast-import`` (bench/common.py). Each cluster branch edits one file of
its own folder (one line changed), adds a Python module of 20 lines and adds one entry to a shared
Python registry; the integrated commit holds all of it, written directly (the merges are
``bench_integration``'s subject). Timed: ``tasks.integration.accounting.account`` on it, as the flow
runs it after the merges (one ``git diff`` per cluster, one for the integrated tree, one batch
read of the Python files for the Python checks). Target: well under 3 s for 100 clusters.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from common import base_parser, cluster_names, emit, layout, make_repo, verdict, workdir

from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.integration.accounting import account

TARGET = 3.0
REGISTRY = "lib/registry.py"


def make_branches(repo: Path, files: int, count: int) -> tuple[str, str, list[tuple[str, str]]]:
    """(base, integrated commit, [(cluster, branch)]): each branch changes its own files and the
    shared registry; the integrated commit holds every change."""
    names = cluster_names(count)
    base = githistory.commit_files_on(repo, gitops.out(repo, "rev-parse", "main"),
                                  {REGISTRY: b"REGISTRY = [\n    'core',\n]\n"}, "registry")
    owned = {name: [p for p in layout(files, count) if p.startswith(f"{name}/")] for name in names}
    everything: dict[str, bytes] = {}
    branches = []
    for name in names:
        changes = {f"{name}/added.py": "".join(f"{name.upper()}_{n} = {n}\n" for n in range(20)).encode(),
                   REGISTRY: f"REGISTRY = [\n    'core',\n    '{name}',\n]\n".encode()}
        if owned[name]:
            changes[owned[name][0]] = f"# {owned[name][0]}, edited by {name}\n".encode()
        sha = githistory.commit_files_on(repo, base, changes, f"{name}: work")
        githistory.set_branch(repo, f"clusters/bench/{name}", sha, "bench")
        branches.append((name, f"clusters/bench/{name}"))
        everything.update({p: b for p, b in changes.items() if p != REGISTRY})
    everything[REGISTRY] = ("REGISTRY = [\n    'core',\n" + "".join(f"    '{n}',\n" for n in names) + "]\n").encode()
    final = githistory.commit_files_on(repo, base, everything, "integrated")
    return base, final, branches


def run(files: int, count: int, repeat: int, tmp: Path) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    repo = tmp / "repo"
    t0 = time.monotonic()
    made = make_repo(repo, files, count)
    base, final, branches = make_branches(repo, files, count)
    setup = time.monotonic() - t0
    seconds, ok = [], True
    for _ in range(repeat):
        acc = account(repo, base, final, branches, [])
        seconds.append(acc.seconds)
        ok &= acc.ok and len(acc.clusters) == count and all(c.added == 22 for c in acc.clusters)
    median = statistics.median(seconds)
    results = {"files": files, "clusters": count, "repeat": repeat, "setup_seconds": round(setup, 3), **made,
               "accounting_seconds": seconds, "accounting_seconds_median": median, "all_accounted": ok,
               "files_accounted": acc.files}
    rows = [
        (f"accounting of {count} clusters in {files:,} files ({acc.files} changed)", f"{median:.3f} s",
         f"< {TARGET:g} s", verdict(median, TARGET)),
        ("every change accounted for, no finding", "yes" if ok else "NO", "yes", "met" if ok else "NOT met"),
    ]
    return results, rows


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0], files=100_000, clusters=100)
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the median is reported (default 3)")
    args = parser.parse_args()
    with workdir("accounting", keep=args.keep) as tmp:
        results, rows = run(args.files, args.clusters, args.repeat, tmp)
    emit("change accounting: 100 clusters in a large repo", results, rows, args.out)
    if not results["all_accounted"]:
        raise SystemExit("the accounting flagged a correct integration: the numbers above are not valid")


if __name__ == "__main__":
    main()
