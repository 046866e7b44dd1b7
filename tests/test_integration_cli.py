"""`work-clusters integrate --land` as a user runs it: re-runs only the integration, refuses to land
a lossy result with exit 1 and says why."""

from __future__ import annotations

from pathlib import Path

from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from tests.conftest import cli, git, write_agent
from tests.integration_helpers import add_to_registry, commit_cluster, setup

KEEP_OURS = """
subprocess.run(["git", "checkout", "--ours", "--", "app/config.py"], check=True)
"""


def test_integrate_land_refuses_lost_lines_and_exits_1(tmp_path: Path) -> None:
    ctx, _ = setup(tmp_path)
    for cluster in ("api", "ui", "db"):
        add_to_registry(ctx, cluster)
    commit_cluster(ctx, "api", {"app/config.py": "PROFILE = 'dev'\nTIMEOUT = 60\n"})
    commit_cluster(ctx, "ui", {"app/config.py": "PROFILE = 'dev'\nTIMEOUT = 10\n"})
    for cluster in ("api", "ui", "db"):  # what a finished agent leaves: the marker commit
        gitchanges.commit_empty(ctx.worktree(cluster), f"done\n\n{gitops.FINISHED_TRAILER}: {cluster} attempt 1")
    main = git(ctx.repo, "rev-parse", "main")

    res = cli("integrate", str(ctx.plan_file), "--repo", str(ctx.repo), "--land",
              "--integration-agent-cmd", write_agent(tmp_path, KEEP_OURS), cwd=tmp_path)

    assert res.returncode == 1, res.stderr
    assert "error: 1 line(s) lost in app/config.py (ui): unexplained" in res.stdout
    assert "conflict: app/config.py merging ui onto api: resolved by agent" in res.stdout
    assert "not landed: changes not accounted for: 1 lost in app/config.py (ui)" in res.stdout
    assert git(ctx.repo, "rev-parse", "main") == main
