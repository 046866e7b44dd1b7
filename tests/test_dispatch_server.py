"""Beyond one machine, for real: ``prefect server start``, a process work pool, TWO workers started
in different folders (each with a home of its own: what a machine holds), a bare repository as the
only thing they share, and ``work-clusters run --dispatch`` from a third folder. Mid-run, the
worker running the third cluster dies (SIGKILL, its flow run and agent with it): the server marks
that flow run Crashed for want of heartbeats, the parent starts the cluster again and the other
worker completes it. Every process is stopped by PID at the end. Deselect with ``-m 'not server'``."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, WorkPoolCreate
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

from prefect_work_clusters.deployments import deploy_plans
from prefect_work_clusters.flows.crashes import ensure_crash_detection
from tests.conftest import git, make_repo
from tests.loop_helpers import BASE_FILES, plan_yaml
from tests.server_helpers import PREFECT, ROOT, Stack, stack_fixture  # noqa: F401 - a fixture

pytestmark = [pytest.mark.server, pytest.mark.slow]

# Records when it ran (to prove the global limit held across the workers) and where (its home). The
# first agent of db says where it runs and hangs there: the test kills that machine.
AGENT = """
import json, os, pathlib, time
cluster, start = os.environ["WC_CLUSTER"], time.time()
hang = pathlib.Path(os.environ["RECORD_DIR"], "db.hangs")
if cluster == "db" and not hang.exists():
    hang.write_text(os.environ["WORK_CLUSTERS_HOME"])
    time.sleep(50)
time.sleep(0.5)
pathlib.Path(os.environ["WC_WORKTREE"], cluster, "impl.py").write_text(f"NAME = {cluster!r}\\n")
pathlib.Path(os.environ["RECORD_DIR"], cluster + ".json").write_text(json.dumps(
    {"start": start, "end": time.time(), "home": os.environ.get("WORK_CLUSTERS_HOME")}))
print(f"agent {cluster} wrote impl.py")
"""


def test_clusters_dispatched_to_two_workers_push_to_the_remote(stack: Stack, tmp_path: Path) -> None:
    repo = make_repo(tmp_path, BASE_FILES)
    remote = tmp_path / "remote.git"
    shutil.copytree(repo / ".git", remote)  # a bare copy: the user's repo is not touched
    git(remote, "config", "core.bare", "true")
    records = tmp_path / "records"
    records.mkdir()
    (tmp_path / "agent.py").write_text(AGENT)
    stack.env["RECORD_DIR"] = str(records)
    stack.env["PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS"] = "2"  # a dead run's slot lease, seen soon

    server = stack.start("server", PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(stack.port))
    stack.wait_healthy(server)
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="work-clusters", type="process"))
        # One agent of this backend at a time across every machine: the limit is the server's.
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="agents-command", limit=1))
    assert ensure_crash_detection(within=40)  # heartbeats every 30 s (Prefect's least): crashed 40 s on
    assert not ensure_crash_detection()  # there: left as it is
    deploy_plans()
    workers = {}
    for name in ("worker-a", "worker-b"):  # two "machines": their own folder and home
        stack.cwd = tmp_path / name
        stack.cwd.mkdir()
        stack.env = {**stack.env, "WORK_CLUSTERS_HOME": str(stack.cwd / "home")}
        workers[str(stack.cwd / "home")] = stack.start(name, PREFECT, "worker", "start", "--pool", "work-clusters",
                                                       "--limit", "1")

    # The orchestrating machine: the plan in its current folder, the repo only as the remote.
    stack.cwd = tmp_path / "orchestrator"
    stack.cwd.mkdir()
    (stack.cwd / "shop.yaml").write_text(plan_yaml())
    stack.env = {**stack.env, "WORK_CLUSTERS_HOME": str(stack.cwd / "home")}
    cli = stack.start("cli", str(Path(sys.executable).with_name("work-clusters")), "run", "shop.yaml",
                      "--repo", str(remote), "--dispatch", "work-clusters-cluster/cluster",
                      "--agent-cmd", f"{sys.executable} {tmp_path / 'agent.py'}", "--concurrency", "2",
                      "--retries", "1")
    hang = records / "db.hangs"
    deadline = time.monotonic() + 300
    while not hang.exists() and cli.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert hang.exists(), stack.log("cli")[-4000:]
    time.sleep(0.2)  # the file is written whole
    killed = stack.kill(workers[hang.read_text()])  # the worker, its flow run's process and the agent
    assert len(killed) >= 3, killed
    out = stack.finish("cli", cli, timeout=500)

    assert "integrated and verified" in out, out[-4000:]
    pushed = git(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()
    assert {f"clusters/shop/{b}" for b in ("base", "api", "ui", "db", "integration")} <= set(pushed), pushed
    final = git(remote, "rev-parse", "clusters/shop/integration")
    assert {git(remote, "show", f"{final}:{c}/impl.py") for c in ("api", "ui", "db")} == \
        {"NAME = 'api'", "NAME = 'ui'", "NAME = 'db'"}
    assert git(remote, "rev-parse", "main") == git(repo, "rev-parse", "main")  # no --land: base not moved

    ran = {p.stem: json.loads(p.read_text()) for p in records.glob("*.json")}
    assert set(ran) == {"api", "ui", "db"}
    homes = {r["home"] for r in ran.values()}
    assert homes == {str(tmp_path / "worker-a/home"), str(tmp_path / "worker-b/home")}, homes  # both took work
    spans = sorted((r["start"], r["end"]) for r in ran.values())
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False)), spans

    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["plan:shop"])))
    by_name = {c.name: c for c in children}
    assert sorted(by_name) == ["shop-api", "shop-db", "shop-db-2", "shop-ui"]
    crashed = by_name.pop("shop-db")
    assert crashed.state and crashed.state.is_crashed() and "heartbeat" in (crashed.state.message or ""), crashed.state
    assert all(c.parent_task_run_id and c.state and c.state.is_completed() for c in by_name.values())  # linked
    # --concurrency 2: the third cluster's flow run was created only once one of the first two ended.
    runs = sorted((c.created.timestamp(), c.end_time.timestamp()) for c in children if c.created and c.end_time)
    assert len(runs) == 4 and runs[2][0] >= min(runs[0][1], runs[1][1]), runs
    for name in ("worker-a", "worker-b"):
        assert any(str(c.id) in stack.log(name) for c in children), stack.log(name)[-3000:]
    report = (tmp_path / "orchestrator/home").rglob("merge-report.md")
    text = next(report).read_text()
    assert all(str(c.id) in text for c in children), text  # the report links every cluster's flow run
    assert re.search(rf"cluster db: flow run shop-db \(\S*{crashed.id}\) crashed \(no heartbeat", text), text
