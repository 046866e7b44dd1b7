"""A CLI run's head start (issue 16): its worktrees begun while Prefect starts, adopted by the
flow's create-worktrees step only when they were made for that very run; against real git, without
Prefect (the CLI's whole path is in test_prefect_startup)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from prefect_work_clusters.flows import startup
from prefect_work_clusters.flows.cli_run import execute
from prefect_work_clusters.flows.server_process import PrefectUnavailable
from prefect_work_clusters.tasks import head_start as head_start_module
from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.errors import WorkClustersError
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.head_start import adopt, begin_ahead, head_start, prepare_ahead, settle_ahead
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.resolve import resolve_run
from prefect_work_clusters.tasks.worktrees import Prepared, prepare
from tests.conftest import git
from tests.loop_helpers import shop_repo


def _ctx(tmp_path: Path, **options: object) -> RunContext:
    repo, plan = shop_repo(tmp_path)
    return resolve_run(plan, repo, RunOptions.model_validate({"agent_cmd": "true", **options}))


def test_the_run_it_was_made_for_adopts_it_once(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    start = prepare_ahead(ctx)
    assert head_start(ctx) is start
    prepared = adopt(ctx)
    assert prepared is not None and prepared.made_ahead > 0
    assert [r.cluster for r in prepared.records] == ["api", "ui", "db"]
    for record in prepared.records:
        assert (record.worktree / record.cluster / "__init__.py").is_file()
        assert gitops.head(record.worktree) == prepared.base_sha
    assert head_start(ctx) is None and adopt(ctx) is None  # taken once: a later run prepares its own
    # What the flow would have made itself from the same state: the same base, the same records.
    again = prepare(ctx)
    assert again.base_sha == prepared.base_sha and again.made_ahead == 0
    assert [r.model_dump() for r in again.records] == [r.model_dump() for r in prepared.records]


def test_another_run_or_an_edited_plan_prepares_its_own(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    prepare_ahead(ctx).prepared.result()
    assert adopt(ctx.model_copy(update={"land": True})) is None  # resolved otherwise: not this run's
    prepare_ahead(ctx).prepared.result()
    ctx.plan_file.write_text(ctx.plan_file.read_text() + "# edited after the head start began\n")
    assert adopt(ctx) is None
    contract = ctx.repo / "contracts" / "api.py"
    prepare_ahead(ctx).prepared.result()
    contract.write_text(contract.read_text() + "# edited too\n")
    assert adopt(ctx) is None
    git(ctx.repo, "checkout", "-q", "--", "contracts/api.py")


def test_a_head_start_that_failed_leaves_the_error_to_the_run(tmp_path: Path) -> None:
    repo, plan = shop_repo(tmp_path)
    git(repo, "branch", "feature")
    ctx = resolve_run(plan, repo, RunOptions(agent_cmd="true", base="feature"))
    git(repo, "branch", "-D", "feature")  # gone between the check and the head start
    start = prepare_ahead(ctx)
    with pytest.raises(WorkClustersError, match="no longer names a commit"):
        start.prepared.result()
    assert adopt(ctx) is None
    # The flow's own step meets the same error and reports it as any run's.
    with pytest.raises(WorkClustersError, match="base ref 'feature' no longer names a commit"):
        prepare(ctx)


@pytest.mark.parametrize("why", ["remote", "rerun investigation"])
def test_no_head_start_where_the_flow_does_something_first(tmp_path: Path, why: str) -> None:
    ctx = _ctx(tmp_path)
    if why == "remote":
        ctx = ctx.model_copy(update={"remote": "https://example.invalid/shop.git"})
    else:
        clusters = [c.model_copy(update={"kind": "investigation"}) for c in ctx.plan.clusters]
        ctx = ctx.model_copy(update={"rerun": True, "plan": ctx.plan.model_copy(update={"clusters": clusters})})
        assert ctx.plan.investigates
    begin_ahead(ctx)
    assert head_start(ctx) is None
    assert not ctx.workspace.exists()  # nothing was made


def test_begin_ahead_reads_the_checkout_beside_the_worktrees(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    begin_ahead(ctx)
    start = head_start(ctx)
    assert start is not None and start.checkout is not None
    assert start.checkout.result() == {}  # the user's checkout, clean
    assert adopt(ctx) is not None


def test_a_head_start_no_flow_adopted_is_waited_for_then_forgotten(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    begin_ahead(ctx)
    start = head_start(ctx)
    assert start is not None and start.checkout is not None
    settle_ahead(ctx)  # as the CLI does before it lets the run lock go
    assert start.prepared.done() and start.checkout.done()
    assert head_start(ctx) is None and adopt(ctx) is None


def test_the_head_start_and_the_git_it_starts_yield_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's import and the temporary server's start, beside it on the critical path, go
    first; the CLI's own thread keeps its priority."""
    ctx = _ctx(tmp_path)
    seen: list[tuple[int, str]] = []

    def prepare_and_look(ctx: RunContext) -> Prepared:
        nice = subprocess.run(["nice"], capture_output=True, text=True, check=True).stdout.strip()  # a child's
        seen.append((os.getpriority(os.PRIO_PROCESS, threading.get_native_id()), nice))
        return prepare(ctx)

    monkeypatch.setattr(head_start_module, "prepare", prepare_and_look)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert prepare_ahead(ctx).prepared.result().records
    wanted = min(19, mine + head_start_module.HEAD_START_NICE)
    assert seen == [(wanted, str(wanted))]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
    assert adopt(ctx) is not None


# The CLI's steps up to its head start, in a process of their own: the checks of ``run`` (with the
# CLI's modules loaded), the plan's run lock, the head start begun and waited for.
BEFORE_PREFECT = """
import sys
from pathlib import Path
from prefect_work_clusters.flows import cli
from prefect_work_clusters.tasks.head_start import begin_ahead, settle_ahead
from prefect_work_clusters.tasks.options import RunOptions
from prefect_work_clusters.tasks.recovery import run_lock
from prefect_work_clusters.tasks.resolve import resolve_any

ctx = resolve_any(sys.argv[1], sys.argv[2], RunOptions(agent_cmd="true"))
with run_lock(ctx, share=True):
    begin_ahead(ctx)
    settle_ahead(ctx)
print(sorted(m for m in sys.modules if m.split(".")[0] == "prefect"))
print(sorted(p.name for p in ctx.workspace.iterdir()))
"""


def test_the_head_start_begins_before_prefect_is_imported(tmp_path: Path) -> None:
    """What the CLI does before its head start loads no Prefect module, so that the worktrees are
    made while Prefect is imported (~2 s of one core), against a running server as in local mode."""
    repo, plan = shop_repo(tmp_path)
    res = subprocess.run([sys.executable, "-c", BEFORE_PREFECT, str(plan), str(repo)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    modules, made = res.stdout.splitlines()
    assert modules == "[]"
    assert made == str(sorted([".runs", "api", "db", "ui"]))


def test_a_run_stopped_before_its_flow_ends_its_head_start_first(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The head start begins before Prefect starts; whatever stops the run before its flow adopts
    it (here a temporary server that never comes up), it has ended, and is forgotten, before the
    CLI lets the plan's run lock go."""
    ctx = _ctx(tmp_path)

    def no_server() -> None:
        raise PrefectUnavailable("Prefect's temporary server did not come up (simulated)")

    monkeypatch.setattr(startup, "start_server", no_server)
    with pytest.raises(PrefectUnavailable):
        execute(str(ctx.plan_file), str(ctx.repo), ctx.options, ctx.runs_dir, ahead=ctx)
    assert head_start(ctx) is None  # waited for, then forgotten
    assert all(ctx.worktree(c.name).is_dir() for c in ctx.plan.clusters)  # made, for the next run to go on from
