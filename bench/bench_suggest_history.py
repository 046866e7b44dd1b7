"""Suggest on real history: would the suggested boundaries have held for the commits that came next?

For each repository (a local clone or mirror: `--repo PATH`, repeatable), go --back first-parent
commits into its past, run `work-clusters suggest` there (it sees only the history up to that
point), then take the next --window non-merge commits (of fewer than 50 files) and count the share
that would have crossed a boundary: touched the owned paths of more than one cluster. The same
share for the split a person would make without measuring: one cluster per top-level folder.
Lower is better; the suggestion should not be worse than the folders. A lopsided split (one
cluster holding nearly everything) crosses little and helps little: the files per cluster are
printed beside each figure.

    python bench/bench_suggest_history.py --repo /work/.mirror/encode+httpx/repo --out suggest-history.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402

from prefect_work_clusters.tasks.plan.paths import PathSet  # noqa: E402

HUGE = 50


def crossing(commits: list[list[str]], owner_of: Any) -> tuple[int, int]:
    """(commits touching an owned file, of which touching two clusters or more)."""
    touching = crossed = 0
    for files in commits:
        owners = {o for f in files if (o := owner_of(f)) is not None}
        touching += bool(owners)
        crossed += len(owners) > 1
    return touching, crossed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, action="append", required=True)
    parser.add_argument("--back", type=int, default=300, help="first-parent commits into the past")
    parser.add_argument("--window", type=int, default=200, help="commits after that point to score")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, str, str, str]] = []
    results: dict[str, Any] = {}
    with c.workdir("suggest-history", args.keep) as root:
        for source in args.repo:
            name = source.parent.name if source.name == "repo" else source.name
            if not source.exists():
                print(f"skip {name}: {source} is not here (fetch or clone it first)")
                continue
            clone = root / name
            c.git(root, "clone", "-q", "--no-checkout", str(source), str(clone))
            line = c.git(clone, "rev-list", "--first-parent", "HEAD").splitlines()
            if len(line) <= args.back:
                print(f"skip {name}: only {len(line)} first-parent commits")
                continue
            past = line[args.back]
            c.git(clone, "checkout", "-q", "--detach", past)
            plan_file = root / f"{name}.yaml"
            run = c.timed([str(Path(sys.executable).parent / "work-clusters"), "suggest", "--repo", str(clone),
                           "--clusters", "3", "-o", str(plan_file)], c.clean_env(root / "home"), root)
            c.check(run, f"suggest on {name}")
            plan = yaml.safe_load(plan_file.read_text())
            clusters = [(cl["name"], PathSet(cl["paths"])) for cl in plan["clusters"]]
            log = c.git(clone, "log", "--reverse", "--no-merges", "--name-only", "--format=%x01",
                        f"{past}..{line[0]}")
            commits = [[f for f in chunk.split("\n") if f.strip()] for chunk in log.split("\x01")[1:]]
            commits = [files for files in commits if 0 < len(files) < HUGE][: args.window]
            by_plan = crossing(commits, lambda f, cl=clusters: next((n for n, p in cl if p.matches(f)), None))
            by_folder = crossing(commits, lambda f: f.split("/", 1)[0] if "/" in f else None)
            share = {k: (v[1] / v[0] if v[0] else 0.0) for k, v in (("plan", by_plan), ("folders", by_folder))}
            results[name] = {"past": past, "commits": len(commits), "plan": by_plan, "folders": by_folder,
                             "share": share, "clusters": {n: cl["paths"] for n, cl in
                                                          zip([x for x, _ in clusters], plan["clusters"],
                                                              strict=True)}}
            tracked = c.git(clone, "ls-tree", "-r", "--name-only", past).splitlines()
            sizes = sorted((sum(p.matches(f) for f in tracked) for _, p in clusters), reverse=True)
            results[name]["cluster_files"] = sizes
            rows.append((f"  {name}: files per suggested cluster", " / ".join(map(str, sizes)), "-", "-"))
            rows.append((f"{name}: commits crossing a boundary, suggested 3 clusters",
                         f"{share['plan']:.0%} ({by_plan[1]} of {by_plan[0]})",
                         f"<= top-level folders ({share['folders']:.0%}, {by_folder[1]} of {by_folder[0]})",
                         "met" if share["plan"] <= share["folders"] else "NOT met"))
    c.emit("suggest-history", results, rows, args.out)


if __name__ == "__main__":
    main()
