"""Each benchmark script in bench/ runs end to end at a tiny size, so none of them rots.

These are not timed tests: the scripts run in the test's process (tests/bench_helpers.py) against
the session's Prefect test server (their ``--api-url``), skip the parts that start a server of
their own or change a global concurrency limit, and only their output's shape and the work's
correctness are checked. The real numbers come from ``bench/run_all.sh`` (see bench/README.md).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench_helpers import BENCH, run_bench


@pytest.fixture(scope="module")
def api_url(prefect_harness: None) -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness set no API URL"
    return str(url)


def test_overhead_smoke(tmp_path: Path, api_url: str) -> None:
    _, data = run_bench("bench_overhead.py", tmp_path / "o.json", "--files", "40", "--clusters", "2", "--rounds", "1",
                        "--sleep", "0", "--modes", "sparse", "--api-url", api_url)
    local = data["local"]
    assert {"baseline", "sparse"} <= set(local) and "full" not in local
    assert {"worktrees", "agents", "integrate"} <= set(local["sparse"]["phases"])
    assert set(data["over_critical_path"]) == {"given server_sparse"}
    assert data["floor_local"]["import"] > 0


def test_parallel_smoke(tmp_path: Path, api_url: str) -> None:
    _, data = run_bench("bench_parallel.py", tmp_path / "p.json", "--files", "20", "--clusters", "2", "--sleep", "0.2",
                        "--api-url", api_url, "--as-shipped-only")
    run = data["runs"]["as shipped"]
    assert run["agent_durations"]["min"] >= 0.2
    assert run["agents_phase"] >= 0.2


def test_scale_smoke(tmp_path: Path, api_url: str) -> None:
    _, data = run_bench("bench_scale.py", tmp_path / "s.json", "--files", "200", "--clusters", "3",
                        "--concurrency", "2", "--repeat", "1", "--api-url", api_url)
    assert data["merged"] == 3
    assert data["walls"] == [data["wall"]]  # one run asked for, one reported
    assert data["peak_pss_mb"] > 0 and data["peak_rss_mb"] >= data["peak_pss_mb"]
    assert data["worktree_per_cluster"] > 0
    assert data["write_pace_seconds"] > 0 and data["worktree_removal_seconds"] > 0


def test_resume_smoke(tmp_path: Path, api_url: str) -> None:
    _, data = run_bench("bench_resume.py", tmp_path / "r.json", "--files", "20", "--clusters", "2", "--rounds", "1",
                        "--no-floor", "--api-url", api_url)
    assert data["agents_in_first_run"] == 2
    assert data["agents_rerun"] == 0 and data["clusters_not_resumed"] == []
    assert data["resumed_median"] > 0 and data["floor_median"] is None


def test_guard_smoke(tmp_path: Path) -> None:
    _, data = run_bench("bench_guard.py", tmp_path / "g.json", "--files", "40", "--clusters", "3", "--rounds", "3")
    assert data["attacks_caught_and_blamed"] is True and data["unexpected_notes"] == []
    assert data["attempt_ms_median"] > 0 and data["attempt_full_read_ms_median"] > 0
    assert data["run_guard_s"] > 0 and data["run_accounting_s"] > 0


def test_baseline_script_does_the_same_work(tmp_path: Path) -> None:
    """baseline.sh leaves what work-clusters leaves: a branch per cluster with the agent's file,
    an integration branch with one --no-ff merge of each, and no cluster worktree."""
    sys.path.insert(0, str(BENCH))
    try:
        import common
    finally:
        sys.path.remove(str(BENCH))
    repo, ws = tmp_path / "repo", tmp_path / "ws"
    common.make_repo(repo, 30, 2)
    env = common.clean_env(tmp_path / "home")
    subprocess.run(["bash", str(common.BASELINE), str(repo), str(ws), str(common.AGENT), "c000", "c001"], env=env,
                   check=True, capture_output=True)

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True,
                              text=True).stdout.strip()

    merges = git("log", "--merges", "--format=%s", "manual/integration").splitlines()
    assert len(merges) == 2
    assert git("show", "manual/integration:c001/agent_out.txt") == "written by the agent of c001"
    assert git("worktree", "list").count("\n") == 1  # the repo and the integration worktree
    assert not (ws / "c000").exists() and (ws / "integration").is_dir()
