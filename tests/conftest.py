"""Shared fixtures: real git repos in temp dirs, real agent scripts, one Prefect test harness."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

# Before Prefect is imported anywhere: a private home, and no telemetry from an offline machine.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="wc-prefect-home-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

GIT_ID = ["-c", "user.name=Test User", "-c", "user.email=test@example.com"]
CLI = [sys.executable, "-m", "prefect_work_clusters.flows.cli"]  # `work-clusters`, as a user runs it


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *GIT_ID, *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()


# The user's side of every repo a test made, as it was made (or re-baselined): checked after
# every test, so a run that touches a user's branch, HEAD, working tree or untracked files fails
# whichever test caused it.
_USER_SIDE: dict[Path, dict[str, object]] = {}


def rebaseline(repo: Path) -> None:
    """The test itself changed the user's side of ``repo`` (as a user would): check from here."""
    _USER_SIDE[repo] = snapshot(repo)


def user_changes_expected(repo: Path) -> None:
    """The test asked for the user's side to change (``--land``, an agent moving the base)."""
    _USER_SIDE.pop(repo, None)


@pytest.fixture(autouse=True)
def users_repo_untouched() -> Iterator[None]:
    _USER_SIDE.clear()
    yield
    for repo, before in list(_USER_SIDE.items()):
        if repo.is_dir():
            assert snapshot(repo) == before, f"the user's side of {repo} changed during the test"


def make_repo(root: Path, files: dict[str, str], name: str = "repo") -> Path:
    """A real git repo with ``files`` committed on ``main``; its user's side is checked after the test."""
    repo = root / name
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    _USER_SIDE[repo] = snapshot(repo)
    return repo


def write_agent(root: Path, body: str, name: str = "agent.py") -> str:
    """A real agent: a Python script run as a subprocess. Returns its --agent-cmd string."""
    path = root / name
    path.write_text("import os, subprocess, sys, pathlib\n" + textwrap.dedent(body))
    return f"{sys.executable} {path}"


def snapshot(repo: Path) -> dict[str, object]:
    """The user's side of a repo: branch, HEAD, status, and every file's bytes outside .git."""
    files = {}
    for path in sorted(repo.rglob("*")):
        if ".git" in path.relative_to(repo).parts or not path.is_file():
            continue
        files[str(path.relative_to(repo))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "branch": git(repo, "symbolic-ref", "--short", "HEAD"),
        "head": git(repo, "rev-parse", "HEAD"),
        "main": git(repo, "rev-parse", "refs/heads/main"),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
        "files": files,
    }


def branches(repo: Path) -> list[str]:
    return git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads/").splitlines()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=600):  # measured: 186 s on a loaded 2-core machine
        yield


@pytest.fixture(autouse=True)
def _subprocesses_use_the_sessions_server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every process a test starts (the CLI above all) talks to this session's Prefect server: in
    local mode each CLI call starts a temporary server of its own, 10-25 s here (measured: the demo
    takes 24-27 s local, 37-40 s with a fresh PREFECT_HOME, 13.7 s against a running server).

    Tests marked ``local_mode`` check what a user without a server gets (the README's demo, an
    interrupt, a killed run): their processes start their own temporary server, as a user's do.
    A test with a ``stack`` (tests/server_helpers.py) has a real server of its own."""
    if "stack" in request.fixturenames:
        return
    if request.node.get_closest_marker("local_mode"):
        monkeypatch.delenv("PREFECT_API_URL", raising=False)
        return
    from prefect.settings import PREFECT_API_URL

    request.getfixturevalue("prefect_harness")
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Prefect database already migrated to this Prefect's schema, made once for the whole test
    session (both xdist workers; ``prefect server database upgrade`` takes 16 s here, idle)."""
    shared = tmp_path_factory.getbasetemp().parent  # the workers' base temp folders are beside each other
    made = shared / "migrated-prefect-home" / "prefect.db"
    with (shared / "migrated-prefect-home.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not made.exists():
            home = made.parent.with_name("migrated-prefect-home.making")
            shutil.rmtree(home, ignore_errors=True)
            env = {**os.environ, "PREFECT_HOME": str(home)}
            env.pop("PREFECT_API_URL", None)
            subprocess.run([str(Path(sys.executable).with_name("prefect")), "server", "database", "upgrade", "-y"],
                           env=env, check=True, capture_output=True, timeout=600)
            home.rename(made.parent)
    return made


def migrated_home(home: Path, db: Path) -> Path:
    """``home`` as a PREFECT_HOME after a user's first run: its database made, so its temporary
    server does not migrate a new one. A test of a first run on a new machine leaves its home empty."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(db, home / "prefect.db")
    return home


@contextmanager
def git_calls() -> Iterator[list[tuple[str, ...]]]:
    """The arguments of every git process the project starts inside the block (all start in
    ``tasks.git.core.run``; modules call it through the module, so the count sees them)."""
    from prefect_work_clusters.tasks.git import core

    calls: list[tuple[str, ...]] = []
    inner = core.run

    def counted(cwd: Path, *args: str, **kw: Any) -> core.Result:
        calls.append(args)
        return inner(cwd, *args, **kw)

    core.run = counted  # type: ignore[assignment]
    try:
        yield calls
    finally:
        core.run = inner  # type: ignore[assignment]


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``work-clusters ARGS`` in ``cwd`` with a home of its own there, captured."""
    full = {**os.environ, "PREFECT_HOME": str(cwd / ".prefect-home"), **(env or {})}
    return subprocess.run([*CLI, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=timeout)


def read_artifact(state: object, key: str) -> object:
    """The latest artifact ``key`` that the flow run behind ``state`` published."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    run_id = state.state_details.flow_run_id  # type: ignore[attr-defined]
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]),
                                           flow_run_id=ArtifactFilterFlowRunId(any_=[run_id])),
            sort=ArtifactSort.CREATED_DESC)
    assert found, f"flow run {run_id} published no artifact {key}"
    return found[0]


@pytest.fixture
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the loop tests' agents (tests.loop_helpers.WRITER) record what they saw."""
    path = tmp_path / "records"
    path.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(path))
    return path


def stand_in(root: Path, name: str, body: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An executable called ``name`` (a paid agent CLI cannot run here) running ``body`` as
    Python, first on PATH for the rest of the test."""
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / name
    exe.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    return exe


def user_project(folder: Path) -> Path:
    """A user's own Prefect project: its own ``flows/``, ``tasks.py`` and ``blocks/``, the names a
    Prefect project almost always has, each answering who it is (``WHO``)."""
    for rel, text in {"flows/__init__.py": "", "flows/etl.py": "WHO = 'user flows'\n",
                      "tasks.py": "WHO = 'user tasks'\n", "blocks/__init__.py": "WHO = 'user blocks'\n",
                      "deployments/__init__.py": "WHO = 'user deployments'\n"}.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder
