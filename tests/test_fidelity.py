"""Merge fidelity (issue 13): the shapes real history produced, each after a merge git called clean,
are reported and fail the run; the integration agent gets them as feedback first; a sorted list
stays sorted; the terminal summary shows what the report shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefect_work_clusters.flows.summary import merge_cells, summary_lines
from prefect_work_clusters.tasks.integration.report import integration_markdown
from prefect_work_clusters.tasks.integration.resolvers import additive_resolve
from tests.conftest import git, write_agent
from tests.integration_helpers import commit_cluster, integrate, setup

CONFIG = "PROFILE = 'dev'\nTIMEOUT = 30\n"
# Upstream, api's commit came first and ui's widened the set later; merged, api's stale value is
# last and wins. Git sees two insertions far apart: a clean merge.
STALE = {"api": {"app/config.py": CONFIG + "LAZY = frozenset({'queue'})\n"},
         "ui": {"app/config.py": "LAZY = frozenset({'queue', 'threading'})\n" + CONFIG}}
NAMES = "__all__ = [\n    'alpha',\n    'delta',\n    'kappa',\n    'omega',\n]\n"
# Records what the integration agent was told; on a finding about LAZY it drops the stale line and
# says why in a bullet, as models write.
FIXER = """
feedback = pathlib.Path(os.environ.get("WC_FEEDBACK_FILE") or os.devnull).read_text()
pathlib.Path(os.environ["CALLS"]).open("a").write(json.dumps(feedback) + "\\n")
if "`LAZY` is bound twice" in feedback:
    config = pathlib.Path("app/config.py")
    config.write_text(config.read_text().replace("LAZY = frozenset({'queue'})\\n", ""))
    pathlib.Path(os.environ["WC_DECISIONS_FILE"]).write_text(
        "I removed the stale set.\\n\\n- app/config.py: ui widened LAZY after api set it; ui's value is kept.\\n")
"""


def test_a_stale_assignment_winning_after_a_clean_merge_fails_the_run(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path)
    for cluster, files in STALE.items():
        commit_cluster(ctx, cluster, files)

    result = integrate(ctx, base)

    assert [s.files for s in result.steps] == [[], [], []] and result.all_merged  # git merged it cleanly
    assert result.accounting is not None and not result.ok
    (finding,) = result.accounting.unexplained_findings
    assert (finding.path, finding.line) == ("app/config.py", 4) and "`LAZY` is bound twice" in finding.message
    report = "\n".join(integration_markdown(result))
    assert "`app/config.py` line 4: `LAZY` is bound twice" in report and "**unexplained**" in report


def test_the_integration_agent_gets_the_finding_fixes_it_and_the_fix_is_accounted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLS", str(tmp_path / "calls.jsonl"))
    ctx, base = setup(tmp_path, integration_agent_cmd=write_agent(tmp_path, "import json\n" + FIXER))
    for cluster, files in STALE.items():
        commit_cluster(ctx, cluster, files)

    result = integrate(ctx, base)

    (told,) = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert "`app/config.py` line 4: `LAZY` is bound twice" in told
    assert result.ok and result.accounting is not None
    assert git(ctx.repo, "show", f"{result.final_sha}:app/config.py") == \
        "LAZY = frozenset({'queue', 'threading'})\nPROFILE = 'dev'\nTIMEOUT = 30"
    # The agent removed api's line: charged to api, explained by the agent's bullet, quoted as taken.
    (issue,) = result.accounting.issues
    assert (issue.kind, issue.by, issue.lines) == ("lost", ["api"], ["LAZY = frozenset({'queue'})"])
    assert issue.explained_by == "the integration agent (verify-1.md, bullet)"
    assert issue.reason.startswith("app/config.py: ui widened LAZY")
    assert git(ctx.repo, "log", "-1", "--format=%s", result.final_sha) == \
        "work-clusters: integration fix for the change accounting, attempt 1"


def test_a_duplicated_all_entry_after_a_clean_merge_fails_the_run(tmp_path: Path) -> None:
    ctx, base = setup(tmp_path, extra={"app/registry.py": NAMES})
    commit_cluster(ctx, "api", {"app/registry.py": NAMES.replace("'alpha',\n", "'alpha',\n    'beta',\n")})
    commit_cluster(ctx, "ui", {"app/registry.py": NAMES.replace("'omega',\n", "'omega',\n    'beta',\n")})

    result = integrate(ctx, base)

    assert result.all_merged and [s.files for s in result.steps] == [[], [], []]
    assert result.accounting is not None and not result.ok
    assert [(f.path, f.line, f.message) for f in result.accounting.unexplained_findings] == [
        ("app/registry.py", 7, "'beta' is listed twice in `__all__`")]
    lines = _summary_lines_for(result)
    assert "error: app/registry.py:7: 'beta' is listed twice in `__all__`: unexplained" in lines


def _summary_lines_for(result: object) -> list[str]:
    from datetime import datetime, timezone

    from prefect_work_clusters.tasks.checks.rows import CheckRow, ClusterCheck
    from prefect_work_clusters.tasks.report import RunReport

    now = datetime.now(timezone.utc)
    report = RunReport(plan="shop", goal="", repo="r", workspace="w", base_ref="main", base_ref_sha="b",
                       base_sha="b", started_at=now, finished_at=now, ok=False, phases={}, clusters=[],
                       checks=[ClusterCheck(cluster="db", status="empty", mergeable=True, rows=[CheckRow(
                           cluster="db", check="scope", status="warning", note="the branch changed no file")])],
                       integration=result)  # type: ignore[arg-type]
    assert merge_cells(report)["db"] == "merged (changed nothing)"
    lines = summary_lines(report)
    assert "warning: db: scope: the branch changed no file" in lines
    return lines


def test_the_additive_tier_keeps_a_sorted_list_sorted_and_an_unsorted_one_in_order() -> None:
    def conflict(ours: str, theirs: str, before: str = "    'a',\n") -> str:
        return (f"__all__ = [\n{before}<<<<<<< HEAD\n{ours}||||||| base\n=======\n{theirs}>>>>>>> ui\n"
                "    'z',\n]\n")

    merged = additive_resolve("m.py", conflict("    'c',\n    'm',\n", "    'b',\n    'n',\n")).text
    assert merged == "__all__ = [\n    'a',\n    'b',\n    'c',\n    'm',\n    'n',\n    'z',\n]\n"
    # Not sorted around the hunk ('q' before it): ours then theirs, as before.
    kept = additive_resolve("m.py", conflict("    'c',\n", "    'b',\n", before="    'q',\n")).text
    assert kept == "__all__ = [\n    'q',\n    'c',\n    'b',\n    'z',\n]\n"
