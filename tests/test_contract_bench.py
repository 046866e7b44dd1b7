"""The scope benchmark still runs and still finds its planted faults (tiny sizes; no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_scope.py"


def test_bench_scope_smoke(tmp_path: Path) -> None:
    out = tmp_path / "scope.json"
    res = subprocess.run([sys.executable, str(BENCH), "--files", "300", "--clusters", "4", "--changed", "3",
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "scope check, 4 clusters" in res.stdout
    data = json.loads(out.read_text())
    assert data["files"] >= 300 and data["kept_out"] == ["c003"]
    assert data["outside_found"] == {"c003": ["lib/moved_c003.py", "lib/outside_c003.py"]}
    assert len(data["conformance_problems"]) == 1 and "Got: def get(self, key: int)" in data["conformance_problems"][0]
    assert [p.split(" ")[0] for p in data["independence_problems"]] == ["c002.provider"]
    assert data["scope_seconds_median"] > 0 and data["conformance_warm_seconds"] > 0
