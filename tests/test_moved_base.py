"""An agent that moves ``clusters/<plan>/base`` (issue 21): before the fix integration used the
recorded base, but the move was neither reported nor undone."""

from __future__ import annotations

import json
from pathlib import Path

from prefect_work_clusters.flows.work_clusters import work_clusters
from tests.conftest import git, write_agent
from tests.loop_helpers import WRITER, shop_repo


def test_a_moved_base_is_reported_with_who_moved_it_and_restored(tmp_path: Path, records: Path,
                                                                 prefect_harness: None) -> None:
    repo, plan = shop_repo(tmp_path)
    agent = write_agent(tmp_path, WRITER + """
if cluster == "api":
    subprocess.run(["git", "-c", "user.name=u", "-c", "user.email=u@e", "commit", "-qam", "api", "--allow-empty"],
                   cwd=wt, check=True)
    subprocess.run(["git", "branch", "-f", "clusters/shop/base", "HEAD"], cwd=wt, check=True)
""")
    work_clusters(plan=str(plan), repo=str(repo), agent_cmd=agent, return_state=True)
    report = json.loads((tmp_path / "repo.clusters" / "shop" / ".runs" / "report.json").read_text())
    assert git(repo, "rev-parse", "clusters/shop/base") == report["base_sha"]  # restored
    # The git-dir watch restores it when api's attempt ends (blaming api when it ran alone, else
    # naming the agents that ran); restore_base is the backstop after all agents and says who.
    said = [*report["notes"], *(t for c in report["clusters"] for t in [c.get("failure") or ""])]
    named = [n for n in said if "clusters/shop/base" in n]
    assert named, said
    if any(n.startswith("clusters/shop/base was moved to ") for n in named):
        assert any("(a commit of cluster api's branch; git: branch: Reset to HEAD)" in n for n in named), named
