"""Change accounting: every line each merged cluster added or removed, found (or not) in the
integrated tree, per file, in whitespace-normalized lines (blank lines aside).

For a line ``L`` of a file, with ``b`` its count in the base, and ``a_c`` / ``r_c`` how often
cluster ``c`` added / removed it (its branch against the base it started from), the integrated
count must lie in ``[b + max(a) - sum(r), b + sum(a) - max(r)]``. With one cluster touching ``L``
that is exactly ``b + a - r``. Clusters' changes **overlap** on ``L`` when two or more of them
added or removed ``L`` in the same file: both may have made the same change (git keeps one copy of
an import both added) or two independent ones (two copies), so any count in between is accepted.
A count below the range is **lost** (added by a cluster, or a base line none of them removed); a
count above it is **resurrected** (a cluster removed it) or **duplicated** (more copies than the
base and the clusters account for); a line no cluster and no base wrote is **new** (the
integration agent's or a person's). Where the overlap let more than one copy through, a run of
lines kept more often than any side holds it is duplicated too (``tasks.integration.blocks``).

The counts need only the differences to the base: one ``git diff`` per cluster and one for the
integrated tree. Blobs are read (in one batch each) only for the few files that need them: new
lines to look up in the base, overlapping copies, Python files. Files no cluster changed cost
nothing.

Every discrepancy in a file that a decision names (``tasks.integration.decisions``: the agent's,
or a person's in ``person.md``) is listed as explained, with that decision; any other fails the run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from prefect_work_clusters.tasks.git import merge as gitmerge
from prefect_work_clusters.tasks.integration.blocks import duplicated_blocks
from prefect_work_clusters.tasks.integration.decisions import AgentDecision
from prefect_work_clusters.tasks.integration.pychecks import PyFinding, python_findings

SHOWN = 20
BASE, INTEGRATION = "base", "integration"
Kind = Literal["lost", "resurrected", "duplicated", "new"]


class LineIssue(BaseModel):
    """Lines of one file whose integrated count the changes do not account for."""

    path: str
    kind: Kind
    by: list[str] = Field(description="the clusters whose change it concerns; 'base' or 'integration' otherwise")
    count: int
    lines: list[str] = Field(description=f"the lines (at most {SHOWN})")
    reason: str = Field(default="", description="the decision that explains it, if any")
    explained_by: str = Field(default="", description="who wrote that decision and where")


class ClusterTally(BaseModel):
    cluster: str
    branch: str
    added: int
    removed: int
    lost: int = 0
    resurrected: int = 0
    duplicated: int = 0


class Accounting(BaseModel):
    files: int = Field(default=0, description="files some cluster or the integration changed")
    clusters: list[ClusterTally] = Field(default_factory=list)
    issues: list[LineIssue] = Field(default_factory=list)
    findings: list[PyFinding] = Field(default_factory=list)
    seconds: float = 0.0

    @property
    def unexplained(self) -> list[LineIssue]:
        return [i for i in self.issues if not i.reason]

    @property
    def unexplained_findings(self) -> list[PyFinding]:
        return [f for f in self.findings if not f.reason]

    @property
    def ok(self) -> bool:
        return not self.unexplained and not self.unexplained_findings

    def summary(self) -> str:
        """One line: what is unexplained, file by file."""
        parts = [f"{i.count} {i.kind} in {i.path} ({', '.join(i.by)})" for i in self.unexplained]
        parts += [f"{f.path}:{f.line} {f.message}" for f in self.unexplained_findings]
        return "; ".join(parts)

    def feedback(self) -> str:
        """What the integration agent is told to fix (or explain) before the run fails."""
        out = ["The change accounting found what the clusters' changes do not account for in the integrated "
               "tree: lines, or Python the merge broke. Fix each (restore a lost line, remove a resurrected or "
               "duplicated one, keep one binding of a name), or, when the tree is right as it is, say why in the "
               "decisions file under the file's name.", ""]
        for i in self.unexplained:
            out += [f"- `{i.path}`: {i.count} line(s) {i.kind} ({', '.join(i.by)}):", "", "```", *i.lines, "```", ""]
        out += [f"- `{f.path}` line {f.line}: {f.message}" for f in self.unexplained_findings]
        return "\n".join(out)


def normalize(line: str) -> str:
    """Whitespace-normalized: re-indenting or re-wrapping spaces is neither a loss nor a change."""
    return " ".join(line.split())


def _counts(lines: Sequence[str]) -> Counter[str]:
    return Counter(n for n in map(normalize, lines) if n)


def _explainers(decisions: Sequence[AgentDecision]) -> dict[str, tuple[str, str]]:
    """path -> (reason, who wrote it), every decision on the file joined."""
    found: dict[str, tuple[str, str]] = {}
    for d in decisions:
        who = ("a person" if d.source.startswith("person") else "the integration agent") + \
            (f" ({d.source}, {d.form})" if d.source else "")
        reason, by = found.get(d.file, ("", ""))
        found[d.file] = (f"{reason}; {d.reason}" if reason else d.reason, f"{by}; {who}" if by else who)
    return found


Entry = tuple[Kind, tuple[str, ...], str, int]  # kind, by, line, how many copies


def account_file(changes: Mapping[str, gitmerge.FileChange],
                 integrated: gitmerge.FileChange | None) -> tuple[list[Entry], bool]:
    """The discrepancies of one file, and whether overlap let a line two clusters added in more
    often than one of them added it (then ``blocks`` looks for a duplicated run). ``changes``
    maps each cluster that changed the file to its change, ``integrated`` is the integrated
    tree's change against the base. A line above its range that no cluster touched is called
    new here; ``account`` looks it up in the base."""
    adds = {c: _counts(ch.added) for c, ch in changes.items()}
    rems = {c: _counts(ch.removed) for c, ch in changes.items()}
    net = _counts(integrated.added) if integrated else Counter()
    net.subtract(_counts(integrated.removed) if integrated else Counter())
    keys = set(net) | {k for a in adds.values() for k in a} | {k for r in rems.values() for k in r}
    found: list[Entry] = []
    kept_twice = False
    for key in sorted(keys):
        a = [adds[c][key] for c in changes]
        r = [rems[c][key] for c in changes]
        low, high = max(a, default=0) - sum(r), sum(a) - max(r, default=0)
        got = net[key]
        adders = tuple(c for c in changes if adds[c][key])
        removers = tuple(c for c in changes if rems[c][key])
        kept_twice |= len(adders) > 1 and got > max(a)
        if got < low:
            found.append(("lost", adders or (BASE,), key, low - got))
        elif got > high and removers:
            found.append(("resurrected", removers, key, got - high))
        elif got > high:
            found.append(("duplicated" if adders else "new", adders or (INTEGRATION,), key, got - high))
    return found, kept_twice


def _settle_new(repo: Path, base: str, entries: dict[str, list[Entry]]) -> None:
    """A line no cluster touched that the integrated tree holds more often than before is a
    duplicated base line when the base has it, else new: one batch read of those base files."""
    paths = [p for p, es in entries.items() if any(e[0] == "new" for e in es)]
    blobs = gitmerge.read_blobs(repo, [f"{base}:{p}" for p in paths])
    for path in paths:
        known = _counts((blobs[f"{base}:{path}"] or "").splitlines())
        entries[path] = [("duplicated", (BASE,), line, n) if kind == "new" and known[line] else (kind, by, line, n)
                         for kind, by, line, n in entries[path]]


def _issues(path: str, entries: Sequence[Entry]) -> list[LineIssue]:
    grouped: dict[tuple[Kind, tuple[str, ...]], list[tuple[str, int]]] = {}
    for kind, by, line, n in entries:
        grouped.setdefault((kind, by), []).append((line, n))
    return [LineIssue(path=path, kind=kind, by=list(by), count=sum(n for _, n in items),
                      lines=[line for line, _ in items][:SHOWN]) for (kind, by), items in grouped.items()]


def account(repo: Path, base: str, final: str, clusters: Sequence[tuple[str, str]],
            decisions: Sequence[AgentDecision]) -> Accounting:
    """Account every merged (cluster, branch) in the integrated commit ``final``; ``decisions``
    explain what the integration agent or a person changed on purpose."""
    t0 = time.monotonic()
    # One git process per cluster: run a few at once, git waits on the disk as much as the CPU.
    with ThreadPoolExecutor(max_workers=4) as pool:
        diffs = list(pool.map(lambda branch: gitmerge.changed_lines(repo, base, branch), [b for _, b in clusters]))
        integrated = gitmerge.changed_lines(repo, base, final, since_fork=False)
    per_cluster = {name: diff for (name, _), diff in zip(clusters, diffs, strict=True)}
    paths = sorted(set(integrated).union(*per_cluster.values()))
    result = Accounting(files=len(paths))
    done = {p: account_file({c: ch[p] for c, ch in per_cluster.items() if p in ch}, integrated.get(p))
            for p in paths}
    entries = {p: found for p, (found, _) in done.items()}
    _settle_new(repo, base, entries)
    branches = dict(clusters)
    overlapping = {p: [branches[c] for c, ch in per_cluster.items() if p in ch] for p, (_, twice) in done.items()
                   if twice}
    for path, lines in duplicated_blocks(repo, base, final, overlapping).items():
        by = tuple(c for c, ch in per_cluster.items() if path in ch)
        entries[path] += [("duplicated", by, line, n) for line, n in Counter(lines).items()]
    result.issues = [issue for p in paths for issue in _issues(p, entries[p])]
    result.findings = python_findings(repo, base, final, [p for p in paths if p.endswith((".py", ".pyi"))],
                                      {n: b for n, b in clusters}, per_cluster)
    explain = _explainers(decisions)
    items: list[LineIssue | PyFinding] = [*result.issues, *result.findings]
    for item in items:
        if item.path in explain:
            item.reason, item.explained_by = explain[item.path]
    for name, branch in clusters:
        changed = per_cluster[name].values()
        tally = ClusterTally(cluster=name, branch=branch, added=sum(_counts(c.added).total() for c in changed),
                             removed=sum(_counts(c.removed).total() for c in changed))
        for issue in result.issues:
            if name in issue.by and issue.kind != "new":
                setattr(tally, issue.kind, getattr(tally, issue.kind) + issue.count)
        result.clusters.append(tally)
    result.seconds = round(time.monotonic() - t0, 3)
    return result
