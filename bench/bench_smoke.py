"""The bench smoke tests' share of the suite (issue 16, target 6): every benchmark script run end to
end at a tiny size by the tests (tests/test_bench_smoke.py, tests/test_issue_benches.py), in one
pytest process with no workers, its test calls timed by pytest itself (JUnit XML, call phase only).

The target is the test calls together; the Prefect test server those tests share with the whole
suite starts once per test session whatever runs, and is reported beside them.

    python bench/bench_smoke.py --out smoke.json
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from common import ROOT, emit, verdict

TARGET_S = 60.0
FILES = ["tests/test_bench_smoke.py", "tests/test_issue_benches.py"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wc-bench-smoke-") as tmp:
        report = Path(tmp) / "junit.xml"
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                              f"--junitxml={report}", "-o", "junit_duration_report=call", *FILES],
                             cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.monotonic() - t0
        if res.returncode != 0:
            raise SystemExit(f"the smoke tests failed (exit {res.returncode}):\n"
                             f"{res.stdout[-4000:]}{res.stderr[-2000:]}")
        cases = [(f"{c.get('classname', '')}::{c.get('name', '')}", float(c.get("time", 0.0)))
                 for c in ET.parse(report).getroot().iter("testcase")]
    calls = sum(seconds for _, seconds in cases)
    slowest = sorted(cases, key=lambda case: -case[1])[:3]
    results = {"tests": len(cases), "calls_s": round(calls, 2), "pytest_wall_s": round(wall, 2),
               "per_test_s": {name: round(seconds, 2) for name, seconds in cases}}
    rows = [
        (f"bench smoke tests: their {len(cases)} test calls together (s)", f"{calls:.1f}", f"<= {TARGET_S:g}",
         verdict(calls, TARGET_S)),
        ("  pytest's whole wall, with the test server the suite shares (s)", f"{wall:.1f}", "-", "-"),
        *[(f"  {name.rsplit('.', 1)[-1]} (s)", f"{seconds:.1f}", "-", "-") for name, seconds in slowest],
    ]
    emit("bench smoke tests", results, rows, args.out)


if __name__ == "__main__":
    main()
