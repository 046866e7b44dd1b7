"""The contract-check and integration benchmarks still run and still check their own results
(tiny sizes; no timing asserted), each in the test's process (tests/bench_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_helpers import run_bench


def test_bench_scope_smoke(tmp_path: Path) -> None:
    stdout, data = run_bench("bench_scope.py", tmp_path / "r.json",
                             "--files", "300", "--clusters", "4", "--changed", "3")
    assert "scope check, 4 clusters" in stdout
    assert data["files"] >= 300 and data["kept_out"] == ["c003"]
    assert data["outside_found"] == {"c003": ["lib/moved_c003.py", "lib/outside_c003.py"]}
    assert len(data["conformance_problems"]) == 1 and "Got: def get(self, key: int)" in data["conformance_problems"][0]
    assert [p.split(" ")[0] for p in data["independence_problems"]] == ["c002.provider"]
    assert data["scope_seconds_median"] > 0 and data["conformance_warm_seconds"] > 0


def test_bench_integration_smoke(tmp_path: Path) -> None:
    stdout, data = run_bench("bench_integration.py", tmp_path / "r.json",
                             "--branches", "3", "--files", "200", "--repeat", "1")
    assert "sparse plan, in a run: preflight of 3 branches" in stdout
    assert "full plan, integrate alone: preflight and merges of 3" in stdout
    assert "full plan, in a run: its worktree written at the base while the agents worked" in stdout
    assert data["branches"] == 3 and data["all_merged_and_kept"] is True
    assert "git's own `worktree add` of all 200 files" in stdout and data["git_worktree_add_seconds"] > 0
    for plan in ("sparse", "full", "sparse_ahead", "full_ahead"):
        assert data[plan]["preflight_seconds_median"] > 0 and data[plan]["merge_seconds_median"] > 0
    assert data["full_ahead"]["ahead_seconds_median"] > 0 and data["full"]["ahead_seconds_median"] < 0.01


def test_bench_accounting_smoke(tmp_path: Path) -> None:
    stdout, data = run_bench("bench_accounting.py", tmp_path / "r.json",
                             "--clusters", "3", "--files", "200", "--repeat", "1")
    assert "accounting of 3 clusters in 200 files" in stdout
    assert data["all_accounted"] is True and data["files_accounted"] == 7  # 2 per cluster and the registry


@pytest.mark.slow
def test_bench_fidelity_smoke(tmp_path: Path) -> None:
    stdout, data = run_bench("bench_fidelity.py", tmp_path / "r.json", "--splits", "by-author")
    assert "by-author: 5 clusters" in stdout
    split = data["by-author"]
    assert split["met"] is True and split["ok"] is False  # this split differs from upstream, and says so
    assert {d["path"] for d in split["differing_files"]} <= set(split["report_names"])
