"""Each benchmark script in bench/ runs end to end at a tiny size, so none of them rots.

These are not timed tests: the scripts run against the session's Prefect test server (their
``--api-url``), skip the parts that start a server of their own or change a global concurrency
limit, and only their output's shape and the work's correctness are checked. The real numbers
come from ``bench/run_all.sh`` (see bench/README.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def api_url(prefect_harness: None) -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    assert url, "the Prefect test harness set no API URL"
    return str(url)


def run_script(name: str, out: Path, *args: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    res = subprocess.run([sys.executable, str(BENCH / name), "--out", str(out), *args], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, f"{name} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    data: dict[str, object] = json.loads(out.read_text())
    assert data["table"], "no table rows"
    assert {"nproc", "cpu", "git", "python", "prefect"} <= set(data["machine"])  # type: ignore[arg-type]
    for row in data["table"]:  # type: ignore[attr-defined]
        assert row["figure"] in res.stdout
    return data


def test_overhead_smoke(tmp_path: Path, api_url: str) -> None:
    data = run_script("bench_overhead.py", tmp_path / "o.json", "--files", "40", "--clusters", "2", "--rounds", "1",
                      "--sleep", "0", "--modes", "sparse", "--api-url", api_url)
    local = data["local"]
    assert isinstance(local, dict)
    assert {"baseline", "sparse"} <= set(local) and "full" not in local
    assert {"worktrees", "agents", "integrate"} <= set(local["sparse"]["phases"])
    assert set(data["over_critical_path"]) == {"given server_sparse"}  # type: ignore[arg-type]
    assert data["floor_local"]["import"] > 0  # type: ignore[index]


def test_parallel_smoke(tmp_path: Path, api_url: str) -> None:
    data = run_script("bench_parallel.py", tmp_path / "p.json", "--files", "20", "--clusters", "2", "--sleep", "0.2",
                      "--api-url", api_url, "--as-shipped-only")
    run = data["runs"]["as shipped"]  # type: ignore[index]
    assert run["agent_durations"]["min"] >= 0.2
    assert run["agents_phase"] >= 0.2


def test_scale_smoke(tmp_path: Path, api_url: str) -> None:
    data = run_script("bench_scale.py", tmp_path / "s.json", "--files", "200", "--clusters", "3",
                      "--concurrency", "2", "--api-url", api_url)
    assert data["merged"] == 3
    assert data["peak_pss_mb"] > 0 and data["peak_rss_mb"] >= data["peak_pss_mb"]  # type: ignore[operator]
    assert data["worktree_per_cluster"] > 0  # type: ignore[operator]


def test_resume_smoke(tmp_path: Path, api_url: str) -> None:
    data = run_script("bench_resume.py", tmp_path / "r.json", "--files", "20", "--clusters", "2", "--rounds", "1",
                      "--no-floor", "--api-url", api_url)
    assert data["agents_in_first_run"] == 2
    assert data["agents_rerun"] == 0 and data["clusters_not_resumed"] == []
    assert data["resumed_median"] > 0 and data["floor_median"] is None  # type: ignore[operator]


def test_guard_smoke(tmp_path: Path) -> None:
    data = run_script("bench_guard.py", tmp_path / "g.json", "--files", "40", "--clusters", "3", "--rounds", "3")
    assert data["attacks_caught_and_blamed"] is True and data["unexpected_notes"] == []
    assert data["attempt_ms_median"] > 0 and data["attempt_full_read_ms_median"] > 0  # type: ignore[operator]
    assert data["run_guard_s"] > 0 and data["run_accounting_s"] > 0  # type: ignore[operator]


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
