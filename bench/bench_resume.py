"""Resume: running a finished plan again re-runs nothing, and costs little over Prefect's floor.

A plan of --clusters clusters on a --files-file repo is run once to the end. Then, --rounds
times, interleaved: the same `work-clusters run` again (every cluster must be reported
resumed and no agent may start: the agents log each start to a file), and Prefect's own floor
run the same way (a fresh Python process running a flow with one task, bench/floor.py). The
target: the resumed run's median wall time at most 3 s over the floor's median.

    python bench/bench_resume.py --out resume.json
    python bench/bench_resume.py --files 50 --clusters 2 --rounds 1 --no-floor --api-url URL   # smoke
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402

TARGET_OVER_FLOOR = 3.0


def main() -> None:
    parser = c.base_parser(__doc__.splitlines()[0], files=2000, clusters=8)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (resumed run, floor); medians reported")
    parser.add_argument("--api-url", help="run against this Prefect server instead of the local mode")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip Prefect's floor runs (the smoke test: overhead's smoke runs floor.py)")
    args = parser.parse_args()

    with c.workdir("resume", args.keep) as root:
        repo = root / "repo"
        c.make_repo(repo, args.files, args.clusters)
        home = root / "prefect-home"
        home.mkdir()
        env = c.clean_env(home, args.api_url)
        agent_log = root / "agents-started.log"
        env["BENCH_AGENT_LOG"] = str(agent_log)
        plan = c.write_plan(root / "resume.yaml", "resume", args.clusters, concurrency=args.clusters)
        ws = root / "ws"
        argv = c.work_clusters_argv(plan, repo, "--workspace", str(ws))

        first = c.timed(argv, env, root)
        c.check(first, "work-clusters run (first)")
        started_first = len(agent_log.read_text().splitlines())
        resumed: list[float] = []
        floors: list[float] = []
        rerun_agents = 0
        not_resumed: list[str] = []
        for _ in range(args.rounds):
            before = len(agent_log.read_text().splitlines())
            again = c.timed(argv, env, root)
            c.check(again, "work-clusters run (again)")
            resumed.append(again.seconds)
            rerun_agents += len(agent_log.read_text().splitlines()) - before
            report = c.report(ws)
            not_resumed += [cl["cluster"] for cl in report["clusters"] if not cl.get("resumed")]
            if not args.no_floor:
                floor = c.timed([sys.executable, str(c.BENCH / "floor.py")], env, root)
                c.check(floor, "floor.py")
                floors.append(floor.seconds)
        phases = report["phases"]

    resumed_median = c.median(resumed)
    floor_median = c.median(floors) if floors else None
    over = resumed_median - floor_median if floor_median is not None else None
    results: dict[str, Any] = {
        "files": args.files, "clusters": args.clusters, "rounds": args.rounds,
        "mode": "given server" if args.api_url else "local", "first_run": first.seconds,
        "agents_in_first_run": started_first, "resumed_runs": resumed, "floor_runs": floors,
        "resumed_median": resumed_median, "floor_median": floor_median,
        "over_floor": None if over is None else round(over, 3),
        "agents_rerun": rerun_agents, "clusters_not_resumed": sorted(set(not_resumed)), "phases_last": phases,
    }
    nothing_rerun = rerun_agents == 0 and not not_resumed
    rows = [
        ("agents started again / clusters not resumed", f"{rerun_agents} / {len(set(not_resumed))}", "0 / 0",
         "met" if nothing_rerun else "NOT met"),
        ("resumed run, wall (s)", f"{resumed_median:.2f}", "-", "-"),
        ("Prefect floor: 1-task flow, same mode (s)", "not measured" if floor_median is None else
         f"{floor_median:.2f}", "-", "-"),
        ("resumed run over the floor (s)", "-" if over is None else f"{over:.2f}", f"<= {TARGET_OVER_FLOOR:g}",
         "-" if over is None else c.verdict(over, TARGET_OVER_FLOOR)),
        ("  phases of the resumed run (s)", json.dumps(phases), "-", "-"),
        ("first run, wall (s)", f"{first.seconds:.2f}", "-", "-"),
    ]
    c.emit("resume", results, rows, args.out)
    if not nothing_rerun:
        sys.exit(1)


if __name__ == "__main__":
    main()
