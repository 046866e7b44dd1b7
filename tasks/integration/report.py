"""The integration part of the merge report (markdown): preflight, merges, conflicts and the tier
that settled each, decisions, verification, the change accounting. ``tasks.report`` places it in the page."""

from __future__ import annotations

from prefect_work_clusters.tasks.context import CommandResult
from prefect_work_clusters.tasks.integration.models import IntegrationResult, MergeStep


def trim(text: str, limit: int = 3000) -> str:
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def cell(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|") or "-"


def verify_md(results: list[CommandResult]) -> list[str]:
    lines: list[str] = []
    for v in results:
        verdict = "passed" if v.ok else ("timed out" if v.timed_out else f"failed (exit {v.exit_code})")
        lines += [f"- `{v.command}`: **{verdict}** in {v.duration:.1f} s", ""]
        if v.output_tail.strip():
            lines += ["```", trim(v.output_tail, 1500), "```", ""]
    return lines


def _preflight(integ: IntegrationResult) -> list[str]:
    pf = integ.preflight
    if pf is None:
        return []
    lines = ["", "## Preflight", "",
             f"`git merge-tree` predicted {pf.conflict_count} conflicting file(s) in {pf.seconds:.2f} s, "
             f"before the integration worktree was touched.", ""]
    if pf.merges:
        lines += ["| cluster | prediction | files (clusters on our side) |", "|---|---|---|"]
        for m in pf.merges:
            files = ", ".join(f"`{c.path}` ({', '.join(c.ours) or 'base'}; {', '.join(c.kinds) or 'conflict'})"
                              for c in m.conflicts)
            status = m.status + (" (approximate: after an earlier predicted conflict)" if m.approximate else "")
            lines.append(f"| {m.cluster} | {status} | {files or '-'} |")
    return lines


def _merges(integ: IntegrationResult) -> list[str]:
    lines = ["", "## Merges", "", "| cluster | branch | result | conflicts (tier) | commit | diffstat |",
             "|---|---|---|---|---|---|"]
    for s in integ.steps:
        result = s.status + (f": {s.reason}" if s.reason and not s.files else "")
        tiers = ", ".join(f"`{f.path}` ({f.resolved_by or 'left for a person'})" for f in s.files)
        lines.append(f"| {s.cluster} | `{s.branch}` | {cell(result)} | {tiers or '-'} | `{(s.commit or '-')[:12]}` "
                     f"| {s.diffstat or '-'} |")
    return lines


def _conflict(step: MergeStep) -> list[str]:
    lines: list[str] = []
    for f in step.files:
        verdict = f"resolved by **{f.resolved_by}**" if f.resolved_by else "**not resolved; left for a person**"
        lines.append(f"- `{f.path}` merging `{step.cluster}` onto {', '.join(f.ours) or 'the base'}: {verdict}")
        for a in f.attempts:
            lines.append(f"  - {a.tier}: {a.outcome}" + (f" — {cell(a.detail)}" if a.detail else ""))
    return lines


def _decisions(integ: IntegrationResult) -> list[str]:
    if not integ.decisions:
        return []
    lines = ["", "## Decisions", "", "| file | hunk | ours | theirs | tier | reason | verification |",
             "|---|---|---|---|---|---|---|"]
    for d in integ.decisions:
        lines.append(f"| `{d.file}` | {d.hunk or '-'} | {', '.join(d.ours) or 'base'} | {d.theirs or '-'} "
                     f"| {d.tier} | {cell(d.reason)} | {cell(d.verification)} |")
    return lines


def _verification(integ: IntegrationResult) -> list[str]:
    lines = ["", "## Verification", ""]
    if integ.instructions:
        return lines + ["(not run: the integration stopped on a conflict)"]
    if len(integ.verify_rounds) > 1:
        lines += [f"- round {r.round}, after {r.after} (`{r.head[:12]}`): {'passed' if r.ok else 'failed'}"
                  for r in integ.verify_rounds] + [""]
    fixes = [c for c in integ.agent_calls if c.purpose == "verification"]
    lines += [f"- integration agent fix, attempt {c.attempt}: {c.failure or 'committed'}" for c in fixes]
    if fixes:
        lines.append("")
    return lines + (verify_md(integ.verify) if integ.verify else ["(no integration verify commands ran)"])


def _accounting(integ: IntegrationResult) -> list[str]:
    acc = integ.accounting
    if acc is None:
        return []
    lines = ["", "## Change accounting", "",
             f"Every line each merged cluster added or removed (whitespace-normalized, per file) against the "
             f"integrated tree, in {acc.files} changed file(s), {acc.seconds:.2f} s; then the Python checks "
             f"(a name bound twice, a duplicate `__all__`-style entry, a duplicate import) on every merged Python "
             f"file. {'All accounted for.' if acc.ok else '**Not all accounted for: the run fails.**'}", "",
             "| cluster | lines added | removed | lost | resurrected | duplicated |", "|---|---|---|---|---|---|"]
    for c in acc.clusters:
        cells = [str(n) if not n else f"**{n}**" for n in (c.lost, c.resurrected, c.duplicated)]
        lines.append(f"| {c.cluster} | {c.added} | {c.removed} | {' | '.join(cells)} |")
    for i in acc.issues:
        head = "Explained" if i.reason else "**Unexplained**"
        lines += ["", f"{head}: {i.count} line(s) {i.kind} in `{i.path}` ({', '.join(i.by)}):", "", "```",
                  *i.lines, "```"]
        if i.reason:
            lines.append(f"Explained by {i.explained_by}: {cell(i.reason)}")
    for f in acc.findings:
        verdict = f"explained by {f.explained_by}: {cell(f.reason)}" if f.reason else "**unexplained**"
        lines += ["", f"- `{f.path}` line {f.line}: {f.message}; {verdict}"]
    return lines


def _agent_calls(integ: IntegrationResult) -> list[str]:
    """Each integration agent call's failure, usage and refusals, where any is known."""
    lines = []
    for c in integ.agent_calls:
        parts = [c.failure or "ok"]
        if c.cost_usd is not None:
            parts.append(f"${c.cost_usd:.4f}")
        if c.total_tokens is not None:
            parts.append(f"{c.total_tokens} tokens")
        if c.denials:
            parts.append("refused: " + "; ".join(f"`{d}`" for d in c.denials))
        lines.append(f"- {c.purpose} `{c.label}`, attempt {c.attempt}: " + ", ".join(parts))
    return ["", "## Integration agent", "", *lines] if lines else []


def integration_markdown(integ: IntegrationResult) -> list[str]:
    """The integration sections of the merge report, as markdown lines."""
    lines = _preflight(integ) + _merges(integ)
    if integ.partial:
        lines += ["", f"**{integ.partial}.**"]
    if integ.moved:
        lines += ["", "**Branches moved after the contract check** (by an agent's leftover process, or by "
                      "hand):", "", *[f"- {m}" for m in integ.moved]]
    conflicted = [s for s in integ.steps if s.files]
    if conflicted:
        lines += ["", "## Conflicts", ""]
        for s in conflicted:
            lines += _conflict(s)
    if integ.instructions:
        lines += ["", "```", integ.instructions.strip(), "```"]
    return lines + _agent_calls(integ) + _decisions(integ) + _verification(integ) + _accounting(integ)
