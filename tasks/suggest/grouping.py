"""From measured signals to clusters: units, their coupling, hubs, and communities.

A *unit* is a folder (or a loose module) where the code branches: below the single folder that
holds most of the files (``src/``, then the main package), each child folder and loose file is a
unit, and so is every other top-level folder (``tests/``, ``docs/``). Units are tied by two
signals, each scaled to the same total weight so neither drowns the other: imports between their
files, and commits that changed both (a commit touching k units adds 1/(k-1) to each pair).

*Hubs* are taken out before grouping: a unit that most other units import (``utils``, ``core``,
``models``, ``settings``) would glue every cluster to it, and a file that most commits touch
(changelogs, registries) says nothing about cohesion. Both become ``shared`` (and hub modules
contract candidates), never a cluster.

Grouping is greedy modularity agglomeration (Clauset, Newman and Moore 2004): start with one
community per unit and merge the pair that raises modularity most, while it rises. It is
deterministic, needs no tuning, and on the tens to hundreds of units of a repository takes
milliseconds; networkx would bring the same algorithm as a dependency. Then small pieces are
folded into the community they are most tied to, and the count is brought to the one asked for
(or at most ``MAX_CLUSTERS``) by the least harmful merges. Unasked, it never splits what is one
piece; asked for a number, merging stops there and the fit figures say how coupled that split is.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prefect_work_clusters.tasks.suggest.signals import Signals

BASE_SHARE = 0.8  # a folder holding this share of the files is where to look for the branches
HUB_SHARE = 0.5  # a unit imported by this share of the other importing units is a hub
HUB_MIN = 3
HOT_SHARE = 0.25  # a file touched by this share of the commits is shared
HOT_MIN = 5
SMALL_SHARE = 0.03  # a community with fewer of the files than this is folded into a neighbour
MAX_CLUSTERS = 6

Pair = tuple[str, str]


def base_folder(files: Iterable[str]) -> str:
    """The folder where the code branches: descend while one folder holds most of the files.

    >>> base_folder(["src/app/a.py", "src/app/b/c.py", "src/app/d/e.py", "src/app/f.py", "README.md"])
    'src/app/'
    """
    files = list(files)
    prefix = ""
    while True:
        under = [f[len(prefix):] for f in files if f.startswith(prefix)]
        dirs = Counter(p.split("/", 1)[0] for p in under if "/" in p)
        if not dirs:
            return prefix
        top, count = dirs.most_common(1)[0]
        if count < BASE_SHARE * len(under):
            return prefix
        prefix += top + "/"


def unit_of(path: str, base: str) -> str | None:
    """The unit a file belongs to, or None for a loose file at the repository's root. Below the
    base each child is a unit; in the other top-level folders (``tests/``, ``docs/``) each child
    too, so that a test joins the code it tests rather than all tests forming one cluster.

    >>> unit_of("src/app/api/routes.py", "src/app/"), unit_of("tests/test_api.py", "src/app/")
    ('src/app/api/', 'tests/test_api.py')
    """
    if base and path.startswith(base):
        rest = path[len(base):]
        return base + rest.split("/", 1)[0] + ("/" if "/" in rest else "")
    if "/" not in path or base.startswith(path.split("/", 1)[0] + "/"):
        return None
    top, rest = path.split("/", 1)
    return f"{top}/" + rest.split("/", 1)[0] + ("/" if "/" in rest else "")


@dataclass
class Units:
    """Files grouped into units, and the weight of the ties between units."""

    base: str
    members: dict[str, list[str]]  # unit -> files
    weight: dict[Pair, float] = field(default_factory=dict)  # (a, b) with a < b
    hubs: list[str] = field(default_factory=list)  # units taken out as shared
    hot: list[str] = field(default_factory=list)  # files taken out as shared
    loose: list[str] = field(default_factory=list)  # root files, in no unit


def _pair(a: str, b: str) -> Pair:
    return (a, b) if a < b else (b, a)


def build_units(signals: Signals) -> Units:
    """Units of the signals' files, with hubs and hot files set aside, and their ties."""
    base = base_folder(signals.files)
    hot_counts = Counter(f for commit in signals.commits for f in commit)
    hot = sorted(f for f, n in hot_counts.items()
                 if n >= HOT_MIN and n >= HOT_SHARE * len(signals.commits) and not f.endswith(".py"))
    members: dict[str, list[str]] = defaultdict(list)
    loose = []
    for path in signals.files:
        unit = unit_of(path, base)
        if path in hot:
            continue
        if unit is None or unit == f"{base}__init__.py":  # the base package's marker: nobody's
            loose.append(path)
        else:
            members[unit].append(path)
    owner = {f: u for u, fs in members.items() for f in fs}
    importers: dict[str, set[str]] = defaultdict(set)
    for (src, dst), _n in signals.imports.items():
        a, b = owner.get(src), owner.get(dst)
        if a and b and a != b:
            importers[b].add(a)
    importing = {a for users in importers.values() for a in users}
    hubs = sorted(u for u, users in importers.items()
                  if len(users) >= HUB_MIN and len(users) >= HUB_SHARE * max(1, len(importing - {u})))
    units = Units(base=base, members={u: fs for u, fs in members.items() if u not in hubs}, hubs=hubs, hot=hot,
                  loose=loose)
    units.weight = _ties(signals, {f: u for u, fs in units.members.items() for f in fs})
    return units


def _ties(signals: Signals, owner: Mapping[str, str]) -> dict[Pair, float]:
    """Weights between units, and of each unit with itself (``(u, u)``: its inner cohesion, what
    modularity weighs a merge against)."""
    imports: Counter[Pair] = Counter()
    for (src, dst), n in signals.imports.items():
        a, b = owner.get(src), owner.get(dst)
        if a and b:
            imports[_pair(a, b)] += n
    together: dict[Pair, float] = defaultdict(float)
    for commit in signals.commits:
        touched = sorted({owner[f] for f in commit if f in owner})
        if len(touched) == 1:
            together[(touched[0], touched[0])] += 1.0
        for i, a in enumerate(touched):
            for b in touched[i + 1:]:
                together[(a, b)] += 1.0 / (len(touched) - 1)
    weight: dict[Pair, float] = defaultdict(float)
    signals_by_pair: list[Mapping[Pair, float]] = [{p: float(n) for p, n in imports.items()}, together]
    for signal in signals_by_pair:
        total = sum(signal.values())
        for pair, share in signal.items():
            weight[pair] += share / total
    owners = _unit_owners(signals, owner)
    bonus = 0.5 * (sum(weight.values()) / len(weight)) if weight else 0.0
    for pair in list(weight):
        if pair[0] != pair[1] and owners.get(pair[0]) and owners.get(pair[0]) == owners.get(pair[1]):
            weight[pair] += bonus  # the same team already owns both
    return dict(weight)


def _unit_owners(signals: Signals, owner: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    votes: dict[str, Counter[tuple[str, ...]]] = defaultdict(Counter)
    for path, who in signals.owners.items():
        if path in owner:
            votes[owner[path]][who] += 1
    return {u: c.most_common(1)[0][0] for u, c in votes.items()}


def communities(units: Units, wanted: int | None = None) -> list[list[str]]:
    """Groups of units: greedy modularity, small pieces folded in, then ``wanted`` (or at most
    ``MAX_CLUSTERS``) groups by the least harmful merges. Largest group first."""
    groups: dict[int, set[str]] = {i: {u} for i, u in enumerate(sorted(units.members))}
    where = {u: i for i, members in groups.items() for u in members}
    between: dict[int, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    degree: dict[int, float] = defaultdict(float)
    for (a, b), w in units.weight.items():
        i, j = where[a], where[b]
        degree[i] += w
        degree[j] += w
        if i != j:
            between[i][j] += w
            between[j][i] += w
    two_m = sum(degree.values()) or 1.0

    def gain(i: int, j: int) -> float:
        return between[i].get(j, 0.0) / two_m * 2 - 2 * (degree[i] / two_m) * (degree[j] / two_m)

    def merge(i: int, j: int) -> None:
        groups[i] |= groups.pop(j)
        degree[i] += degree.pop(j, 0.0)
        for k, w in between.pop(j, {}).items():
            between[k].pop(j, None)
            if k != i:
                between[i][k] += w
                between[k][i] += w
        between[i].pop(i, None)

    def best(min_gain: float) -> tuple[int, int] | None:
        pairs = [(gain(i, j), i, j) for i in between for j in between[i] if i < j]
        top = max(pairs, default=None)
        return (top[1], top[2]) if top and top[0] > min_gain else None

    floor = wanted or 1  # asked for a number: never merge below it
    while len(groups) > floor and (pair := best(0.0)) is not None:
        merge(*pair)
    files = sum(len(fs) for fs in units.members.values()) or 1

    def size(i: int) -> int:
        return sum(len(units.members[u]) for u in groups[i])

    for i in sorted(groups, key=size):  # fold small pieces into what they are most tied to
        if i in groups and len(groups) > max(2, floor) and size(i) < SMALL_SHARE * files:
            target = max(between[i].items(), key=lambda kv: kv[1], default=(None, 0.0))[0]
            if target is None:
                target = max((j for j in groups if j != i), key=size)
            merge(target, i)
    limit = wanted or MAX_CLUSTERS
    while len(groups) > limit:
        pair = best(float("-inf"))
        if pair is None:  # no ties left: the two smallest pieces go together
            smallest = sorted(groups, key=size)[:2]
            pair = (smallest[0], smallest[1])
        merge(*pair)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: -sum(len(units.members[u]) for u in g))
