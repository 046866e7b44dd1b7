"""Findings: what an investigation cluster writes, parsed into typed findings.

An investigation agent writes a markdown document to ``$WC_FINDINGS_FILE``. It may hold one or
more fenced ```json blocks of typed findings: a list of findings, or ``{"findings": [...]}``,
each with a title, a severity, the evidence, a location, a proposed fix and the repo paths it
concerns. The ```json fence is reserved for them, so a ```json block that is not findings is a
problem the agent is told about (other JSON goes in a plain fence).

Example::

    findings, problems = parse_findings(Path(".runs/findings/db.md").read_text(), "db")
    findings[0].id  # "db-1"

This module imports nothing of ours but the path rules and the run's context.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from markdown_it import MarkdownIt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from prefect_work_clusters.tasks.context import RunContext
from prefect_work_clusters.tasks.plan.paths import normalize, path_problem

Severity = Literal["critical", "high", "medium", "low", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")
MAX_PROBLEMS = 20


class Finding(BaseModel):
    """One typed finding, as an investigation agent writes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1, description="what is wrong, in one line")
    severity: Severity = Field(description="critical, high, medium, low or info")
    evidence: str = Field(default="", description="what was measured or seen, with numbers")
    location: str = Field(default="", description="where: file:line, function, query, endpoint")
    proposed_fix: str = Field(default="", description="what to change")
    paths: list[str] = Field(default_factory=list, description="repo paths the fix concerns")

    @field_validator("severity", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("evidence", mode="before")
    @classmethod
    def _join(cls, value: Any) -> Any:
        return "\n".join(str(v) for v in value) if isinstance(value, list) else value

    @field_validator("paths")
    @classmethod
    def _paths(cls, value: list[str]) -> list[str]:
        problems = [problem for p in value if (problem := path_problem(p))]
        if problems:
            raise ValueError("; ".join(problems))
        return [normalize(p) for p in value]


class TypedFinding(Finding):
    """A finding with its source: ``id`` is ``<cluster>-<n>``, counting from 1 in the document."""

    id: str
    cluster: str

    @property
    def rank(self) -> int:
        return SEVERITIES.index(self.severity)


FindingsStatus = Literal["written", "missing", "invalid", "not-finished"]


class FindingsDoc(BaseModel):
    """One cluster's findings document. ``text`` (the whole document) is left out of report.json:
    it stays in the file."""

    cluster: str
    file: str
    status: FindingsStatus
    count: int = 0
    problems: list[str] = Field(default_factory=list)
    text: str = Field(default="", exclude=True)


def findings_dir(ctx: RunContext) -> Path:
    """``WC_FINDINGS_DIR``: in ``.runs``, outside every worktree, so no agent commits it."""
    return ctx.runs_dir / "findings"


def findings_file(ctx: RunContext, cluster: str) -> Path:
    """``WC_FINDINGS_FILE`` of an investigation cluster."""
    return findings_dir(ctx) / f"{cluster}.md"


def _items(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and set(value) == {"findings"} and isinstance(value["findings"], list):
        return list(value["findings"])
    return None


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "finding"


def parse_findings(text: str, cluster: str) -> tuple[list[TypedFinding], list[str]]:
    """The typed findings of a findings document, and every problem with its ```json blocks."""
    found: list[TypedFinding] = []
    problems: list[str] = []
    fences = [t for t in MarkdownIt("commonmark").parse(text)
              if t.type == "fence" and t.info.strip().split(" ")[0].lower() == "json"]
    for token in fences:
        line = token.map[0] + 1 if token.map else 0
        try:
            items = _items(json.loads(token.content))
        except json.JSONDecodeError as exc:
            problems.append(f"line {line}: the ```json block is not valid JSON ({exc.msg}, its line {exc.lineno}); "
                            "the ```json fence is reserved for typed findings, put other JSON in a plain ``` fence")
            continue
        if items is None:
            problems.append(f"line {line}: a ```json block holds typed findings: a list of findings or "
                            '{"findings": [...]}')
            continue
        for k, item in enumerate(items, start=1):
            try:
                finding = Finding.model_validate(item)
            except ValidationError as exc:
                problems += [f"line {line}: finding {k}: {_where(e['loc'])}: {e['msg']}" for e in exc.errors()]
                continue
            found.append(TypedFinding(id=f"{cluster}-{len(found) + 1}", cluster=cluster, **finding.model_dump()))
    return found, problems[:MAX_PROBLEMS]


def read_findings(ctx: RunContext, cluster: str) -> tuple[FindingsDoc, list[TypedFinding]]:
    """The cluster's findings document as it is on disk, and its typed findings."""
    path = findings_file(ctx, cluster)
    text = path.read_text(errors="replace") if path.is_file() else ""
    if not text.strip():
        return FindingsDoc(cluster=cluster, file=str(path), status="missing",
                           problems=[f"no findings were written to {path}"]), []
    findings, problems = parse_findings(text, cluster)
    status: FindingsStatus = "invalid" if problems else "written"
    return FindingsDoc(cluster=cluster, file=str(path), status=status, count=len(findings), problems=problems,
                       text=text), findings


def findings_problem(ctx: RunContext, cluster: str) -> str | None:
    """Why an investigation attempt's findings cannot be used (the next attempt's feedback), or None."""
    doc, _ = read_findings(ctx, cluster)
    if doc.status == "written":
        return None
    if doc.status == "missing":
        return ("the agent exited 0 but wrote no findings; write them (markdown, with a ```json block of typed "
                f"findings) to $WC_FINDINGS_FILE ({doc.file})")
    return "the findings' ```json blocks have problems:\n" + "\n".join(f"- {p}" for p in doc.problems)


def _cell(text: str, limit: int = 600) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def findings_table(findings: list[TypedFinding]) -> list[dict[str, str]]:
    """The ``findings-<plan>`` artifact's rows, most severe first, leading with what to fix;
    what a finding does not say is left empty."""
    ordered = sorted(findings, key=lambda f: f.rank)
    return [{"proposed_fix": _cell(f.proposed_fix), "severity": f"{SEVERITY_MARK.get(f.severity, '')} {f.severity}",
             "title": _cell(f.title), "paths": ", ".join(f.paths), "location": _cell(f.location), "id": f.id,
             "cluster": f.cluster, "evidence": _cell(f.evidence)} for f in ordered]


SEVERITY_MARK = {"critical": "❌", "high": "❌", "medium": "⚠️", "low": "ℹ️", "info": "ℹ️"}  # noqa: RUF001


def findings_markdown(findings: list[TypedFinding]) -> list[str]:
    """The same table in markdown (without the evidence, which the findings documents hold)."""
    cols = ["proposed_fix", "severity", "title", "paths", "location", "id", "cluster"]
    rows = findings_table(findings)
    if not rows:
        return ["(no typed findings)"]
    return [f"| {' | '.join(c.replace('_', ' ') for c in cols)} |", "|" + "---|" * len(cols),
            *[f"| {' | '.join(r[c].replace('|', chr(92) + '|') for c in cols)} |" for r in rows]]


class Synthesis(BaseModel):
    """The synthesis step's outcome: the action plan and how it was made."""

    agent: str | None = Field(description="the synthesis agent's backend; None: ordered by work-clusters")
    ok: bool
    file: str
    text: str = ""
    attempts: int = 0
    failure: str | None = None
    duration: float = 0.0
    cost_usd: float | None = None
    prompt_file: str | None = None


class InvestigationResult(BaseModel):
    """What an investigation run found and planned: report.json's ``investigation``."""

    findings: list[TypedFinding]
    documents: list[FindingsDoc]
    action_plan: Synthesis


def investigation_markdown(result: InvestigationResult) -> list[str]:
    """The report's sections of an investigation: findings documents, typed findings, action plan."""
    lines = ["## Findings", "", "| cluster | findings document | typed findings | problems |", "|---|---|---|---|"]
    for doc in result.documents:
        problems = "; ".join(doc.problems).replace("|", "\\|")
        lines.append(f"| {doc.cluster} | {doc.status}: `{doc.file}` | {doc.count} | {problems} |")
    lines += ["", *findings_markdown(result.findings), "", "## Action plan", ""]
    plan = result.action_plan
    if not plan.ok:
        lines.append(f"❌ The synthesis agent (`{plan.agent}`) did not write it: {plan.failure}. File: `{plan.file}`")
    else:
        by = f"the synthesis agent (`{plan.agent}`)" if plan.agent else "work-clusters (no synthesis agent set)"
        lines.append(f"✅ Written by {by}: `{plan.file}`, and the `action-plan-<plan>` artifact.")
    return lines
