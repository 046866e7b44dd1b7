"""What every benchmark script shares: a fresh Prefect home, a synthetic repo made with
``git fast-import``, plans, the bench agent, timed runs, a process-tree memory sampler, the file
system's writing pace, and the JSON + table output (a started Prefect server is in ``server``).

Nothing here writes outside the temp dirs the scripts create (and remove).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tree_memory import TreeSampler  # beside this module, on the benchmarks' path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
AGENT = BENCH / "agent.sh"
BASELINE = BENCH / "baseline.sh"
WORK_CLUSTERS = str(Path(sys.executable).with_name("work-clusters"))
PREFECT = str(Path(sys.executable).with_name("prefect"))

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@localhost",
}
# Share of the repo's files that the clusters own (each cluster one folder); the rest lies in
# lib/, which a sparse worktree leaves out, as most of a monorepo is outside any one plan.
OWNED_SHARE = 0.25
FILES_PER_DIR = 100


def base_parser(description: str, files: int, clusters: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--files", type=int, default=files, help=f"files in the repo (default {files})")
    parser.add_argument("--clusters", type=int, default=clusters, help=f"clusters in the plan (default {clusters})")
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (its path is printed)")
    return parser


# -- environment ------------------------------------------------------------------------------


def clean_env(prefect_home: Path, api_url: str | None = None) -> dict[str, str]:
    """The environment of every process a benchmark starts: a private Prefect home, no telemetry,
    a git identity, and no git or Prefect variables leaking in from the caller. Everything else
    is Prefect's default (log level, logs sent to the API), as a user would run it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PREFECT_"))}
    env.update(GIT_IDENTITY)
    env.update({
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    })
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


@contextlib.contextmanager
def workdir(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A temp dir for one benchmark, removed at the end (kept and printed with ``keep``); moved
    into ``$BENCH_TRASH`` instead when that is set (``run_all.sh`` empties it after the last
    benchmark). On this machine's ext4, which has no journal, files are written up to 3x slower for
    minutes after many were deleted: the 100-cluster local run measured after the running-server
    one had removed its 100,000-file folder took 40.4 s, 10.8 s of it making worktrees (3.8 s on a
    quiet disk), so one benchmark's cleanup must not be timed in the next one."""
    path = Path(tempfile.mkdtemp(prefix=f"wc-bench-{prefix}-"))
    try:
        yield path
    finally:
        trash = os.environ.get("BENCH_TRASH")
        if keep:
            print(f"kept {path}", file=sys.stderr)
        elif trash:
            path.rename(Path(trash) / path.name)
        else:
            shutil.rmtree(path, ignore_errors=True)


def git(cwd: Path, *args: str, env: Mapping[str, str] | None = None, stdin: bytes | None = None) -> str:
    res = subprocess.run(["git", *args], cwd=cwd, env=dict(env) if env is not None else None, input=stdin,
                         capture_output=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout.decode().strip()


# -- the synthetic repo ----------------------------------------------------------------------


def cluster_names(count: int) -> list[str]:
    return [f"c{i:03d}" for i in range(count)]


def layout(files: int, clusters: int) -> list[str]:
    """Repo-relative paths: two top-level files, each cluster's folder ``c<i>/`` with its share of
    ``OWNED_SHARE`` of the files, the rest under ``lib/``; at most ``FILES_PER_DIR`` per folder."""
    top = ["README.md", "pyproject.toml"]
    owned_each = max(1, int(files * OWNED_SHARE) // max(1, clusters))
    paths = list(top)
    for name in cluster_names(clusters):
        paths += [f"{name}/m{n // FILES_PER_DIR:02d}/f{n:04d}.py" for n in range(owned_each)]
    rest = max(0, files - len(paths))
    paths += [f"lib/d{n // FILES_PER_DIR:04d}/f{n:06d}.py" for n in range(rest)]
    return paths


def make_repo(repo: Path, files: int, clusters: int) -> dict[str, float]:
    """A repo of ``files`` files on ``main`` in one commit, written with ``git fast-import``
    (seconds for 100,000 files, where ``git add`` of as many files takes minutes), then checked
    out. Returns how long each part took."""
    env = clean_env(repo.parent / "unused-prefect-home")
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main", env=env)
    t0 = time.monotonic()
    chunks: list[bytes] = [b"commit refs/heads/main\n",
                           b"committer Bench <bench@localhost> 1700000000 +0000\n",
                           b"data 15\nsynthetic repo\n"]
    for n, rel in enumerate(layout(files, clusters)):
        body = f"# {rel}\nVALUE_{n} = {n}\n".encode()
        chunks.append(b"M 100644 inline %s\ndata %d\n%s\n" % (rel.encode(), len(body), body))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=repo, env=env, input=b"".join(chunks), check=True)
    t1 = time.monotonic()
    git(repo, "checkout", "-q", "-f", "main", env=env)
    return {"fast_import": round(t1 - t0, 3), "checkout": round(time.monotonic() - t1, 3)}


def write_plan(path: Path, name: str, clusters: int, *, checkout: str = "full", concurrency: int = 8,
               timeout: float = 300) -> Path:
    """A YAML plan: cluster ``c<i>`` owns ``c<i>/``; no contracts, verify or retries."""
    lines = [f"name: {name}", "goal: benchmark", "clusters:"]
    for c in cluster_names(clusters):
        lines += [f"  - name: {c}", f"    paths: [{c}/]", f"    tasks: [write one file in {c}/]"]
    lines += [f"worktree: {{checkout: {checkout}}}",
              f"limits: {{timeout_seconds: {timeout:g}, retries: 0, concurrency: {concurrency}}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def agent_cmd() -> str:
    return f"sh {AGENT}"


# -- running and measuring -------------------------------------------------------------------


@dataclass
class Timed:
    seconds: float
    returncode: int
    output: str
    peak_rss_mb: float | None = None
    peak_pss_mb: float | None = None
    at_peak: list[tuple[str, float]] = field(default_factory=list)


def writing_pace(folder: Path, files: int) -> float:
    """Seconds to write ``files`` small files under ``folder`` (100 a folder) from Python, now: the
    file system's own pace beside a figure that writes files. On this machine's ext4 (no journal)
    it swings 2.5-11 s for 25,000 files with the files deleted minutes before. They stay until the
    bench's folder goes: deleting them would slow what follows."""
    t0 = time.monotonic()
    for n in range(files):
        sub = folder / f"d{n // 100:04d}"
        if n % 100 == 0:
            sub.mkdir(parents=True)
        (sub / f"f{n % 100:02d}").write_bytes(b"x\n")
    return round(time.monotonic() - t0, 3)


def timed(argv: Sequence[str], env: Mapping[str, str], cwd: Path, *, sample_memory: bool = False,
          timeout: float = 900) -> Timed:
    """Run ``argv`` to the end; its wall time, exit status, output (and peak tree memory).

    The disk is synced first: a run that writes thousands of files must not be throttled by the
    write-back of the files the run before it wrote (or removed), which doubled some timings."""
    os.sync()
    t0 = time.monotonic()
    proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    sampler = TreeSampler(proc.pid) if sample_memory else None
    with sampler or contextlib.nullcontext():
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    seconds = time.monotonic() - t0
    return Timed(round(seconds, 3), proc.returncode, out.decode(errors="replace"),
                 sampler.peak_mb if sampler else None, sampler.peak_pss_mb if sampler else None,
                 sampler.at_peak if sampler else [])


def check(result: Timed, what: str) -> None:
    if result.returncode != 0:
        raise SystemExit(f"{what} failed (exit {result.returncode}):\n{result.output[-4000:]}")


def work_clusters_argv(plan: Path, repo: Path, *extra: str) -> list[str]:
    return [WORK_CLUSTERS, "run", str(plan), "--repo", str(repo), "--agent-cmd", agent_cmd(), *extra]


def report(workspace: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((workspace / ".runs" / "report.json").read_text())
    return data


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# -- results ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """The machine the numbers came from."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = found.group(1).strip() if found else cpu
    ram_gib = 0.0
    with contextlib.suppress(OSError):
        found = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        ram_gib = round(int(found.group(1)) / 2**20, 1) if found else 0.0
    # The installed version without importing Prefect (2-8 s here): most scripts never need it.
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": ram_gib,
            "git": git(ROOT, "--version").removeprefix("git version "),
            "python": platform.python_version(), "prefect": importlib.metadata.version("prefect")}


def verdict(value: float, limit: float) -> str:
    return "met" if value <= limit else "NOT met"


def emit(name: str, results: dict[str, Any], rows: Sequence[tuple[str, str, str, str]], out: Path | None) -> None:
    """Print the table (figure, value, target, verdict) and write the JSON."""
    widths = [max(len(r[i]) for r in [("figure", "value", "target", "verdict"), *rows]) for i in range(4)]
    print(f"\n{name}")
    for row in [("figure", "value", "target", "verdict"), *rows]:
        print("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    # The load when the figures were taken: on a shared machine it says how much to trust them.
    payload = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
               "load": [round(x, 2) for x in os.getloadavg()], **results,
               "table": [dict(zip(("figure", "value", "target", "verdict"), r, strict=True)) for r in rows]}
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(payload, indent=2) + "\n")
