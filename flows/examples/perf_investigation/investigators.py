"""The example's investigation agents: real tools on the bundled codebase, scripted, no LLM.

work-clusters runs ``python -m prefect_work_clusters.flows.examples.perf_investigation.investigators`` in each
investigation cluster's worktree; ``WC_CLUSTER`` picks the investigator:

- ``backend``: cProfile of one customer report (read with pstats), at two sizes, to see what the
  report calls per customer and which code grows faster than the data;
- ``database``: every statement one report issues (sqlite3's trace callback), each through
  SQLite's ``EXPLAIN QUERY PLAN``, and the report timed again with the missing index;
- ``frontend``: the script bundle's size, raw and gzipped, against ``app/web/budget.json``, the
  libraries bundled in it, and a cProfile of the page render.

Each turns what the tools measured into typed findings and writes them, as markdown with a
```json block, to ``$WC_FINDINGS_FILE``. It reads the code and never changes a tracked file.
"""

from __future__ import annotations

import cProfile
import gzip
import io
import json
import os
import pstats
import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path.cwd()
Func = tuple[str, int, str]  # pstats' key: file, line, function name
Finding = dict[str, Any]


def _rel(filename: str) -> str | None:
    """The repo path of a source file of the app, or None for anything else."""
    path = Path(filename)
    if not path.is_absolute() or ROOT not in path.parents:
        return None
    rel = path.relative_to(ROOT).as_posix()
    return rel if rel.startswith("app/") else None


def _profile(fn: Callable[..., Any], *args: Any) -> tuple[pstats.Stats, float, Any]:
    profiler = cProfile.Profile()
    start = time.perf_counter()
    result = profiler.runcall(fn, *args)
    return pstats.Stats(profiler), time.perf_counter() - start, result


def _table(stats: pstats.Stats, sort: str, limit: int) -> str:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.sort_stats(sort).print_stats(limit)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("ncalls")), 0)
    return "\n".join(line.replace(str(ROOT) + "/", "") for line in lines[start:] if line.strip())


def _raw(stats: pstats.Stats) -> dict[Func, tuple[int, int, float, float, dict[Func, Any]]]:
    return stats.stats  # type: ignore[attr-defined,no-any-return]


def _owner(stats: pstats.Stats, func: Func) -> Func | None:
    """The first named function of the app on the way up from ``func`` (a genexpr's, a builtin's caller)."""
    seen, todo = set(), [func]
    while todo:
        current = todo.pop(0)
        if current in seen:
            continue
        seen.add(current)
        if current != func and _rel(current[0]) and not current[2].startswith("<"):
            return current
        todo += sorted(_raw(stats).get(current, (0, 0, 0.0, 0.0, {}))[4], key=lambda c: -_raw(stats)[c][1]
                       if c in _raw(stats) else 0)
    return None


def _where(func: Func) -> str:
    return f"{_rel(func[0])}:{func[1]} {func[2]}"


def _severity(share: float) -> str:
    return "high" if share >= 0.3 else "medium" if share >= 0.1 else "low"


def _report(customers: int) -> tuple[pstats.Stats, float]:
    from app.api.reports import customer_report
    from app.db import store

    conn = store.connect()
    store.seed(conn, customers=customers, orders=customers * 30)
    stats, seconds, _ = _profile(customer_report, conn)
    return stats, seconds


def backend() -> tuple[list[str], list[Finding]]:
    """Profile one report; flag what it calls once per item, and code that grows quadratically."""
    small, _ = _report(150)
    stats, seconds = _report(300)
    raw, total = _raw(stats), stats.total_tt  # type: ignore[attr-defined]
    notes = [f"Profiled `customer_report` with cProfile on a seeded database of 300 customers: {seconds:.3f} s "
             f"wall, {total:.3f} s profiled. Top functions by own time:", "", "```", _table(stats, "tottime", 8), "```"]
    findings: list[Finding] = []
    app = sorted((f for f in raw if _rel(f[0])), key=lambda f: -raw[f][3])
    queries = {f: v for f, v in raw.items() if f[2] == "<method 'execute' of 'sqlite3.Connection' objects>"}
    querying = {caller for v in queries.values() for caller in v[4]}  # the app's functions that run a query
    for func in app:
        calls, cumulative = raw[func][1], raw[func][3]
        caller = _owner(stats, func)
        if func not in querying or calls < 100 or cumulative / total < 0.05 or caller is None:
            continue
        share = cumulative / total
        findings.append({
            "title": f"{func[2]}() runs a query {calls:,} times in one report: {share:.0%} of its time",
            "severity": _severity(share),
            "evidence": f"cProfile, 300 customers: {_where(func)}: {calls:,} calls, {cumulative:.3f} s cumulative "
                        f"of {total:.3f} s; called from {_where(caller)}",
            "location": _where(caller),
            "proposed_fix": f"Stop calling {func[2]}() once per item in {caller[2]}(): fetch what it needs for "
                            "the whole report in one batch, then group it in memory",
            "paths": sorted({_rel(func[0]) or "", _rel(caller[0]) or ""})})
    before = _raw(small)
    for func in app:
        grew = raw[func][1] / before[func][1] if before.get(func) else 0.0
        owner = _owner(stats, func) if func[2].startswith("<") else func
        if raw[func][1] < 1000 or grew < 3.0 or owner is None:
            continue
        findings.append({
            "title": f"{owner[2]}() grows with the square of the customers",
            "severity": "medium",
            "evidence": f"cProfile: {_where(func)} ran {before[func][1]:,} times for 150 customers and "
                        f"{raw[func][1]:,} for 300 (x{grew:.1f} for twice the data); {raw[func][2]:.3f} s now",
            "location": _where(owner),
            "proposed_fix": f"Make {owner[2]}() one pass over sorted data instead of a loop over every pair",
            "paths": [_rel(owner[0]) or ""]})
    return notes, findings


def _statement(sql: str) -> str:
    """The statement with its literals back to placeholders (the trace shows them expanded)."""
    return re.sub(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b", "?", " ".join(sql.split()))


def database() -> tuple[list[str], list[Finding]]:
    """Trace every statement of one report and explain each; time the report with the missing index."""
    from app.api.reports import customer_report
    from app.db import store

    conn = store.connect()
    store.seed(conn)
    counts: Counter[str] = Counter()
    frames: dict[str, list[traceback.FrameSummary]] = {}

    def trace(sql: str) -> None:
        key = _statement(sql)
        counts[key] += 1
        if key not in frames:
            frames[key] = [f for f in traceback.extract_stack() if _rel(f.filename)]

    conn.set_trace_callback(trace)
    customer_report(conn)
    conn.set_trace_callback(None)
    start = time.perf_counter()
    customer_report(conn)
    seconds = time.perf_counter() - start
    notes = [f"Traced one report (300 customers, 9,000 orders): {sum(counts.values()):,} statements in "
             f"{seconds:.3f} s. Each through `EXPLAIN QUERY PLAN`:", ""]
    findings: list[Finding] = []
    for sql, n in counts.most_common():
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, (1,) * sql.count("?"))]
        notes.append(f"- {n:,} x `{sql}`: {'; '.join(plan)}")
        stack = frames[sql]
        scan = next((re.match(r"SCAN (\w+)", p) for p in plan if p.startswith("SCAN")), None)
        column = re.search(r"WHERE (\w+) = \?", sql)
        if scan and column and stack:
            table, col = scan.group(1), column.group(1)
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            index = f"{table}_{col}"
            conn.execute(f"CREATE INDEX {index} ON {table} ({col})")
            after = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, (1,) * sql.count("?"))]
            start = time.perf_counter()
            customer_report(conn)
            indexed = time.perf_counter() - start
            conn.execute(f"DROP INDEX {index}")
            findings.append({
                "title": f"{table} is scanned in full on every lookup by {col}: no index",
                "severity": "high" if n >= 100 else "medium",
                "evidence": f"EXPLAIN QUERY PLAN {sql}: {'; '.join(plan)}. It ran {n:,} times in one report, each "
                            f"reading all {rows:,} rows. With CREATE INDEX {index}: {'; '.join(after)}; the "
                            f"report took {indexed:.3f} s instead of {seconds:.3f} s",
                "location": f"{_rel(stack[-1].filename)}:{stack[-1].lineno} {stack[-1].name}",
                "proposed_fix": f"CREATE INDEX {index} ON {table} ({col}) in the schema",
                "paths": ["app/db/schema.sql"]})
    repeated = [(sql, n) for sql, n in counts.most_common() if n >= 50]
    if repeated:
        loop = next((f for f in frames[repeated[0][0]] if not (_rel(f.filename) or "").startswith("app/db/")),
                    frames[repeated[0][0]][0])
        findings.append({
            "title": f"One report issues {sum(counts.values()):,} queries: one per customer and per order (N+1)",
            "severity": "high",
            "evidence": "; ".join(f"{n:,} x {sql}" for sql, n in repeated),
            "location": f"{_rel(loop.filename)}:{loop.lineno} {loop.name}",
            "proposed_fix": "Load the report's data in a few set-based queries (orders joined with products, "
                            "grouped by customer) instead of a query per customer and per order",
            "paths": sorted({_rel(loop.filename) or "", *(_rel(frames[s][-1].filename) or "" for s, _ in repeated)})})
    return notes, findings


def frontend() -> tuple[list[str], list[Finding]]:
    """Bundle size and contents against the budget; a profile of the page render."""
    from app.api.reports import customer_report
    from app.db import store
    from app.web.render import render_report

    notes, findings = ["Bundle sizes (gzip -9) against `app/web/budget.json`:", ""], []
    for rel, limits in json.loads((ROOT / "app/web/budget.json").read_text()).items():
        path = f"app/web/{rel}"
        data = (ROOT / path).read_bytes()
        size, packed = len(data), len(gzip.compress(data, 9))
        notes.append(f"- `{path}`: {size:,} bytes, {packed:,} gzipped (budget {limits['max_bytes']:,} / "
                     f"{limits['max_gzip_bytes']:,})")
        if size > limits["max_bytes"] or packed > limits["max_gzip_bytes"]:
            findings.append({
                "title": f"{path} is over its size budget",
                "severity": "medium",
                "evidence": f"{size:,} bytes ({size / limits['max_bytes'] - 1:+.0%} of the {limits['max_bytes']:,} "
                            f"budget), {packed:,} gzipped (budget {limits['max_gzip_bytes']:,})",
                "location": path, "paths": [path],
                "proposed_fix": f"Bring {path} under its budget: drop what the page does not use, and minify it"})
        text = data.decode()
        banners = list(re.finditer(r"/\*!\s*([\w.-]+)\s+v(\d[\w.]*)", text))
        seen = Counter(m.group(1) for m in banners)
        for name in (n for n, k in seen.items() if k > 1):
            copies = [(m, (banners + [None])[i + 1]) for i, m in enumerate(banners) if m.group(1) == name]
            sizes = {m.group(2): (nxt.start() if nxt else len(text)) - m.start() for m, nxt in copies}
            app_code = text[banners[-1].start():] if banners[-1].group(1) != name else ""
            called = set(re.findall(r"\.(\w+)\(", app_code))
            methods = {m.group(2): set(re.findall(r"prototype\.(\w+) =", text[m.start():m.start() + sizes[m.group(2)]]))
                       for m, _ in copies}
            used = [v for v, ms in methods.items() if ms & called - set.intersection(*methods.values())]
            unused = [v for v in sizes if v not in used]
            findings.append({
                "title": f"{name} is bundled {len(copies)} times ({', '.join(sizes)})",
                "severity": "medium",
                "evidence": "; ".join(f"{name} {v}: {s:,} bytes" for v, s in sizes.items())
                            + (f"; the page's own code calls only {name} {', '.join(used)}" if used else ""),
                "location": path,
                "proposed_fix": f"Drop {name} {', '.join(unused)} from {path}"
                                f" ({sum(sizes[v] for v in unused):,} bytes)" if used else f"Bundle one {name}",
                "paths": [path]})
    conn = store.connect()
    store.seed(conn)
    rows = customer_report(conn)
    stats, seconds, _ = _profile(render_report, rows)
    notes += ["", f"cProfile of `render_report` on {len(rows)} rows ({seconds:.3f} s), by own time:", "", "```",
              _table(stats, "tottime", 6), "```"]
    for func, (_, calls, _, cumulative, _) in _raw(stats).items():
        owner = _owner(stats, func)
        if func[2] == "<built-in method io.open>" and calls >= len(rows) and owner:
            findings.append({
                "title": f"{owner[2]}() opens a file {calls:,} times to render {len(rows):,} rows",
                "severity": "medium",
                "evidence": f"cProfile: io.open {calls:,} calls, {cumulative:.3f} s of {seconds:.3f} s rendering; "
                            f"called from {_where(owner)}",
                "location": _where(owner),
                "proposed_fix": f"Read the templates once (at import, or with functools.cache), not per row in "
                                f"{owner[2]}()",
                "paths": [_rel(owner[0]) or ""]})
    return notes, findings


INVESTIGATORS = {"backend": backend, "database": database, "frontend": frontend}


def main() -> int:
    cluster = os.environ["WC_CLUSTER"]
    if cluster not in INVESTIGATORS:
        print(f"scripted investigator: no investigator for cluster {cluster!r}", file=sys.stderr)
        return 2
    sys.dont_write_bytecode = True  # no __pycache__ in the worktree
    sys.path.insert(0, str(ROOT))
    notes, findings = INVESTIGATORS[cluster]()
    doc = [f"# Findings: {cluster}", "",
           "Written by a scripted investigator (flows/examples/perf_investigation), not an LLM: it ran the",
           "tools below on this worktree and turned what they measured into findings.", "", *notes, "",
           "## Typed findings", "", "```json", json.dumps(findings, indent=2), "```", ""]
    Path(os.environ["WC_FINDINGS_FILE"]).write_text("\n".join(doc))
    print(f"scripted investigator [{cluster}]: {len(findings)} finding(s) in {os.environ['WC_FINDINGS_FILE']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
