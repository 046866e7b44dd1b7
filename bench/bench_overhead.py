"""Overhead: `work-clusters run` against the hand-rolled loop (bench/baseline.sh) doing the same work.

A repo of --files files, a plan of --clusters clusters whose agents sleep --sleep seconds, write
one file and exit. Each round runs, in a fresh copy of the repo each: baseline.sh (full
checkouts, the same sleeping agents in parallel), then `work-clusters run` with each of --modes
(full and sparse checkouts), in Prefect's default local mode (a temporary server per process);
the figures are medians over --rounds rounds. Then the same runs against an already running
`prefect server start` (skip with --no-server, or point every Prefect run at a server of your
own with --api-url).

The target (issue 16): the overhead above the critical path, the run's wall minus the
baseline's (which holds the agents' sleep and the same git work done by hand), at most
Prefect's floor + 0.5 s, against a running server; local mode is reported beside it. Each
round's run is paired with that round's baseline, and against a running server the floor is
measured in every round too; the figures are the medians.

Also measured, to say where the time goes: the temporary server's start, Prefect's floor (a
Python process running a flow with one task, in both modes), the first run on a fresh
PREFECT_HOME (the database is created then), and each run's phases from report.json.

    python bench/bench_overhead.py --out overhead.json
    python bench/bench_overhead.py --files 50 --clusters 2 --rounds 1 --sleep 0 --modes sparse --no-server  # smoke
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402
import server as benchserver  # noqa: E402

# Issue 16: above the critical path (the slowest agent, then the git work), a run costs at most
# Prefect's own floor (a process running a one-task flow) and this much more.
SLACK = 0.5


def fresh_copy(base: Path, dest: Path) -> Path:
    shutil.copytree(base, dest, symlinks=True)
    return dest


def run_baseline(root: Path, base: Path, env: dict[str, str], clusters: int, tag: str) -> float:
    repo = fresh_copy(base, root / f"repo-{tag}")
    res = c.timed(["bash", str(c.BASELINE), str(repo), str(root / f"ws-{tag}"), str(c.AGENT),
                   *c.cluster_names(clusters)], env, root)
    c.check(res, "baseline.sh")
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(root / f"ws-{tag}", ignore_errors=True)
    return res.seconds


def run_tool(root: Path, base: Path, env: dict[str, str], plan: Path, tag: str) -> tuple[float, dict[str, float]]:
    """One `work-clusters run`: its wall time and its phases."""
    repo = fresh_copy(base, root / f"repo-{tag}")
    ws = root / f"ws-{tag}"
    res = c.timed(c.work_clusters_argv(plan, repo, "--workspace", str(ws), "--no-keep-worktrees"), env, root)
    c.check(res, f"work-clusters run ({tag})")
    phases: dict[str, float] = c.report(ws)["phases"]
    shutil.rmtree(repo, ignore_errors=True)
    shutil.rmtree(ws, ignore_errors=True)
    return res.seconds, phases


def floor(env: dict[str, str], root: Path, *args: str) -> dict[str, float]:
    res = c.timed([sys.executable, str(c.BENCH / "floor.py"), *args], env, root)
    c.check(res, "floor.py")
    line = next(x for x in reversed(res.output.splitlines()) if x.startswith('{"import"'))
    data: dict[str, float] = json.loads(line)
    data["wall"] = res.seconds
    return data


def median_phases(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(c.median([r.get(k, 0.0) for r in runs]), 3) for k in runs[0]}


def measure_mode(root: Path, base: Path, env: dict[str, str], plans: dict[str, Path], rounds: int, label: str,
                 baseline_env: dict[str, str] | None = None, clusters: int = 0,
                 floors: bool = False) -> dict[str, Any]:
    """``rounds`` interleaved rounds (baseline when asked, full, sparse, and Prefect's floor with
    ``floors``); medians of each, and of each round's run minus that round's baseline: one slow
    moment (a 2 s retry of Prefect's SQLite server, the disk after a deletion) then moves one
    pair, not the verdict."""
    walls: dict[str, list[float]] = {"baseline": [], "full": [], "sparse": [], "floor": []}
    phases: dict[str, list[dict[str, float]]] = {"full": [], "sparse": []}
    for n in range(rounds):
        if baseline_env is not None:
            walls["baseline"].append(run_baseline(root, base, baseline_env, clusters, f"{label}-base-{n}"))
        for mode, plan in plans.items():
            wall, ph = run_tool(root, base, env, plan, f"{label}-{mode}-{n}")
            walls[mode].append(wall)
            phases[mode].append(ph)
        if floors:
            walls["floor"].append(floor(env, root)["wall"])
    out: dict[str, Any] = {k: {"median": round(c.median(v), 3), "runs": v} for k, v in walls.items() if v}
    for mode in plans:
        out[mode]["phases"] = median_phases(phases[mode])
        out[mode]["outside_phases"] = round(out[mode]["median"] - sum(out[mode]["phases"].values()), 3)
        if walls["baseline"]:
            out[mode]["over_paired"] = round(c.median([w - b for w, b in zip(walls[mode], walls["baseline"],
                                                                            strict=True)]), 3)
    return out


def main() -> None:
    parser = c.base_parser(__doc__.splitlines()[0], files=2000, clusters=8)
    parser.add_argument("--sleep", type=float, default=3.0, help="seconds each agent sleeps first (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (baseline, full, sparse); medians reported")
    parser.add_argument("--no-server", action="store_true", help="skip the runs against a running Prefect server")
    parser.add_argument("--api-url", help="run every Prefect run against this server instead (smoke tests)")
    parser.add_argument("--modes", default="full,sparse",
                        help="checkouts to run, comma-separated (default full,sparse; the smoke test runs one)")
    args = parser.parse_args()

    with c.workdir("overhead", args.keep) as root:
        base = root / "base"
        made = c.make_repo(base, args.files, args.clusters)
        plans = {mode: c.write_plan(root / f"bench-{mode}.yaml", "bench", args.clusters, checkout=mode,
                                    concurrency=args.clusters) for mode in args.modes.split(",")}
        home = root / "prefect-home"
        home.mkdir()
        local_env = c.clean_env(home, args.api_url)
        local_env["BENCH_AGENT_SLEEP"] = f"{args.sleep:g}"
        results: dict[str, Any] = {"files": args.files, "clusters": args.clusters, "rounds": args.rounds,
                                   "agent_sleep": args.sleep,
                                   "repo_made_in": made, "mode": "given server" if args.api_url else "local"}

        if not args.api_url:
            # The first run on a fresh PREFECT_HOME creates the database: measured, then not counted.
            results["first_run_fresh_home"], _ = run_tool(root, base, local_env, next(iter(plans.values())), "first")
        results["local"] = measure_mode(root, base, local_env, plans, args.rounds, "local",
                                        baseline_env=local_env, clusters=args.clusters)
        baseline = results["local"]["baseline"]["median"]
        results["floor_local"] = floor(local_env, root)
        if not args.api_url:
            results["server_start"] = floor(local_env, root, "--server-start")

        server_runs: dict[str, Any] | None = None
        if not args.no_server and not args.api_url:
            server_home = root / "server-home"
            server_home.mkdir()
            server = benchserver.start_server(server_home, root / "server.log")
            try:
                server_env = {**c.clean_env(home, server.api_url), "BENCH_AGENT_SLEEP": f"{args.sleep:g}"}
                run_tool(root, base, server_env, next(iter(plans.values())), "server-warmup")
                server_runs = measure_mode(root, base, server_env, plans, args.rounds, "server",
                                           baseline_env=local_env, clusters=args.clusters, floors=True)
                results["floor_server"] = {"wall": server_runs["floor"]["median"], "runs": server_runs["floor"]["runs"]}
            finally:
                benchserver.stop_server(server)
            results["server"] = server_runs
            results["server_started_in"] = server.started_in

    local = results["local"]
    baseline = local["baseline"]["median"]
    mode = "given server" if args.api_url else "local mode"
    rows: list[tuple[str, str, str, str]] = [("baseline.sh wall (s)", f"{baseline:.2f}", "-", "-")]
    results["over_critical_path"] = {}

    def over_rows(runs: dict[str, Any], label: str, floor_wall: float) -> None:
        """Per checkout: the wall, and the overhead above the critical path (the agents' sleep and
        the same git work by hand are in the baseline) against Prefect's floor + 0.5 s."""
        for name in plans:
            wall = runs[name]["median"]
            over = runs[name]["over_paired"]
            results["over_critical_path"][f"{label}_{name}"] = over
            rows.extend([
                (f"{name} checkout, {label} (s)", f"{wall:.2f}", "-", "-"),
                (f"{name}: wall - baseline, {label} (s; median of the rounds' pairs)", f"{over:.2f}",
                 f"<= floor + {SLACK:g} = {floor_wall + SLACK:.2f}", c.verdict(over, floor_wall + SLACK)),
                (f"  {name}: in phases / outside (s)", f"{sum(runs[name]['phases'].values()):.2f} / "
                                                       f"{runs[name]['outside_phases']:.2f}", "-", "-"),
            ])

    over_rows(local, mode, results["floor_local"]["wall"])
    floor_parts = results["floor_local"]
    rows.append((f"Prefect floor: 1-task flow, {mode} (s)", f"{floor_parts['wall']:.2f}", "-", "-"))
    rows.append(("  of it: import prefect / the flow / the rest (s)",
                 f"{floor_parts['import']:.2f} / {floor_parts['flow']:.2f} / "
                 f"{floor_parts['wall'] - floor_parts['import'] - floor_parts['flow']:.2f}", "-", "-"))
    if "first_run_fresh_home" in results:
        rows.append(("first run on a fresh PREFECT_HOME (s)", f"{results['first_run_fresh_home']:.2f}", "-", "-"))
    if "server_start" in results:
        rows.append(("temporary server start (s)", f"{results['server_start']['server_start']:.2f}", "-", "-"))
    if server_runs:
        over_rows(server_runs, "running server", results["floor_server"]["wall"])
        rows.append((f"Prefect floor, running server (s; median of {args.rounds}, one per round)",
                     f"{results['floor_server']['wall']:.2f}", "-", "-"))
    c.emit(f"overhead: {args.clusters} clusters, {args.files:,} files", results, rows, args.out)


if __name__ == "__main__":
    main()
