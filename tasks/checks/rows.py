"""A contract check's rows: what each check found, for one cluster or the integrated tree, and
how they are shown (problems first, each status with its mark) in the artifacts and the report."""

from __future__ import annotations

from typing import Literal

from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from prefect_work_clusters.tasks.checks.conformance import Status
from prefect_work_clusters.tasks.context import RunContext

CheckName = Literal["scope", "symlinks", "contracts", "conformance", "independence", "git-dir", "verify", "verdict"]
CheckStatus = Literal["ok", "empty", "violation", "agent-failed"]
BLOCKING = ("violation", "failed")
VERDICT: dict[CheckStatus, Status] = {"ok": "ok", "empty": "warning", "violation": "violation",
                                      "agent-failed": "failed"}


class CheckRow(BaseModel):
    cluster: str
    check: CheckName
    status: Status
    evidence: list[str] = Field(default_factory=list)
    note: str = ""


class ClusterCheck(BaseModel):
    cluster: str
    status: CheckStatus
    mergeable: bool
    files_changed: list[str] = Field(default_factory=list)
    outside_scope: list[str] = Field(default_factory=list)
    contracts_touched: list[str] = Field(default_factory=list)
    verify: str = "none"
    note: str = ""
    rows: list[CheckRow] = Field(default_factory=list)
    head_sha: str | None = Field(default=None, description="the branch head checked: integration merges this "
                                                           "commit, never what the branch points to later")


def blocking(rows: list[CheckRow]) -> list[CheckRow]:
    """The rows that keep a cluster out of integration (unless the policy is warn)."""
    return [r for r in rows if r.status in BLOCKING and r.check not in ("verify", "verdict")]


MARK: dict[str, str] = {"ok": "✅", "warning": "⚠️", "violation": "❌", "failed": "❌", "skipped": ""}
_ORDER = {"violation": 0, "failed": 0, "warning": 1, "ok": 2, "skipped": 3}


def shown(rows: list[CheckRow]) -> list[CheckRow]:
    """The rows worth a line, problems first: a check that did not apply (skipped) is noise."""
    return sorted((r for r in rows if r.status != "skipped"), key=lambda r: _ORDER[r.status])


def summary(rows: list[CheckRow]) -> str:
    """One line of counts, problems first.

    >>> summary([CheckRow(cluster="a", check="scope", status="violation"),
    ...          CheckRow(cluster="a", check="verify", status="ok")])
    '❌ 1 violation · ✅ 1 ok'
    """
    counts = {s: sum(1 for r in rows if r.status == s) for s in ("violation", "failed", "warning", "ok")}
    return " · ".join(f"{MARK[s]} {n} {s}" for s, n in counts.items() if n) or "no checks applied"


SHOWN = 10  # evidence items in a table cell; the merge report lists the rest below its table


def check_table(rows: list[CheckRow]) -> list[dict[str, str]]:
    """The artifact's rows: problems first, each status with its mark, empty cells empty."""
    def short(items: list[str]) -> str:
        return " · ".join(items[:SHOWN]) + (f" (+{len(items) - SHOWN} more)" if len(items) > SHOWN else "")

    return [{"cluster": r.cluster, "check": r.check, "status": f"{MARK[r.status]} {r.status}",
             "note": r.note, "evidence": short(r.evidence)} for r in shown(rows)]


def all_rows(checks: list[ClusterCheck]) -> list[CheckRow]:
    return [r for c in checks for r in c.rows]


def check_markdown(checks: list[ClusterCheck], integrated: list[CheckRow] | None = None) -> list[str]:
    """For ``merge-report.md``: the counts, then only the rows that need a look (the full table
    is the ``contract-check-<plan>`` artifact and report.json)."""
    rows = all_rows(checks) + (integrated or [])
    problems = [r for r in check_table(rows) if not r["status"].endswith(" ok")]
    cols = ["cluster", "check", "status", "note", "evidence"]
    table = [f"| {' | '.join(cols)} |", "|" + "---|" * len(cols),
             *[f"| {' | '.join(r[c].replace('|', chr(92) + '|') for c in cols)} |" for r in problems]]
    # A cell shows SHOWN items; what a person must see (every planted file, every ref) is listed whole.
    full = [f"- {r.cluster} · {r.check}, all {len(r.evidence)}: " + " · ".join(r.evidence)
            for r in shown(rows) if r.status != "ok" and len(r.evidence) > SHOWN]
    return [f"**{summary(rows)}**", *(["", *table] if problems else []), *(["", *full] if full else [])]


def publish(ctx: RunContext, checks: list[ClusterCheck]) -> None:
    rows = all_rows(checks)
    create_table_artifact(key=f"contract-check-{ctx.plan.name}", table=check_table(rows),
                          description=f"Contract check of plan {ctx.plan.name}: {summary(rows)}")


def publish_integrated(ctx: RunContext, rows: list[CheckRow]) -> None:
    create_table_artifact(key=f"contract-check-integrated-{ctx.plan.name}", table=check_table(rows),
                          description=f"Contract check of the integrated tree of plan {ctx.plan.name}: "
                                      f"{summary(rows)}")
