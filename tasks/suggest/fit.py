"""Fit figures: how well a split into clusters matches how the code hangs together.

The same figures for a suggested plan and for a hand-written one (``validate``): per cluster its
files, the imports inside it (cohesion) and to each other cluster (coupling), and the commits it
shares with each; for the plan, the share of imports and of recent commits that cross a boundary,
and a verdict in the seed's terms ("Good fit: task has 3+ semantically distinct pieces, clear
boundaries"; "Poor fit: highly coupled code that can't be isolated").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prefect_work_clusters.tasks.suggest.signals import Signals

GOOD = 0.15  # at most this share of imports and of commits crossing a boundary: clear boundaries
POOR = 0.30  # more than this: too coupled to split this way


@dataclass
class ClusterFit:
    name: str
    files: int
    imports_inside: int = 0
    imports_to: Counter[str] = field(default_factory=Counter)  # other cluster -> imports both ways
    commits_with: Counter[str] = field(default_factory=Counter)  # other cluster -> commits touching both


@dataclass
class Fit:
    clusters: list[ClusterFit]
    imports: int = 0  # imports between files both owned by some cluster
    imports_crossing: int = 0
    commits: int = 0  # recent commits touching an owned file
    commits_crossing: int = 0
    shared: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def import_share(self) -> float:
        return self.imports_crossing / self.imports if self.imports else 0.0

    @property
    def commit_share(self) -> float:
        return self.commits_crossing / self.commits if self.commits else 0.0

    def verdict(self) -> str:
        """One line in the seed's terms, the worst figure named."""
        pieces = len(self.clusters)
        imp = f"{self.import_share:.0%} of imports" if self.imports else None
        com = f"{self.commit_share:.0%} of commits" if self.commits else None
        worst = max(((self.import_share, imp), (self.commit_share, com)), key=lambda x: x[0])
        if pieces < 2:
            return "poor fit: the code is one piece; it cannot be split into clusters this way"
        if imp is None and com is None:
            return (f"unmeasured: {pieces} pieces by the folder tree alone (no Python imports and no "
                    "usable history to measure the boundaries with)")
        if worst[0] > POOR:
            return f"poor fit: {worst[1]} cross a boundary (highly coupled code)"
        figures = " and ".join(x for x in (com, imp) if x) + " cross a boundary"
        if pieces < 3:
            return f"borderline: {pieces} distinct pieces (the pattern pays off from 3), {figures}"
        if worst[0] > GOOD:
            return f"fair fit: {pieces} distinct pieces, {figures}"
        return f"good fit: {pieces} distinct pieces, {figures}"

    def lines(self) -> list[str]:
        """The figures, one cluster a line, for a terminal or a YAML comment."""
        out = [self.verdict()]
        for c in self.clusters:
            ties = ", ".join(f"{n} to {other}" for other, n in c.imports_to.most_common(3))
            shared = ", ".join(f"{n} with {other}" for other, n in c.commits_with.most_common(3))
            out.append(f"{c.name}: {c.files} files, {c.imports_inside} imports inside"
                       + (f", {ties}" if ties else "") + (f"; commits shared: {shared}" if shared else ""))
        if self.shared:
            out.append(f"shared: {', '.join(self.shared[:8])}" + (" …" if len(self.shared) > 8 else ""))
        return out + self.notes


def measure_fit(signals: Signals, owner: Mapping[str, str], names: list[str], shared: Sequence[str] = ()) -> Fit:
    """The figures of a split: ``owner`` maps each owned file to its cluster's name."""
    by_name = {n: ClusterFit(n, 0) for n in names}
    for cluster in owner.values():
        by_name[cluster].files += 1
    fit = Fit(clusters=list(by_name.values()), shared=list(shared), notes=list(signals.notes))
    for (src, dst), n in signals.imports.items():
        a, b = owner.get(src), owner.get(dst)
        if a is None or b is None:
            continue
        fit.imports += n
        if a == b:
            by_name[a].imports_inside += n
        else:
            fit.imports_crossing += n
            by_name[a].imports_to[b] += n
            by_name[b].imports_to[a] += n
    for commit in signals.commits:
        touched = {owner[f] for f in commit if f in owner}
        if not touched:
            continue
        fit.commits += 1
        if len(touched) > 1:
            fit.commits_crossing += 1
            for a in touched:
                for b in touched - {a}:
                    by_name[a].commits_with[b] += 1
    return fit
