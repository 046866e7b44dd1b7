"""The integration benchmark still runs and still checks its own result (tiny sizes; no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_integration.py"


def test_bench_integration_smoke(tmp_path: Path) -> None:
    out = tmp_path / "integration.json"
    res = subprocess.run([sys.executable, str(BENCH), "--branches", "3", "--files", "200", "--repeat", "1",
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "preflight of 3 branches" in res.stdout and "merge of 3 branches" in res.stdout
    data = json.loads(out.read_text())
    assert data["branches"] == 3 and data["all_merged_and_kept"] is True
    assert data["preflight_seconds_median"] > 0 and data["merge_seconds_median"] > 0
