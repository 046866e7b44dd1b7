"""`clean`, `integrate` and a second `run` while a run of the plan is active (issue 21).

Before the fix, `clean --branches --force` took no lock and removed the live run's worktree and
every branch, base included; a second `run` was refused with a traceback and exit 1. Now each is
refused before anything is touched (and before Prefect starts) with one line and exit 75."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import branches, cli, git
from tests.loop_helpers import shop_repo

HOLD = """
import sys, time
from prefect_work_clusters.tasks.resolve import resolve_run
from prefect_work_clusters.tasks.recovery import run_lock
ctx = resolve_run(sys.argv[1], sys.argv[2], agents_needed=False)
with run_lock(ctx):
    print("held", flush=True)
    time.sleep(120)
"""


def test_clean_integrate_and_a_second_run_are_refused_while_a_run_holds_the_plan(tmp_path: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    for name in ("clusters/shop/base", "clusters/shop/api"):
        git(repo, "branch", name)
    before = branches(repo)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(plan), str(repo)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PREFECT_HOME": str(tmp_path / "ph")})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for args in (["clean", "--branches", "--force"], ["integrate"], ["run", "--agent-cmd", "true"]):
            res = cli(*args[:1], str(plan), "--repo", str(repo), *args[1:], cwd=tmp_path)
            assert res.returncode == 75, (args, res.stdout, res.stderr)
            assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr
            assert f"another run of plan shop is in progress on {repo} (pid {holder.pid} " in res.stderr
            assert "Starting temporary server" not in res.stdout + res.stderr  # refused before Prefect
        assert branches(repo) == before
    finally:
        holder.kill()
        holder.wait()
    res = cli("clean", str(plan), "--repo", str(repo), "--branches", "--force", cwd=tmp_path)
    assert res.returncode == 0 and "deleted branch clusters/shop/base" in res.stdout, res.stderr
