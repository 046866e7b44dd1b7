"""The pattern's own example in TypeScript: its contract checked by the real tsc, its tests by node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from prefect_work_clusters.flows.demo.build import build_demo_repo
from prefect_work_clusters.tasks.agents.attempt import AgentFailed, run_attempt
from prefect_work_clusters.tasks.checks.contract import check_cluster
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.resolve import resolve_run
from prefect_work_clusters.tasks.worktrees import prepare
from tests.conftest import CLI, write_agent

pytestmark = pytest.mark.skipif(not (shutil.which("tsc") and shutil.which("node")) and not os.environ.get("CI"),
                                reason="tsc and node are not installed (npm install -g typescript; CI does)")
SOLUTIONS = Path(__file__).resolve().parent.parent / "flows" / "demo" / "typescript" / "solutions"
WRONG_LOGIN = (SOLUTIONS / "ui" / "context.ts").read_text().replace(
    "login = async (email: string, password: string)", "login = async (email: number, password: string)")

# Writes the prepared solution of its cluster; the frontend's first attempt gets `login` wrong and
# its second one needs tsc's own words in the feedback before it writes the right one.
AGENT = f"""
import shutil
solutions = pathlib.Path({str(SOLUTIONS)!r})
cluster, attempt = os.environ["WC_CLUSTER"], os.environ["WC_ATTEMPT"]
folder = {{"backend": "api", "frontend": "ui", "data": "db"}}[cluster]
target = pathlib.Path("auth-" + folder)
target.mkdir(exist_ok=True)
for src in (solutions / folder).glob("*.ts"):
    shutil.copyfile(src, target / src.name)
mode = os.environ.get("TS_MODE", "")
if cluster == "frontend" and mode == "wrong-login":
    if attempt == "1":
        (target / "context.ts").write_text({WRONG_LOGIN!r})
    else:
        feedback = pathlib.Path(os.environ["WC_FEEDBACK_FILE"]).read_text()
        prompt = pathlib.Path(os.environ["WC_PROMPT_FILE"]).read_text()
        needed = "Types of property 'login' are incompatible"
        if needed not in feedback or needed not in prompt:
            sys.exit("no tsc message in the feedback: " + feedback[:500])
if cluster == "frontend" and mode == "import-api":
    text = (target / "context.ts").read_text()
    (target / "context.ts").write_text("import {{ AuthService }} from '../auth-api/service'\\n" + text
                                       + "export const direct = AuthService\\n")
"""


def _ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, extra: str = ""):  # type: ignore[no-untyped-def]
    repo, plan = build_demo_repo(tmp_path, typescript=True)
    if extra:
        plan.write_text(plan.read_text().replace("limits:", f"{extra}\nlimits:", 1))
    monkeypatch.setenv("TS_MODE", mode)
    return resolve_run(plan, repo, RunOptions(agent_cmd=write_agent(tmp_path, AGENT)))


def test_the_typescript_demo_integrates_and_verifies(tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240"}
    res = subprocess.run([*CLI, "demo", "--typescript"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert "integrated and verified" in res.stdout
    (report_file,) = tmp_path.glob("work-clusters-demo-*/auth-system.clusters/auth-system/.runs/report.json")
    report = json.loads(report_file.read_text())
    rows = [r for c in report["checks"] for r in c["rows"] if r["check"] == "conformance"]
    rows += [r for r in report["tree_checks"] if r["check"] == "conformance"]
    text = json.dumps(rows)
    assert "1 provides checked by type" in text and "2 provides checked by type" in text  # clusters, integrated
    assert all(r["status"] == "ok" for r in rows), rows
    assert [v["command"] for v in report["integration"]["verify"]] == ["tsc -p .", "node --test tests/"]


def test_a_wrong_login_signature_fails_with_tscs_words_and_is_retried(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _ctx(tmp_path, monkeypatch, "wrong-login")
    prepare(ctx)
    with pytest.raises(AgentFailed) as failed:
        run_attempt(ctx, "frontend", 1)
    assert failed.value.retryable
    last = failed.value.record.attempts[-1]
    assert "auth-ui/context.ts:SessionContext -> contracts/auth.ts:AuthContext" in last.output_tail
    assert "Types of property 'login' are incompatible" in last.output_tail  # tsc's own words
    record = run_attempt(ctx, "frontend", 2)  # the agent checks that tsc's message reached it
    assert record.status == "succeeded"
    check = check_cluster(ctx, record)
    assert {r.check: r.status for r in check.rows}["conformance"] == "ok"


def test_a_cluster_importing_another_clusters_module_fails_independence(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = _ctx(tmp_path, monkeypatch, "import-api", extra="contract: {on_violation: fail, independent: true}")
    prepare(ctx)
    record = run_attempt(ctx, "frontend", 1)
    rows = [r for r in check_cluster(ctx, record).rows if r.check == "independence"]
    ts = next(r for r in rows if "TypeScript" in r.note)
    assert ts.status == "violation"
    # the backend's file is not in the frontend's worktree: its path still says whose it is
    assert ts.evidence == ["auth-ui/context.ts (cluster frontend) imports ../auth-api/service "
                           "(auth-api/service, cluster backend) at line 1: "
                           "import { AuthService } from '../auth-api/service'"]
