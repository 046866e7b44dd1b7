"""Build the demo repository: the seed's auth system, in Python, with a contract and tests."""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from prefect_work_clusters.tasks.git import core as gitops

REPO = Path(__file__).parent / "repo"


def build_demo_repo(dest: Path) -> tuple[Path, Path]:
    """Create the demo repo under ``dest``; return (repo, plan file)."""
    repo = dest / "auth-system"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    plan = repo / "plans" / "auth-system.md"
    plan.write_text(plan.read_text().replace("{python}", shlex.quote(sys.executable)))
    init_repo(repo, "Auth system: contract and end-to-end test")
    return repo, plan


def init_repo(repo: Path, message: str) -> None:
    """Make ``repo`` a git repository with everything in it committed on ``main``."""
    gitops.run(repo, "init", "-q", "-b", "main")
    gitops.run(repo, "add", "-A")
    gitops.run(repo, "commit", "-q", "-m", message, env=gitops.identity_env(repo))


def scripted_agent_cmd() -> str:
    """The command line of the bundled scripted agent, for ``--agent-cmd``."""
    return f"{shlex.quote(sys.executable)} -m prefect_work_clusters.flows.demo.agent"
