"""An agent's output against the runner (issue 21): a chatty agent must not be slowed, a huge
line must not blow up memory.

    python bench/bench_output.py [--lines 30000] [--line-bytes 1000] [--big-mb 100] [--out results.json]

Two cases, each through ``run_process`` exactly as an agent attempt calls it, with a log file
and an ``on_line`` that costs what Prefect's logger cost per call when measured (128 s for
30,000 lines: 4.3 ms):

- flood: an agent printing ``--lines`` lines of ``--line-bytes``; its duration under the runner
  against the same agent writing to /dev/null (its own time). Target: at most 1 s more.
- one line: an agent printing ``--big-mb`` MB without a newline, in a fresh process whose peak
  RSS is read from ``getrusage``. Target: 300 MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import emit, verdict, workdir

from prefect_work_clusters.tasks.proc.runner import run_process

LOGGER_SECONDS = 0.0043
FLOOD_TARGET = 1.0
MEMORY_TARGET_MB = 300
FLOOD = "import sys\nfor i in range({n}): sys.stdout.write('%06d ' % i + 'x' * {size} + '\\n')\n"
BIG = "import sys\nchunk = 'y' * (1 << 20)\nfor _ in range({mb}): sys.stdout.write(chunk)\n"


def through_runner(code: str, tmp: Path) -> dict[str, Any]:
    calls = 0

    def logger(text: str) -> None:
        nonlocal calls
        calls += 1
        time.sleep(LOGGER_SECONDS)

    started = time.monotonic()
    result = run_process([sys.executable, "-c", code], cwd=tmp, env={"PATH": "/usr/bin:/bin"}, timeout=600,
                         log_path=tmp / "agent.log", on_line=logger)
    assert result.ok, result.output_tail
    return {"seconds": time.monotonic() - started, "calls": calls, "log_bytes": (tmp / "agent.log").stat().st_size,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def alone(code: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, check=True)
    return time.monotonic() - started


def in_fresh_process(code: str, tmp: Path) -> dict[str, Any]:
    """Run one case in a new interpreter, so its peak RSS is that case's alone."""
    res = subprocess.run([sys.executable, __file__, "--one", code, "--tmp", str(tmp)], capture_output=True,
                         text=True, check=True)
    data: dict[str, Any] = json.loads(res.stdout.strip().splitlines()[-1])
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=30_000)
    parser.add_argument("--line-bytes", type=int, default=1000)
    parser.add_argument("--big-mb", type=int, default=100)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(through_runner(args.one, args.tmp)))
        return
    with workdir("output") as tmp:
        flood = FLOOD.format(n=args.lines, size=args.line_bytes)
        own = min(alone(flood) for _ in range(3))
        (tmp / "flood").mkdir()
        (tmp / "big").mkdir()
        chatty = in_fresh_process(flood, tmp / "flood")
        big = in_fresh_process(BIG.format(mb=args.big_mb), tmp / "big")
    over = chatty["seconds"] - own
    results = {"lines": args.lines, "line_bytes": args.line_bytes, "agent_alone_seconds": own, "flood": chatty,
               "big_mb": args.big_mb, "big": big}
    rows = [
        (f"{args.lines:,} x {args.line_bytes} B lines: runner minus agent alone "
         f"({chatty['seconds']:.2f} - {own:.2f} s)",
         f"{over:.2f} s", f"<= {FLOOD_TARGET:g} s", verdict(over, FLOOD_TARGET)),
        ("  on_line calls (batches)", str(chatty["calls"]), "-", "-"),
        (f"one {args.big_mb} MB line: peak RSS of the runner's process", f"{big['peak_rss_mb']:.0f} MB",
         f"<= {MEMORY_TARGET_MB} MB", verdict(big["peak_rss_mb"], MEMORY_TARGET_MB)),
        (f"  its duration (log file {big['log_bytes'] / 2**20:.0f} MB)", f"{big['seconds']:.2f} s", "-", "-"),
    ]
    emit("agent output: flood and one huge line", results, rows, args.out)


if __name__ == "__main__":
    main()
