"""Git processes per agent attempt (issue 16, target 2): ``run_attempt`` in this process, with a
counter around ``tasks.git.core.run`` (every git process of the project starts there).

A repo of --files files, a plan of --clusters clusters whose agent (bench/agent.sh) writes one
file and exits; the worktrees are made first (not counted), then each cluster's first attempt
runs one after another, with a verify command, so the whole attempt path is taken: the
containment window, the guard, our commit of the agent's leftovers, verify, the contract check,
the finished commit. Printed: git calls per attempt (by subcommand) and seconds per attempt.

    python bench/bench_attempt_calls.py --files 200 --clusters 4
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402

from prefect_work_clusters.tasks.agents.attempt import run_attempt  # noqa: E402
from prefect_work_clusters.tasks.git import core as gitops  # noqa: E402
from prefect_work_clusters.tasks.options import RunOptions  # noqa: E402
from prefect_work_clusters.tasks.resolve import resolve_run  # noqa: E402
from prefect_work_clusters.tasks.worktrees import prepare  # noqa: E402


def count_calls() -> collections.Counter[str]:
    """Wrap the one git runner: each call tallied by its subcommand (module lookups reach it)."""
    tally: collections.Counter[str] = collections.Counter()
    inner = gitops.run

    def counted(cwd: Path, *args: str, **kw: Any) -> gitops.Result:
        tally[next((a for a in args if not a.startswith("-")), "?")] += 1
        return inner(cwd, *args, **kw)

    gitops.run = counted  # type: ignore[assignment]
    return tally


def main() -> None:
    parser = c.base_parser("git processes and seconds per agent attempt", files=200, clusters=4)
    args = parser.parse_args()
    with c.workdir("wc-bench-calls-", args.keep) as root:
        repo = root / "repo"
        c.make_repo(repo, args.files, args.clusters)
        plan = c.write_plan(root / "plan.yaml", "calls", args.clusters)
        plan.write_text(plan.read_text().replace("tasks: [", "verify: [\"true\"]\n    tasks: ["))
        ctx = resolve_run(plan, repo, RunOptions(agent_cmd=c.agent_cmd(), workspace=str(root / "ws")))
        prepare(ctx)
        tally = count_calls()
        start = time.monotonic()
        for name in c.cluster_names(args.clusters):
            record = run_attempt(ctx, name, 1)
            assert record.status == "succeeded", record
        seconds = (time.monotonic() - start) / args.clusters
        calls = sum(tally.values()) / args.clusters
        results = {"files": args.files, "clusters": args.clusters, "git_calls_per_attempt": calls,
                   "seconds_per_attempt": round(seconds, 3),
                   "by_subcommand": {k: v / args.clusters for k, v in tally.most_common()}}
        rows = [("git calls per attempt", f"{calls:g}", "-", "measured"),
                ("seconds per attempt", f"{seconds:.3f}", "-", "measured")]
        c.emit("attempt_calls", results, rows, args.out)
        print(" ".join(f"{k}={v:g}" for k, v in results["by_subcommand"].items()))


if __name__ == "__main__":
    main()
