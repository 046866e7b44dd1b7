"""Parallelism: --clusters agents that each sleep --sleep seconds, all allowed at once.

The agents phase of report.json ("phases.agents": from the first agent task's submission to the
last one's result, progress artifact and branch checks included) must stay within one second
of a single agent's sleep: agents run side by side, and what the tool adds per agent is small.

Two runs, each on a fresh PREFECT_HOME in Prefect's local mode: as shipped (the tool creates the
`agents-command` global concurrency limit on first use, with its default slots), and with that
limit created beforehand with --clusters slots (`prefect gcl create agents-command --limit N`,
what tasks/agents/limits.py tells a user to do), so the run's own concurrency is what caps it.

    python bench/bench_parallel.py --out parallel.json
    python bench/bench_parallel.py --clusters 2 --sleep 0.2 --api-url URL --as-shipped-only   # smoke
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402

from prefect_work_clusters.flows.server_process import SETTING  # noqa: E402
from prefect_work_clusters.flows.startup import PATIENT_SECONDS  # noqa: E402


def one_run(root: Path, base: Path, args: Any, label: str, preset_slots: int | None) -> dict[str, Any]:
    home = root / f"prefect-home-{label}"
    home.mkdir()
    env = c.clean_env(home, args.api_url)
    env["BENCH_AGENT_SLEEP"] = f"{args.sleep:g}"
    if preset_slots is not None:
        # Prefect's own command, on a fresh home: its temporary server migrates a new database
        # first, longer than Prefect's default 20 s wait on this machine; given as long as our CLI gives it.
        made = c.timed([c.PREFECT, "global-concurrency-limit", "create", "agents-command", "--limit",
                        str(preset_slots)], {**env, SETTING: str(PATIENT_SECONDS)}, root)
        c.check(made, "prefect gcl create")
    plan = c.write_plan(root / f"parallel-{label}.yaml", "parallel", args.clusters, checkout="sparse",
                        concurrency=args.clusters, timeout=max(60.0, 10 * args.sleep))
    repo = root / f"repo-{label}"
    shutil.copytree(base, repo, symlinks=True)
    ws = root / f"ws-{label}"
    res = c.timed(c.work_clusters_argv(plan, repo, "--workspace", str(ws)), env, root)
    c.check(res, f"work-clusters run ({label})")
    report = c.report(ws)
    durations = [cl["duration"] for cl in report["clusters"]]
    # tasks.agents.limits logs the run's global slots when it got fewer than it wanted or waited for them
    slots = [{"limit": m[0], "slots": int(m[1]), "agents": int(m[2]), "waited": float(m[3])} for m in
             re.findall(r"(agents-[\w-]+): (\d+) slot\(s\) for (\d+) agent\(s\), after ([0-9.]+) s", res.output)]
    return {"wall": res.seconds, "phases": report["phases"], "agents_phase": report["phases"]["agents"],
            "agent_durations": {"min": min(durations), "max": max(durations)},
            "global_slots_logged": slots, "preset_slots": preset_slots}


def main() -> None:
    parser = c.base_parser(__doc__.splitlines()[0], files=200, clusters=16)
    parser.add_argument("--sleep", type=float, default=5.0, help="seconds each agent sleeps (default 5)")
    parser.add_argument("--slack", type=float, default=1.0,
                        help="target: agents phase <= sleep + slack seconds (default 1)")
    parser.add_argument("--api-url", help="run against this Prefect server instead of the local mode")
    parser.add_argument("--as-shipped-only", action="store_true",
                        help="skip the run with the global limit created beforehand (it would change the "
                             "server's agents-command limit)")
    args = parser.parse_args()

    with c.workdir("parallel", args.keep) as root:
        base = root / "base"
        c.make_repo(base, args.files, args.clusters)
        runs = {"as shipped": one_run(root, base, args, "shipped", None)}
        if not args.as_shipped_only:
            runs[f"limit preset to {args.clusters}"] = one_run(root, base, args, "preset", args.clusters)

    target = args.sleep + args.slack
    results: dict[str, Any] = {
        "files": args.files, "clusters": args.clusters, "sleep": args.sleep, "concurrency": args.clusters,
        "mode": "given server" if args.api_url else "local", "target": target, "runs": runs,
    }
    rows = []
    for label, run in runs.items():
        rows += [
            (f"agents phase, {args.clusters} x sleep {args.sleep:g} s, {label} (s)", f"{run['agents_phase']:.2f}",
             f"<= {target:g}", c.verdict(run["agents_phase"], target)),
            ("  one agent's own duration, min-max (s)",
             f"{run['agent_durations']['min']:.2f}-{run['agent_durations']['max']:.2f}", "-", "-"),
            ("  global slots: got / wanted, waited", ", ".join(
                f"{g['slots']} / {g['agents']}, {g['waited']:.1f} s" for g in run["global_slots_logged"])
             or "all, at once", "-", "-"),
            ("  whole run, wall (s)", f"{run['wall']:.2f}", "-", "-"),
        ]
    c.emit("parallel", results, rows, args.out)


if __name__ == "__main__":
    main()
