"""Suggest: `work-clusters suggest` on real code finishes in seconds and writes a plan that validates.

The tree is the installed prefect package's own source (about 1,600 files), committed as a
repository; the figure is the wall time of the whole `work-clusters suggest -o plan.yaml` process
(imports, grimp's graph, history, grouping, validation), median of --rounds. Target: under 10 s.

    python bench/bench_suggest.py --out suggest.json
    python bench/bench_suggest.py --rounds 1      # smoke
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402

TARGET_SECONDS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    import prefect

    with c.workdir("suggest", args.keep) as root:
        repo = root / "prefect-src"
        shutil.copytree(Path(prefect.__file__).parent, repo / "prefect", ignore=shutil.ignore_patterns("__pycache__"))
        c.git(repo.parent, "init", "-q", str(repo))
        c.git(repo, "add", "-A")
        c.git(repo, "commit", "-qm", "prefect's source")
        files = len(c.git(repo, "ls-files").splitlines())
        env = c.clean_env(root / "home")
        seconds: list[float] = []
        for n in range(args.rounds):
            plan = root / f"plan-{n}.yaml"
            run = c.timed([str(Path(sys.executable).parent / "work-clusters"), "suggest", "--repo", str(repo),
                           "-o", str(plan)], env, root)
            c.check(run, "work-clusters suggest")
            seconds.append(run.seconds)
        text = plan.read_text()
    median = c.median(seconds)
    clusters = text.count("\n- name: ")
    verdict_line = next((line[2:] for line in text.splitlines() if "fit" in line and line.startswith("# ")), "-")
    results: dict[str, Any] = {"files": files, "runs": seconds, "median": median, "clusters": clusters,
                               "verdict": verdict_line}
    rows = [
        ("suggest on prefect's source, wall (s)", f"{median:.2f} ({files} files)", f"< {TARGET_SECONDS:g}",
         c.verdict(median, TARGET_SECONDS)),
        ("clusters proposed / fit", f"{clusters} / {verdict_line}", "-", "-"),
    ]
    c.emit("suggest", results, rows, args.out)


if __name__ == "__main__":
    main()
