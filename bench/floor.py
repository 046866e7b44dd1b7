"""Prefect's own floor, run as a user's script would be: a fresh Python process that runs a flow
with one task and exits; and where the local mode's start-up goes (issue 16, target 4).

One process, one JSON line (what bench_overhead.py and bench_resume.py call):

    python bench/floor.py                  # {"import": s, "flow": s}: Prefect's local mode, or PREFECT_API_URL's server
    python bench/floor.py --server-start   # {"import": s, "server_start": s, "server_stop": s}
    python bench/floor.py --early          # the flow as the CLI runs it now: its temporary server booted
                                           #   ahead as the process starts (flows/startup.py)
    python bench/floor.py --server-import  # {"import": s, "server_import": s}: importing Prefect's server
                                           #   package into the flow's process, as Prefect's local mode does

The breakdown (``--out FILE``, or ``--breakdown`` to print it only): each of those in a fresh
process, --rounds rounds interleaved (medians), on one Prefect home that a first run created
(timed: a fresh home migrates its database), then against a running ``prefect server start``; and
``work-clusters run`` of a two-cluster plan whose agents each write one file, in both modes. Each
process's wall is split into importing Prefect, the flow call (in the local mode: starting the
temporary server, then the flow and its task run, and the ~1 s join of the flow's heartbeat
thread) and the rest (the interpreter's start and exit, stopping the temporary server).

    python bench/floor.py --out bench/results/startup.json
    python bench/floor.py --breakdown --rounds 1 --no-cli   # smoke
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

t0 = time.monotonic()
ONE_PROCESS = ("--server-start", "--early", "--server-import")


def _say(t1: float, **parts: float) -> None:
    print(json.dumps({"import": round(t1 - t0, 3), **{k: round(v, 3) for k, v in parts.items()}}), flush=True)


if sys.argv[1:2] == ["--server-start"]:
    from prefect.server.api.server import SubprocessASGIServer

    t1 = time.monotonic()
    server = SubprocessASGIServer()
    server.start()
    t2 = time.monotonic()
    server.stop()
    _say(t1, server_start=t2 - t1, server_stop=time.monotonic() - t2)
    sys.exit(0)

if sys.argv[1:2] == ["--early"]:
    # What the CLI now does: the server booted ahead as the process starts, before Prefect is
    # imported, and given its port before the flow's modules load.
    from prefect_work_clusters.flows.startup import boot_ahead, patient_server, start_server

    boot_ahead(["run"])
    start_server()

if len(sys.argv) == 1 or sys.argv[1] in ONE_PROCESS:
    from prefect import flow, task

    t1 = time.monotonic()
    if sys.argv[1:2] == ["--server-import"]:
        import prefect.server.api.server  # noqa: F401 - the import is what is timed

        _say(t1, server_import=time.monotonic() - t1)
        sys.exit(0)

    @task
    def one() -> int:
        return 1

    @flow(name="floor")
    def floor() -> int:
        return one()

    if sys.argv[1:2] == ["--early"]:
        with patient_server():
            floor()
    else:
        floor()
    _say(t1, flow=time.monotonic() - t1)
    sys.exit(0)

# -- the breakdown: this script's other modes, each in a process of its own --------------------

from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402
import server as benchserver  # noqa: E402
from bench_overhead import floor as floor_of  # noqa: E402

from prefect_work_clusters.flows.server_process import SETTING  # noqa: E402
from prefect_work_clusters.flows.startup import PATIENT_SECONDS  # noqa: E402

TARGET_GAIN = 1.0  # s: the early start must save at least this much of the local mode's floor


def _cli(env: dict[str, str], root: Path, plan: Path, repo: Path) -> float:
    res = c.timed(c.work_clusters_argv(plan, repo, "--rerun"), env, root)
    c.check(res, "work-clusters run")
    return res.seconds


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(c.median([r[key] for r in runs]), 3) for key in runs[0]}


def main() -> None:
    parser = c.base_parser("Where the local mode's start-up goes.", files=20, clusters=2)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every process (medians reported)")
    parser.add_argument("--breakdown", action="store_true", help="print the breakdown without --out")
    parser.add_argument("--no-cli", action="store_true", help="skip the work-clusters runs")
    parser.add_argument("--no-server", action="store_true", help="skip the running server's figures")
    args = parser.parse_args()
    with c.workdir("floor", args.keep) as root:
        home = root / "home"
        # Prefect's own 20 s wait fails on a fresh home on a loaded machine (PITFALLS); the CLI
        # waits 240 s unless told otherwise, so both modes are given that here.
        env = {**c.clean_env(home), SETTING: str(PATIENT_SECONDS)}
        results: dict[str, Any] = {"rounds": args.rounds, "clusters": args.clusters}
        results["fresh_home"] = floor_of(env, root)  # creates and migrates the database
        results["fresh_home_early"] = floor_of({**env, "PREFECT_HOME": str(root / "home2")}, root, "--early")
        plan = repo = None
        if not args.no_cli:
            repo = root / "repo"
            c.make_repo(repo, args.files, args.clusters)
            plan = c.write_plan(root / "plan.yaml", "floor", args.clusters)
            _cli(env, root, plan, repo)  # the first run creates worktrees and branches
        modes = {"prefect": (), "early": ("--early",), "server_import": ("--server-import",),
                 "server_start": ("--server-start",)}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in modes}
        cli_runs: list[float] = []
        for _ in range(args.rounds):
            for name, extra in modes.items():
                runs[name].append(floor_of(env, root, *extra))
            if plan and repo:
                cli_runs.append(_cli(env, root, plan, repo))
        results.update({name: _medians(r) for name, r in runs.items()})
        if cli_runs:
            results["cli_local"] = round(c.median(cli_runs), 3)
        if not args.no_server:
            server_home = root / "server-home"
            server_home.mkdir()
            server = benchserver.start_server(server_home, root / "server.log")
            try:
                server_env = {**env, "PREFECT_API_URL": server.api_url}
                results["running_server"] = _medians([floor_of(server_env, root) for _ in range(args.rounds)])
                if plan and repo:
                    results["cli_server"] = round(c.median([_cli(server_env, root, plan, repo)
                                                            for _ in range(args.rounds)]), 3)
            finally:
                benchserver.stop_server(server)
    c.emit("startup: local mode", results, rows(results), args.out)


def rows(r: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    prefect, early = r["prefect"], r["early"]
    gain = prefect["wall"] - early["wall"]

    def split(p: dict[str, float]) -> str:
        return f"{p['import']:.2f} / {p['flow']:.2f} / {p['wall'] - p['import'] - p['flow']:.2f}"

    out = [
        ("1-task flow, Prefect's local mode (s)", f"{prefect['wall']:.2f}", "-", "-"),
        ("  import / flow call / the rest (s)", split(prefect), "-", "-"),
        ("1-task flow, its server started first, as the CLI now does (s)", f"{early['wall']:.2f}", "-", "-"),
        ("  import / flow call / the rest (s)", split(early), "-", "-"),
        ("saved by starting the server first (s)", f"{gain:.2f}", f">= {TARGET_GAIN:g}",
         c.verdict(-gain, -TARGET_GAIN)),
        ("Prefect's server package imported into the flow's process, as its local mode does (s)",
         f"{r['server_import']['server_import']:.2f}", "-", "-"),
        ("temporary server start alone (s)", f"{r['server_start']['server_start']:.2f}", "-", "-"),
        ("first 1-task flow on a fresh PREFECT_HOME, Prefect's / ours (s)",
         f"{r['fresh_home']['wall']:.2f} / {r['fresh_home_early']['wall']:.2f}", "-", "-"),
    ]
    if "running_server" in r:
        out.append(("1-task flow, running server (s)", f"{r['running_server']['wall']:.2f}", "-", "-"))
    for key, mode in (("cli_local", "local mode"), ("cli_server", "running server")):
        if key in r:
            out.append((f"work-clusters run, {r['clusters']} clusters, {mode} (s)", f"{r[key]:.2f}", "-", "-"))
    return out


if __name__ == "__main__":
    main()
