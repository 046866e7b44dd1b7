"""The conflict ladder on real repos with real agent scripts, without Prefect: which tier settles
what, what is rejected, what is left for a person, and the change accounting."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.git import changes as gitchanges
from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git import history as githistory
from prefect_work_clusters.tasks.git import worktrees as gitworktrees
from prefect_work_clusters.tasks.integration.integrate import integrate_branches
from prefect_work_clusters.tasks.integration.land import land, refusals
from tests.conftest import git, write_agent
from tests.integration_helpers import (
    add_to_registry,
    checks,
    commit_cluster,
    integrate,
    py,
    setup,
    with_integration_agent,
)

REGISTRY_OK = py("from app.registry import REGISTRY; assert REGISTRY == ['core', 'api', 'ui', 'db'], REGISTRY")

# Records every call (its WC_* environment) so a test can tell whether, and how, the agent ran.
RECORD = """
import json
wt = pathlib.Path(os.environ["WC_WORKTREE"])
calls = pathlib.Path(os.environ["CALLS"])
env = {k: v for k, v in os.environ.items() if k.startswith("WC_")}
if os.environ.get("WC_FEEDBACK_FILE"):
    env["feedback"] = pathlib.Path(os.environ["WC_FEEDBACK_FILE"]).read_text()
with calls.open("a") as fh:
    fh.write(json.dumps(env) + "\\n")
"""
# A resolution that keeps both timeouts (every added line survives), and says why.
SEMANTIC = RECORD + """
assert os.environ["WC_CONFLICTS"] == "app/config.py", os.environ["WC_CONFLICTS"]
(wt / "app/config.py").write_text(
    "PROFILE = 'dev'\\nif PROFILE == 'api':\\n    TIMEOUT = 60\\nelse:\\n    TIMEOUT = 10\\n")
pathlib.Path(os.environ["WC_DECISIONS_FILE"]).write_text(
    "## app/config.py (hunk 1)\\n\\napi needs 60 s and ui 10 s: both kept, chosen by profile.\\n")
"""
LOSSY = RECORD + """
subprocess.run(["git", "checkout", "--ours", "--", "app/config.py"], check=True)
"""
MARKERS = RECORD + """
(wt / "junk.txt").write_text("scratch the agent left")
print("pretending to have resolved it")
"""


def calls(tmp_path: Path) -> list[dict[str, str]]:
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(autouse=True)
def calls_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLS", str(tmp_path / "calls.jsonl"))


def timeouts(ctx: RunContext) -> None:
    """api and ui change the same line differently: a true semantic conflict."""
    commit_cluster(ctx, "api", {"app/config.py": "PROFILE = 'dev'\nTIMEOUT = 60\n"})
    commit_cluster(ctx, "ui", {"app/config.py": "PROFILE = 'dev'\nTIMEOUT = 10\n"})


def test_three_clusters_appending_to_a_registry_resolve_additively_without_the_agent(tmp_path: Path) -> None:
    never = write_agent(tmp_path, RECORD + "sys.exit(9)")
    ctx, base = setup(tmp_path, verify=[REGISTRY_OK], integration_agent_cmd=never)
    for cluster in ("api", "ui", "db"):
        add_to_registry(ctx, cluster)
    assert not ctx.integration_worktree.exists()

    result = integrate(ctx, base)

    assert result.ok, result.instructions
    assert calls(tmp_path) == []  # the agent was configured, and never ran
    assert result.preflight is not None and result.preflight.start == base
    assert [m.status for m in result.preflight.merges] == ["clean", "conflict", "conflict"]
    assert [[c.path for c in m.conflicts] for m in result.preflight.merges] == [
        [], ["app/registry.py"], ["app/registry.py"]]
    assert [s.conflicts for s in result.steps] == [[], ["app/registry.py"], ["app/registry.py"]]
    ui, db = result.steps[1].files[0], result.steps[2].files[0]
    assert [(a.tier, a.outcome) for a in ui.attempts] == [("git", "unresolved"), ("additive", "resolved")]
    assert (ui.ours, ui.theirs, db.ours, db.resolved_by) == (["api"], "ui", ["api", "ui"], "additive")
    assert [(d.file, d.theirs, d.tier) for d in result.decisions] == [
        ("app/registry.py", "ui", "additive"), ("app/registry.py", "db", "additive")]
    assert result.decisions[0].verification.startswith("passed at")
    assert result.accounting and result.accounting.ok and not result.accounting.issues
    assert [c.added for c in result.accounting.clusters] == [2, 2, 2]
    assert git(ctx.repo, "show", f"{result.final_sha}:app/registry.py") == \
        "REGISTRY = [\n    'core',\n    'api',\n    'ui',\n    'db',\n]"


def test_a_semantic_conflict_goes_to_the_agent_and_rerere_replays_it_later(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path, integration_agent_cmd=write_agent(tmp_path, SEMANTIC))
    timeouts(ctx)

    result = integrate(ctx, base)

    assert result.ok, result.instructions
    (f,) = result.steps[1].files
    assert [(a.tier, a.outcome) for a in f.attempts] == [
        ("git", "unresolved"), ("additive", "not-applicable"), ("mergiraf", "unavailable"), ("agent", "resolved")]
    assert f.hunks[0].ours == "TIMEOUT = 60\n" and f.hunks[0].base == "TIMEOUT = 30\n"
    (decision,) = result.decisions
    assert (decision.file, decision.hunk, decision.ours, decision.theirs, decision.tier) == (
        "app/config.py", 1, ["api"], "ui", "agent")
    assert "chosen by profile" in decision.reason
    (call,) = calls(tmp_path)
    assert call["WC_ROLE"] == "integration" and call["WC_CLUSTER"] == "integration"
    assert call["WC_BRANCH"] == "clusters/shop/integration" and call["WC_ATTEMPT"] == "1"
    assert "feedback" not in call and Path(call["WC_DECISIONS_FILE"]).parent.name == "decisions"
    prompt = Path(call["WC_PROMPT_FILE"]).read_text()
    assert "`app/config.py`: ours = api (already merged); theirs = ui" in prompt and "WC_DECISIONS_FILE" in prompt
    # The agent's own lines (the if/else) are listed as its, explained by its decision.
    assert result.accounting and result.accounting.ok
    (mine,) = result.accounting.issues
    assert (mine.kind, mine.by, mine.lines) == ("new", ["integration"], ["else:", "if PROFILE == 'api':"])
    assert "chosen by profile" in mine.reason and "integration agent" in mine.explained_by

    # Integrate again from scratch with no agent at all: rerere replays the recorded resolution.
    gitworktrees.remove_worktree(ctx.repo, ctx.integration_worktree, force=True)
    githistory.delete_branch(ctx.repo, ctx.integration_branch)
    again = integrate(with_integration_agent(ctx, None), base)
    assert again.steps[1].files[0].resolved_by == "git" and again.steps[1].status == "merged"
    assert len(calls(tmp_path)) == 1


def test_a_lossy_agent_is_caught_by_the_change_accounting_and_land_refuses(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path, integration_agent_cmd=write_agent(tmp_path, LOSSY))
    timeouts(ctx)
    main = git(ctx.repo, "rev-parse", "main")

    result = integrate(ctx, base)

    assert result.all_merged and result.verified and not result.ok
    assert result.accounting is not None
    (lost,) = result.accounting.unexplained
    assert (lost.path, lost.kind, lost.by, lost.lines) == ("app/config.py", "lost", ["ui"], ["TIMEOUT = 10"])
    assert [(c.cluster, c.lost) for c in result.accounting.clusters] == [("api", 0), ("ui", 1), ("db", 0)]
    assert refusals(result) == ["changes not accounted for: 1 lost in app/config.py (ui)"]
    landed = land(ctx, result)
    assert not landed.landed and "lost" in landed.message
    assert git(ctx.repo, "rev-parse", "main") == main


def test_an_agent_leaving_markers_is_rejected_and_the_conflict_left_clean_for_a_person(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path, retries=1, integration_agent_cmd=write_agent(tmp_path, MARKERS))
    timeouts(ctx)

    result = integrate(ctx, base)

    step = result.steps[1]
    assert (step.status, result.steps[2].status) == ("conflict", "not-reached") and not result.ok
    agent = [a for a in step.files[0].attempts if a.tier == "agent"]
    assert [a.outcome for a in agent] == ["rejected", "rejected"]
    assert "leftover conflict markers" in agent[0].detail
    first, second = calls(tmp_path)
    assert second["WC_ATTEMPT"] == "2" and "leftover conflict markers" in second["feedback"]
    wt = ctx.integration_worktree
    assert not (wt / "junk.txt").exists()  # nothing of the rejected attempt is left for the person
    assert git(wt, "rev-parse", "MERGE_HEAD") == git(ctx.repo, "rev-parse", "clusters/shop/ui")
    assert git(wt, "diff", "--name-only", "--diff-filter=U") == "app/config.py"
    assert "||||||| " in (wt / "app/config.py").read_text()  # git's own diff3 conflict, for the person
    assert result.decisions[0].tier == "person" and "agent (rejected)" in result.decisions[0].reason


MERGIRAF_CASES = {
    "resolves": ("PROFILE = 'dev'\nTIMEOUT = 60\nTIMEOUT_UI = 10\n", 0, "resolved"),
    "leaves-markers": ("<<<<<<< a\nTIMEOUT = 60\n=======\nTIMEOUT = 10\n>>>>>>> b\n", 0, "rejected"),
    "fails": ("", 1, "unresolved"),  # git's checkout -m would keep ours: its failure must be seen
}


@pytest.mark.parametrize("case", list(MERGIRAF_CASES))
def test_mergiraf_on_path_is_used_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    resolution, status, outcome = MERGIRAF_CASES[case]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "mergiraf"
    stand_in.write_text(f"#!{sys.executable}\nimport json, os, pathlib, sys\n"
                        f"pathlib.Path(os.environ['CALLS']).with_name('mergiraf.json').write_text(json.dumps(sys.argv))\n"
                        f"if {status} == 0:\n    pathlib.Path(sys.argv[4]).write_text({resolution!r})\n"
                        f"sys.exit({status})\n")
    stand_in.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    ctx, base = setup(tmp_path)
    attributes = gitops.common_dir(ctx.repo) / "info" / "attributes"
    attributes.write_text("*.png binary\n")
    timeouts(ctx)

    result = integrate(ctx, base)

    argv = json.loads((tmp_path / "mergiraf.json").read_text())
    assert argv[1:3] == ["merge", "--git"] and argv[argv.index("-p") + 1] == "app/config.py"
    assert attributes.read_text() == "*.png binary\n"  # our temporary driver line is gone again
    (f,) = result.steps[1].files
    mergiraf = next(a for a in f.attempts if a.tier == "mergiraf")
    assert mergiraf.outcome == outcome
    if outcome == "resolved":
        assert f.resolved_by == "mergiraf" and result.steps[2].status == "merged"
        assert result.accounting and not result.ok  # TIMEOUT = 10 became TIMEOUT_UI = 10
        assert ("lost", ["ui"]) in [(i.kind, i.by) for i in result.accounting.unexplained]
    else:
        assert result.steps[1].status == "conflict" and f.resolved_by is None
        assert "||||||| " in (ctx.integration_worktree / "app/config.py").read_text()
    if case == "leaves-markers":
        assert "leftover conflict markers" in mergiraf.detail


def test_verification_failing_is_fixed_by_the_agent_on_attempt_2(tmp_path: Path) -> None:
    fixer = write_agent(tmp_path, RECORD + """
if os.environ["WC_ATTEMPT"] == "2":
    (wt / "app" / "flag.py").write_text("ON = True\\n")
    pathlib.Path(os.environ["WC_DECISIONS_FILE"]).write_text(
        '[{"file": "app/flag.py", "reason": "the verify command imports app.flag, which no cluster wrote"}]')
""")
    leaves_output = py("import pathlib; pathlib.Path('verify.out').write_text('a report')")
    ctx, base = setup(tmp_path, verify=[REGISTRY_OK, leaves_output, py("import app.flag")], retries=1,
                      integration_agent_cmd=fixer)
    for cluster in ("api", "ui", "db"):
        add_to_registry(ctx, cluster)

    result = integrate(ctx, base)

    assert result.ok and result.verified
    assert [(r.after, r.ok) for r in result.verify_rounds] == [
        ("the merges", False), ("integration agent fix, attempt 1", False), ("integration agent fix, attempt 2", True)]
    first, second = calls(tmp_path)
    assert first["WC_CONFLICTS"] == "" and "ModuleNotFoundError" in first["feedback"]
    assert second["WC_ATTEMPT"] == "2" and "WC_DECISIONS_FILE" in second
    assert git(ctx.repo, "log", "-1", "--format=%s", ctx.integration_branch) == \
        "work-clusters: integration fix for verification, attempt 2"
    # Only the agent's work is committed, not what a verify command left; a re-run is not blocked by it.
    assert git(ctx.repo, "show", "--format=", "--name-only", ctx.integration_branch) == "app/flag.py"
    assert (ctx.integration_worktree / "verify.out").exists()
    again = integrate(ctx, base)
    assert again.ok and [s.reason for s in again.steps] == ["merged earlier"] * 3 and len(calls(tmp_path)) == 2
    # Each "merged earlier" row names the merge that brought its cluster in, not the branch's tip.
    assert [s.commit for s in again.steps] == [s.commit for s in result.steps]
    assert len({s.commit for s in again.steps}) == 3
    assert result.decisions[-1].file == "app/flag.py" and "verification fix (attempt 2)" in result.decisions[-1].reason


def test_an_unresolvable_conflict_is_left_for_a_person_whose_instructions_work(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path)  # no integration agent at all
    timeouts(ctx)
    commit_cluster(ctx, "db", {"db/impl.py": "NAME = 'db'\n"})

    result = integrate(ctx, base)

    wt = ctx.integration_worktree
    assert [s.status for s in result.steps] == ["merged", "conflict", "not-reached"]
    assert [(a.tier, a.outcome) for a in result.steps[1].files[0].attempts][-2:] == [
        ("agent", "unavailable"), ("person", "unresolved")]
    # The integration branch is intact: still at api's merge, the merge of ui in progress on top.
    assert git(ctx.repo, "rev-parse", ctx.integration_branch) == result.steps[0].commit
    assert git(ctx.repo, "fsck", "--no-progress", "--no-dangling") == ""
    subprocess.run(["git", "-C", str(wt), "merge", "--abort"], check=True)  # the give-up path works ...
    assert not gitchanges.has_changes(wt)
    result = integrate(ctx, base)  # ... and integrating again stops at the same place

    # Follow the instructions as printed: resolve the file, run the commands in the worktree.
    (wt / "app/config.py").write_text("PROFILE = 'dev'\nTIMEOUT = 60\nUI_TIMEOUT = 10\n")
    lines = [line.strip() for line in result.instructions.splitlines()]
    cwd = Path(shlex.split(next(line for line in lines if line.startswith("cd ")))[1])
    assert cwd == wt
    person = Path(shlex.split(next(line for line in lines if line.startswith("If you drop")).split(" in ", 1)[1])[0])
    for line in lines:
        if line.startswith("git add") or line.startswith("git commit"):
            subprocess.run(["git", "-c", "user.name=P", "-c", "user.email=p@x", *shlex.split(line)[1:]],
                           cwd=cwd, check=True)
    lost = integrate(ctx, base)
    assert [s.status for s in lost.steps] == ["merged", "merged", "merged"] and lost.accounting
    assert [(i.kind, i.by) for i in lost.accounting.unexplained] == [("lost", ["ui"]), ("new", ["integration"])]
    person.write_text("## app/config.py\n\nui's timeout is its own setting now: UI_TIMEOUT.\n")
    final = integrate_branches(ctx, base, checks(ctx, base))
    assert final.ok and final.accounting and final.accounting.issues[0].reason.startswith("ui's timeout")
    assert final.accounting.issues[0].explained_by == "a person (person.md, heading)"
    assert git(ctx.repo, "show", f"{final.final_sha}:app/config.py").endswith("UI_TIMEOUT = 10")


def test_an_untracked_file_in_the_way_stops_the_merge_and_is_kept(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path)
    assert integrate(ctx, base).ok  # nothing to merge yet; the integration worktree now exists
    in_the_way = ctx.integration_worktree / "api" / "impl.py"
    in_the_way.write_text("left by a verify command\n")
    add_to_registry(ctx, "api")

    result = integrate(ctx, base)

    assert result.steps[0].status == "conflict" and "git refused to merge" in result.steps[0].reason
    assert "did not start" in result.instructions and "move it out of the worktree" in result.instructions
    assert in_the_way.read_text() == "left by a verify command\n"
    assert not gitchanges.merge_in_progress(in_the_way.parent)
    in_the_way.unlink()
    assert integrate(ctx, base).ok
