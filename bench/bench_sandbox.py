"""What containment costs per agent start (issue 12): the child-subreaper launcher every process
runs under, and the bubblewrap sandbox (``sandbox: {enabled: true}``) on top of it.

    python bench/bench_sandbox.py [--rounds 30] [--out results.json]

Each figure is the median wall time of starting ``/bin/true`` and waiting for it, ``--rounds``
times, in a worktree-like folder: bare (``subprocess.run``), under the launcher alone
(``python -I -S reaper.py``), under ``bwrap`` alone, and through ``run_process`` without and with
the sandbox (the runner's own threads and polling included). Target: the sandbox adds at most
50 ms per agent start (bwrap against bare; the run_process difference is shown too, and is noisier
since it adds two Python-launcher starts' variance).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import base_parser, emit, verdict, workdir

from prefect_work_clusters.tasks.proc.launch import LAUNCH
from prefect_work_clusters.tasks.proc.runner import run_process
from prefect_work_clusters.tasks.proc.sandbox import Sandbox

TARGET_MS = 50.0
TRUE = "/bin/true"


def _median_ms(rounds: int, start: Callable[[], object]) -> float:
    start()  # warm the page cache
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        start()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    parser = base_parser(__doc__ or "", files=0, clusters=0)
    parser.add_argument("--rounds", type=int, default=30, help="starts per figure (default 30)")
    args = parser.parse_args()
    if shutil.which("bwrap") is None:
        sys.exit("bwrap is not on PATH: install bubblewrap (apt-get install bubblewrap)")
    with workdir("sandbox", args.keep) as root:
        wt = root / "wt"
        wt.mkdir()
        env = dict(os.environ)
        box = Sandbox(writable=(wt,))
        report = Path(tempfile.mkstemp(dir=root)[1])
        tmp = root / "tmp"
        tmp.mkdir()
        figures = {
            "bare": lambda: subprocess.run([TRUE], cwd=wt, check=True),
            "launcher": lambda: subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCH, str(report), "5", TRUE, TRUE],
                                               cwd=wt, check=True),
            "bwrap": lambda: subprocess.run(box.argv(TRUE, [TRUE], wt, tmp), cwd=wt, check=True),
            "run_process": lambda: run_process([TRUE], cwd=wt, env=env, timeout=60),
            "run_process_sandbox": lambda: run_process([TRUE], cwd=wt, env=env, timeout=60, sandbox=box),
        }
        ms = {name: _median_ms(args.rounds, start) for name, start in figures.items()}
    added = ms["bwrap"] - ms["bare"]
    rows = [
        ("start of /bin/true, bare (ms, median)", f"{ms['bare']:.1f}", "-", "-"),
        ("under the subreaper launcher alone (ms)", f"{ms['launcher']:.1f}", "-", "-"),
        ("under bwrap alone (ms)", f"{ms['bwrap']:.1f}", "-", "-"),
        ("run_process, launcher included (ms)", f"{ms['run_process']:.1f}", "-", "-"),
        ("run_process with the sandbox (ms)", f"{ms['run_process_sandbox']:.1f}", "-", "-"),
        ("added by the launcher per start (ms)", f"{ms['launcher'] - ms['bare']:.1f}", "-", "-"),
        ("added by the sandbox per agent start (bwrap - bare, ms)", f"{added:.1f}", f"<= {TARGET_MS:.0f}",
         verdict(added, TARGET_MS)),
        ("added by the sandbox through run_process (ms)",
         f"{ms['run_process_sandbox'] - ms['run_process']:.1f}", "-", "-"),
    ]
    emit("sandbox: cost per agent start", {"rounds": args.rounds, "ms": ms, "sandbox_added_ms": added}, rows, args.out)


if __name__ == "__main__":
    main()
