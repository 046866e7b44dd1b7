"""``work-clusters suggest`` and the measured fit of ``validate``: on planted structure and real code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import prefect
import pytest
import yaml

from prefect_work_clusters.tasks.plan.load import load_plan
from prefect_work_clusters.tasks.suggest.propose import suggest
from tests.conftest import CLI, git, make_repo, rebaseline

PIECES = ("billing", "catalog", "shipping")


def _module(pkg: str, n: int, imports: list[str]) -> str:
    return "".join(f"import {m}\n" for m in imports) + f"\n\ndef f{n}() -> int:\n    return {n}\n"


def planted_repo(tmp_path: Path, coupled: bool = False) -> Path:
    """Three packages under app/, each five modules importing each other, and a hub (app/core)
    that every module imports. Its history: each commit changes one package (or, ``coupled``,
    every module imports across packages and every commit spans them)."""
    files: dict[str, str] = {"README.md": "# shop\n", "app/__init__.py": "", "app/core/__init__.py": "",
                             "app/core/money.py": "RATE = 1\n"}
    for i, pkg in enumerate(PIECES):
        files[f"app/{pkg}/__init__.py"] = ""
        for n in range(5):
            own = [f"app.{pkg}.m{k}" for k in range(n)]
            other = [f"app.{p}.m{n}" for p in PIECES if p != pkg] if coupled else []
            files[f"app/{pkg}/m{n}.py"] = _module(pkg, n, ["app.core.money", *own[-2:], *other])
        if i == 0 and not coupled:  # one weak tie across: billing reads the catalog once
            files["app/billing/m4.py"] = _module(pkg, 4, ["app.core.money", "app.billing.m3", "app.catalog.m0"])
    repo = make_repo(tmp_path, files)
    for round_ in range(4):
        for pkg in PIECES:
            touched = [f"app/{p}/m{round_}.py" for p in (PIECES if coupled else (pkg,))]
            for path in touched:
                with (repo / path).open("a") as fh:
                    fh.write(f"# change {round_} by {pkg}\n")
            git(repo, "commit", "-qam", f"{pkg}: change {round_}")
    rebaseline(repo)  # the history is the user's own, made before any run
    return repo


def test_three_planted_pieces_are_found_and_the_hub_is_shared(tmp_path: Path) -> None:
    repo = planted_repo(tmp_path)
    found = suggest(repo, tmp_path / "work", goal="Speed up checkout")
    assert found.plan is not None, found.fit.lines()
    assert sorted(tuple(c["paths"]) for c in found.plan["clusters"]) == [(f"app/{p}/",) for p in PIECES]
    assert {c["name"] for c in found.plan["clusters"]} == set(PIECES)
    assert found.plan["shared"] == ["app/core/"] and found.plan["name"] == "speed-up-checkout"
    assert found.fit.verdict().startswith("good fit: 3 distinct pieces"), found.fit.lines()
    billing = next(c for c in found.fit.clusters if c.name == "billing")
    assert billing.imports_to == {"catalog": 1} and billing.imports_inside > 5
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(found.yaml())
    assert len(load_plan(plan_file, repo).clusters) == 3  # validate accepts it as it is


def test_a_tightly_coupled_repo_is_a_poor_fit_and_no_plan_is_written(tmp_path: Path) -> None:
    repo = planted_repo(tmp_path, coupled=True)
    target = tmp_path / "plan.yaml"
    res = subprocess.run([*CLI, "suggest", "--repo", str(repo), "-o", str(target)], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "poor fit:" in res.stderr and "not split" in res.stderr and "Traceback" not in res.stderr
    assert not target.exists()
    forced = subprocess.run([*CLI, "suggest", "--repo", str(repo), "--clusters", "3", "-o", str(target)],
                            capture_output=True, text=True, cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "# poor fit:" in target.read_text()  # forced, and the figures say how it will go


def test_validate_measures_a_hand_written_plan(tmp_path: Path) -> None:
    repo = planted_repo(tmp_path)
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"name": "halves", "goal": "g", "shared": ["app/core/"], "clusters": [
        {"name": "money", "paths": ["app/billing/", "app/shipping/m0.py"]},
        {"name": "rest", "paths": ["app/catalog/", "app/shipping/m1.py", "app/shipping/m2.py",
                                   "app/shipping/m3.py", "app/shipping/m4.py"]}]}))
    res = subprocess.run([*CLI, "validate", str(plan), "--repo", str(repo)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    measured = res.stdout.split("measured on the code and its history:")[1]
    # shipping is cut in two: its own imports and commits now cross the boundary
    assert "poor fit:" in measured or "borderline:" in measured, measured
    assert "money:" in measured and "to rest" in measured


def test_not_a_repo_and_a_bad_output_name_are_one_line_each(tmp_path: Path) -> None:
    res = subprocess.run([*CLI, "suggest", "--repo", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 2 and "is not a git repository" in res.stderr and "Traceback" not in res.stderr
    repo = planted_repo(tmp_path)
    res = subprocess.run([*CLI, "suggest", "--repo", str(repo), "-o", "plan.txt"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 2 and "YAML" in res.stderr and not (tmp_path / "plan.txt").exists()


@pytest.mark.slow
def test_on_real_code_prefects_own_source(tmp_path: Path) -> None:
    """The installed prefect package (about 1,600 files) as a repository: a plan that validates
    (its time is bench/bench_suggest.py's figure)."""
    repo = tmp_path / "prefect-src"
    shutil.copytree(Path(prefect.__file__).parent, repo / "prefect", ignore=shutil.ignore_patterns("__pycache__"))
    git(repo.parent, "init", "-q", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "prefect's source")
    target = tmp_path / "plan.yaml"
    res = subprocess.run([*CLI, "suggest", "--repo", str(repo), "-o", str(target)], capture_output=True, text=True,
                         env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    assert res.returncode == 0, res.stderr
    plan = load_plan(target, repo)
    assert len(plan.clusters) >= 2 and plan.shared  # hub modules (utilities, settings, ...) are shared
    assert "prefect/utilities/" in plan.shared  # imported by nearly everything: never a cluster of its own


PLANNER = r'''
import os, pathlib, sys
attempt = int(os.environ["WC_ATTEMPT"])
assert os.environ["WC_ROLE"] == "planner"
prompt = pathlib.Path(os.environ["WC_PROMPT_FILE"]).read_text()
pathlib.Path(sys.argv[1], f"prompt-{attempt}.md").write_text(prompt)
clusters = ["billing"] if attempt == 1 else ["billing", "catalog", "shipping"]
body = "".join(f"  - name: {c}\n    paths: [app/{c}/]\n    tasks: [make {c} faster]\n" for c in clusters)
pathlib.Path(os.environ["WC_PLAN_FILE"]).write_text(
    "name: speed-up\ngoal: Speed up checkout\nshared: [app/core/]\nclusters:\n" + body)
pathlib.Path("scribble.txt").write_text("the planner's worktree is thrown away")
'''


def test_a_planner_agent_is_retried_with_the_problems_of_its_plan(tmp_path: Path) -> None:
    repo = planted_repo(tmp_path)
    seen = tmp_path / "seen"
    seen.mkdir()
    agent = tmp_path / "planner.py"
    agent.write_text(PLANNER)
    target = tmp_path / "plan.yaml"
    res = subprocess.run([*CLI, "suggest", "--repo", str(repo), "--goal", "Speed up checkout", "-o", str(target),
                          "--agent-cmd", f"{sys.executable} {agent} {seen}"], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "planner attempt 1 refused" in res.stderr and "attempt 2" in res.stdout
    assert sorted(p.name for p in seen.iterdir()) == ["prompt-1.md", "prompt-2.md"]
    first, second = ((seen / f"prompt-{n}.md").read_text() for n in (1, 2))
    assert "## The measured suggestion" in first and "good fit: 3 distinct pieces" in first
    assert "`app/billing/`: 6 files" in first  # the repository's map
    assert "last attempt was refused" not in first and "a plan needs at least 2 clusters" in second
    assert [c.name for c in load_plan(target, repo).clusters] == ["billing", "catalog", "shipping"]
    assert not list(repo.parent.glob("*.clusters/*/planner"))  # its worktree is gone
    assert "scribble.txt" not in git(repo, "status", "--porcelain", "--untracked-files=all")


def test_a_planner_needs_a_goal(tmp_path: Path) -> None:
    repo = planted_repo(tmp_path)
    res = subprocess.run([*CLI, "suggest", "--repo", str(repo), "--agent-cmd", "true"], capture_output=True,
                         text=True)
    assert res.returncode == 2 and "--goal" in res.stderr


ROLES = r'''
import os, pathlib, sys
role = os.environ["WC_ROLE"]
if role == "planner":
    body = "".join(f"  - name: {c}\n    paths: [app/{c}/]\n    tasks: [add a fast path]\n"
                   for c in ("billing", "catalog", "shipping"))
    pathlib.Path(os.environ["WC_PLAN_FILE"]).write_text(
        "name: fast-path\ngoal: Add a fast path\nshared: [app/core/]\nclusters:\n" + body)
elif role == "cluster":
    name = os.environ["WC_CLUSTER"]
    pathlib.Path(f"app/{name}/fast.py").write_text(f"FAST = {name!r}\n")
'''


def test_run_with_a_goal_plans_runs_and_integrates(tmp_path: Path) -> None:
    repo = planted_repo(tmp_path)
    agent = tmp_path / "roles.py"
    agent.write_text(ROLES)
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home"),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240"}
    res = subprocess.run([*CLI, "run", "--goal", "Add a fast path", "--repo", str(repo),
                          "--agent-cmd", f"{sys.executable} {agent}"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert "integrated and verified" in res.stdout
    base = "clusters/fast-path/base"
    assert "clusters:" in git(repo, "show", f"{base}:.work-clusters/fast-path.yaml")  # committed like any plan
    merged = git(repo, "ls-tree", "-r", "--name-only", "clusters/fast-path/integration").splitlines()
    assert {f"app/{c}/fast.py" for c in PIECES} <= set(merged)
    both = subprocess.run([*CLI, "run", "plan.yaml", "--goal", "x", "--repo", str(repo)], capture_output=True,
                          text=True, cwd=tmp_path)
    assert both.returncode == 2 and "not both" in both.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_takes_a_goal_instead_of_a_plan(tmp_path: Path) -> None:
    """From the UI or Python: no plan file, a goal; identify-clusters plans and publishes it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from prefect_work_clusters.flows.work_clusters import work_clusters

    repo = planted_repo(tmp_path)
    agent = tmp_path / "roles.py"
    agent.write_text(ROLES)
    state = work_clusters(repo=str(repo), goal="Add a fast path", agent_cmd=f"{sys.executable} {agent}",
                          return_state=True)
    assert state.is_completed(), state.message
    with get_client(sync_client=True) as client:
        run = ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
        (artifact,) = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["plan-fast-path"]), flow_run_id=run))
    assert "For the goal: Add a fast path" in str(artifact.data) and "name: fast-path" in str(artifact.data)
    assert "clusters:" in git(repo, "show", "clusters/fast-path/base:.work-clusters/fast-path.yaml")
