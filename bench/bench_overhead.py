"""Overhead: `work-clusters run` against the hand-rolled loop (bench/baseline.sh) doing the same work.

A repo of --files files, a plan of --clusters clusters whose agents write one file and exit.
Each round runs, in a fresh copy of the repo each: baseline.sh (full checkouts), then
`work-clusters run` with full checkouts, then with sparse ones, in Prefect's default local mode
(a temporary server per process); the figures are medians over --rounds rounds. Then the same
two runs against an already running `prefect server start` (skip with --no-server, or point
every Prefect run at a server of your own with --api-url).

Also measured, to say where the time goes: the temporary server's start, Prefect's floor (a
Python process running a flow with one task, in both modes), the first run on a fresh
PREFECT_HOME (the database is created then), and each run's phases from report.json.

    python bench/bench_overhead.py --out overhead.json
    python bench/bench_overhead.py --files 50 --clusters 2 --rounds 1 --no-server   # smoke
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402

TARGET_FULL = 1.2
TARGET_SPARSE = 0.6


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
                 baseline_env: dict[str, str] | None = None, clusters: int = 0) -> dict[str, Any]:
    """``rounds`` interleaved rounds (baseline when asked, full, sparse); medians of each."""
    walls: dict[str, list[float]] = {"baseline": [], "full": [], "sparse": []}
    phases: dict[str, list[dict[str, float]]] = {"full": [], "sparse": []}
    for n in range(rounds):
        if baseline_env is not None:
            walls["baseline"].append(run_baseline(root, base, baseline_env, clusters, f"{label}-base-{n}"))
        for mode, plan in plans.items():
            wall, ph = run_tool(root, base, env, plan, f"{label}-{mode}-{n}")
            walls[mode].append(wall)
            phases[mode].append(ph)
    out: dict[str, Any] = {k: {"median": round(c.median(v), 3), "runs": v} for k, v in walls.items() if v}
    for mode in plans:
        out[mode]["phases"] = median_phases(phases[mode])
        out[mode]["outside_phases"] = round(out[mode]["median"] - sum(out[mode]["phases"].values()), 3)
    return out


def main() -> None:
    parser = c.base_parser(__doc__.splitlines()[0], files=2000, clusters=8)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (baseline, full, sparse); medians reported")
    parser.add_argument("--no-server", action="store_true", help="skip the runs against a running Prefect server")
    parser.add_argument("--api-url", help="run every Prefect run against this server instead (smoke tests)")
    args = parser.parse_args()

    with c.workdir("overhead", args.keep) as root:
        base = root / "base"
        made = c.make_repo(base, args.files, args.clusters)
        plans = {mode: c.write_plan(root / f"bench-{mode}.yaml", "bench", args.clusters, checkout=mode,
                                    concurrency=args.clusters) for mode in ("full", "sparse")}
        home = root / "prefect-home"
        home.mkdir()
        local_env = c.clean_env(home, args.api_url)
        results: dict[str, Any] = {"files": args.files, "clusters": args.clusters, "rounds": args.rounds,
                                   "repo_made_in": made, "mode": "given server" if args.api_url else "local"}

        if not args.api_url:
            # The first run on a fresh PREFECT_HOME creates the database: measured, then not counted.
            results["first_run_fresh_home"], _ = run_tool(root, base, local_env, plans["full"], "first")
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
            server = c.start_server(server_home, root / "server.log")
            try:
                server_env = c.clean_env(home, server.api_url)
                run_tool(root, base, server_env, plans["full"], "server-warmup")
                server_runs = measure_mode(root, base, server_env, plans, args.rounds, "server",
                                           baseline_env=local_env, clusters=args.clusters)
                results["floor_server"] = floor(server_env, root)
            finally:
                c.stop_server(server)
            results["server"] = server_runs
            results["server_started_in"] = server.started_in

    local = results["local"]
    ratio_full = round(local["full"]["median"] / baseline, 2)
    ratio_sparse = round(local["sparse"]["median"] / baseline, 2)
    results["ratios"] = {"local_full": ratio_full, "local_sparse": ratio_sparse}
    mode = "given server" if args.api_url else "local mode"
    rows = [
        ("baseline.sh wall (s)", f"{baseline:.2f}", "-", "-"),
        (f"full checkout, {mode} (s)", f"{local['full']['median']:.2f}", "-", "-"),
        (f"full / baseline, {mode}", f"{ratio_full:.2f}x", f"<= {TARGET_FULL}x", c.verdict(ratio_full, TARGET_FULL)),
        (f"sparse checkout, {mode} (s)", f"{local['sparse']['median']:.2f}", "-", "-"),
        (f"sparse / baseline, {mode}", f"{ratio_sparse:.2f}x", f"<= {TARGET_SPARSE}x",
         c.verdict(ratio_sparse, TARGET_SPARSE)),
        ("  full: in phases / outside (s)", f"{sum(local['full']['phases'].values()):.2f} / "
                                            f"{local['full']['outside_phases']:.2f}", "-", "-"),
        ("  sparse: in phases / outside (s)", f"{sum(local['sparse']['phases'].values()):.2f} / "
                                              f"{local['sparse']['outside_phases']:.2f}", "-", "-"),
        (f"Prefect floor: 1-task flow, {mode} (s)", f"{results['floor_local']['wall']:.2f}", "-", "-"),
    ]
    if "first_run_fresh_home" in results:
        rows.append(("first run on a fresh PREFECT_HOME (s)", f"{results['first_run_fresh_home']:.2f}", "-", "-"))
    if "server_start" in results:
        rows.append(("temporary server start (s)", f"{results['server_start']['server_start']:.2f}", "-", "-"))
    if server_runs:
        sf, ss = server_runs["full"]["median"], server_runs["sparse"]["median"]
        sb = server_runs["baseline"]["median"]  # the baseline again, in the same rounds
        results["ratios"].update(server_full=round(sf / sb, 2), server_sparse=round(ss / sb, 2))
        rows += [
            ("full / baseline, running server", f"{sf / sb:.2f}x ({sf:.2f} / {sb:.2f} s)", f"<= {TARGET_FULL}x",
             c.verdict(sf / sb, TARGET_FULL)),
            ("sparse / baseline, running server", f"{ss / sb:.2f}x ({ss:.2f} / {sb:.2f} s)", f"<= {TARGET_SPARSE}x",
             c.verdict(ss / sb, TARGET_SPARSE)),
            ("Prefect floor, running server (s)", f"{results['floor_server']['wall']:.2f}", "-", "-"),
        ]
    c.emit(f"overhead: {args.clusters} clusters, {args.files:,} files", results, rows, args.out)


if __name__ == "__main__":
    main()
