"""History replay (issue 13): 30 real more-itertools commits (tests/data) split into clusters, each
cluster's command agent cherry-picking its commits in order, integrated by the real flow, then
compared with the same commits applied in upstream order. Passes when the trees are equal and
the run passed, or when every differing file is named in the report and the run failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefect_work_clusters.flows.work_clusters import work_clusters
from tests.conftest import rebaseline
from tests.replay_helpers import SPLITS, Window, differences, load_window, plan_yaml, write_agent

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


def whole(w: Window) -> dict[str, list[str]]:
    """Every commit in one cluster, and a second cluster that has nothing to do."""
    return {"everything": list(w.commits), "idle": []}


def replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split_of: object) -> tuple[Window, dict, str]:  # type: ignore[type-arg]
    w = load_window(tmp_path)
    rebaseline(w.repo)  # from here on the user's side of the repo must not change
    split = split_of(w)  # type: ignore[operator]
    cmd, env = write_agent(tmp_path, split)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plan = tmp_path / "replay.yaml"
    plan.write_text(plan_yaml(w, split))
    state = work_clusters(plan=str(plan), repo=str(w.repo), agent_cmd=cmd, return_state=True)
    runs = tmp_path / "repo.clusters/replay/.runs"
    return w, json.loads((runs / "report.json").read_text()), (runs / "merge-report.md").read_text() + \
        str(state.message)


def test_a_split_that_loses_and_duplicates_work_is_reported_file_by_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w, report, text = replay(tmp_path, monkeypatch, SPLITS["by-area"])
    integ = report["integration"]
    diffs = differences(w, integ["final_sha"], integ["base_sha"])

    assert diffs, "this split is known to differ from upstream: the check below must have something to check"
    acc = integ["accounting"]
    named = {i["path"] for i in acc["issues"] if not i["reason"]} | {f["path"] for f in acc["findings"]}
    assert {d.path for d in diffs} <= named
    assert report["ok"] is False and "changes not accounted for" in text
    for d in diffs:
        assert f"`{d.path}`" in text, d.path
    # The shapes, from real history: functions bound twice and an __all__ entry listed twice.
    messages = [f["message"] for f in acc["findings"]]
    assert any("is listed twice in `__all__`" in m for m in messages)
    assert any("is bound twice at module level" in m for m in messages)


def test_a_faithful_replay_passes_with_nothing_to_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w, report, _ = replay(tmp_path, monkeypatch, whole)
    integ = report["integration"]

    assert differences(w, integ["final_sha"], integ["base_sha"]) == []
    assert report["ok"] is True, (report["clusters"], [s["status"] for s in integ["steps"]], integ["accounting"])
    assert integ["accounting"]["issues"] == [] and integ["accounting"]["findings"] == []
