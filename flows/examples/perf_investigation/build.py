"""Build the investigation example's repository: the slow shop report, committed on ``main``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from prefect_work_clusters.flows.demo.build import init_repo

REPO = Path(__file__).parent / "repo"
PLAN = "plans/perf-regression.yaml"


def build_example_repo(dest: Path) -> tuple[Path, Path]:
    """Create the example repo under ``dest``; return (repo, plan file). The plan's scripted
    agents run with this Python, so the example needs nothing else installed."""
    repo = dest / "shop-reports"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
    plan = repo / PLAN
    plan.write_text(plan.read_text().replace('"{python}"', json.dumps(sys.executable)))
    init_repo(repo, "shop-reports 2.3")
    return repo, plan
