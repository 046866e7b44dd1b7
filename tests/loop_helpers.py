"""A three-cluster repo and plan, and agents that write into their cluster, for loop tests."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

from tests.conftest import make_repo

BASE_FILES = {
    "README.md": "# shop\n",
    "contracts/api.py": "class Api:\n    def get(self, key: str) -> str: ...\n",
    "app/registry.py": "REGISTRY = [\n    'core',\n]\n",
    "tests/test_all.py": "def test_placeholder():\n    assert True\n",
    "api/__init__.py": "",
    "ui/__init__.py": "",
    "db/__init__.py": "",
}


def plan_yaml(extra: str = "", verify: str | None = None, clusters: str | None = None) -> str:
    verify_cmd = verify if verify is not None else f"{sys.executable} -c \"import api.impl, ui.impl, db.impl\""
    return f"""name: shop
goal: Build the shop
contracts: [contracts/api.py]
shared: [app/registry.py]
clusters:
{clusters or '''  - name: api
    paths: [api/]
    tasks: [implement the API]
  - name: ui
    paths: [ui/]
    tasks: [implement the UI]
  - name: db
    paths: [db/]
    tasks: [implement storage]
'''}integration:
  verify: ['{verify_cmd}']
limits:
  timeout_seconds: 60
  retries: 0
  concurrency: 3
{extra}"""


# Writes <cluster>/impl.py (owned path) and records its env and argv beside the repo.
WRITER = """
cluster = os.environ["WC_CLUSTER"]
wt = pathlib.Path(os.environ["WC_WORKTREE"])
(wt / cluster / "impl.py").write_text(f"NAME = {cluster!r}\\n")
record = pathlib.Path(os.environ["RECORD_DIR"]) / f"{cluster}-{os.environ['WC_ATTEMPT']}.txt"
record.write_text(repr({"argv": sys.argv, "cwd": os.getcwd(),
                        "env": {k: v for k, v in os.environ.items() if k.startswith("WC_")}}))
with (pathlib.Path(os.environ["RECORD_DIR"]) / "runs.log").open("a") as runs:
    runs.write(cluster + "\\n")
print(f"agent {cluster} wrote impl.py")
"""


def shop_repo(root: Path, plan_text: str | None = None) -> tuple[Path, Path]:
    repo = make_repo(root, BASE_FILES)
    plan = root / "shop.yaml"
    plan.write_text(plan_text or plan_yaml())
    return repo, plan


def made_before_the_flow(repo: Path) -> dict[str, bool]:
    """Whether each shop cluster's worktree (in the default workspace) was made before its last
    run's flow began, as the CLI's head start makes them while Prefect's temporary server starts."""
    runs = repo.parent / "repo.clusters" / "shop" / ".runs"
    began = datetime.fromisoformat(json.loads((runs / "report.json").read_text())["started_at"]).timestamp()
    return {c: (runs.parent / c / ".git").stat().st_mtime < began for c in ("api", "ui", "db")}
