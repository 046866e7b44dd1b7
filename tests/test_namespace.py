"""One import name: the package lives under ``prefect_work_clusters`` and shadows nobody.

A Prefect project almost always has its own ``flows/`` folder, often ``tasks.py`` or ``blocks/``;
from such a folder (on ``sys.path``, as in a flow-run process) both its modules and ours import.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import CLI, user_project
from tests.test_prefect_startup import left_running

ROOT = Path(__file__).resolve().parent.parent
GENERIC = ("flows", "tasks", "blocks", "deployments")

# Run with the project folder as cwd and on sys.path (`python -c` puts it first, as the worker's
# flow-run process does); prints what each side saw.
PROBE = """
import importlib, json
from prefect.blocks.core import Block
from prefect.plugins import load_prefect_collections

from prefect_work_clusters.flows.work_clusters import work_clusters
from prefect_work_clusters.blocks import AgentBlock
import flows.etl, tasks, blocks, deployments

collections = load_prefect_collections()
print(json.dumps({
    "flow": work_clusters.name,
    "user": [flows.etl.WHO, tasks.WHO, blocks.WHO, deployments.WHO],
    "collection": getattr(collections.get("prefect_work_clusters"), "__name__", None),
    "block": Block.get_block_class_from_key("work-clusters-agent") is AgentBlock,
}))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PREFECT_HOME": str(tmp_path / "home")}


def test_a_user_project_keeps_its_own_flows_tasks_and_blocks(tmp_path: Path) -> None:
    project = user_project(tmp_path / "project")
    res = subprocess.run([sys.executable, "-c", PROBE], cwd=project, capture_output=True, text=True,
                         env=_env(tmp_path), timeout=120)
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout.strip().splitlines()[-1])
    assert seen == {"flow": "work-clusters", "user": ["user flows", "user tasks", "user blocks", "user deployments"],
                    "collection": "prefect_work_clusters.blocks", "block": True}
    cli = subprocess.run([*CLI, "--help"], cwd=project,
                         capture_output=True, text=True, env=_env(tmp_path), timeout=120)
    assert cli.returncode == 0 and "validate" in cli.stdout, cli.stderr


def test_the_wheel_installs_one_import_name(tmp_path: Path) -> None:
    # Built from a copy: setuptools writes build/ beside the sources.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"))
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp_path), str(src)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    (wheel,) = tmp_path.glob("prefect_work_clusters-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"prefect_work_clusters"}
    # every module of ours is in it (a subpackage left out of the packages list once went missing)
    ours = {f"prefect_work_clusters/{p.relative_to(ROOT).as_posix()}" for top in GENERIC
            for p in (ROOT / top).rglob("*.py") if not {"repo", "solutions", "typescript"} & set(p.parts)}
    assert ours - set(names) == set()
    # the package data travels with it: prompt templates, the demo repo and the example repo
    for data in ("tasks/agents/templates/cluster.md.j2", "flows/demo/repo/contracts/auth.py",
                 "flows/demo/typescript/repo/contracts/auth.ts",
                 "flows/demo/solutions/backend/service.py", "flows/examples/perf_investigation/repo/app/bench.py"):
        assert f"prefect_work_clusters/{data}" in names, data
    meta = next(n for n in names if n.endswith("entry_points.txt"))
    entry = zipfile.ZipFile(wheel).read(meta).decode()
    assert "prefect_work_clusters = prefect_work_clusters.blocks" in entry
    assert "work-clusters = prefect_work_clusters.flows.cli:main" in entry


@pytest.mark.local_mode  # the README's first command, on a machine with no Prefect server
def test_the_demo_runs_from_a_user_project(tmp_path: Path) -> None:
    """README's first command, from a folder with its own flows/ and tasks.py: the scripted agent
    runs as `python -m prefect_work_clusters.flows.demo.agent` in each worktree, not from here."""
    project = user_project(tmp_path / "project")
    env = {**_env(tmp_path), "TMPDIR": str(tmp_path), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240"}
    res = subprocess.run([*CLI, "demo", "--verbose"], cwd=project,
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert "integrated and verified" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    # The server the CLI started before the flow's imports served the whole run, down to the logs
    # sent at exit: Prefect never started one of its own (flows/startup.py), and it was stopped.
    assert "Starting temporary server" not in res.stderr and "Error logging to API" not in res.stderr
    assert not left_running(tmp_path / "home")


def test_demo_fail_shows_a_failed_run_with_its_next_step(tmp_path: Path) -> None:
    """`demo --fail`: the frontend's agent fails; the run says so, merges the others, and the merge
    report ends with the command that continues."""
    env = {**_env(tmp_path), "TMPDIR": str(tmp_path), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240"}
    res = subprocess.run([*CLI, "demo", "--fail"], cwd=tmp_path,
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 1, (res.stdout + res.stderr)[-4000:]
    assert "not integrated" in res.stdout
    (report,) = tmp_path.glob("work-clusters-demo-*/auth-system.clusters/auth-system/.runs/merge-report.md")
    text = report.read_text()
    assert "failing on purpose (demo --fail)" in (report.parent / "logs" / "frontend.log").read_text()
    steps = text.split("## Next steps", 1)[1]
    assert "- Resume: `work-clusters run " in steps and "auth-system.md --repo " in steps
    assert "Land" not in steps  # nothing to land from a failed run
