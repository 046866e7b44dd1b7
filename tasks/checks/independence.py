"""Independence (``contract: {independent: true}``): cluster packages import each other only
through the contract files.

A cluster's packages are its owned folders (and ``.py`` files) read as Python modules:
``auth_api/`` is ``auth_api``, ``src/auth_db/`` is ``auth_db``, ``lib/auth_ui/`` is
``lib.auth_ui``. Owned paths that are globs or not importable names are not packages. The import
graph comes from grimp, run in a subprocess (see ``tasks.checks.import_probe``); every import from one
cluster's package into another's is reported with its importer, what it imports and its line.

Checked per cluster (its own packages' imports, in its worktree; another cluster's package that
is absent there still shows by its top-level name) and again on the integrated tree.
"""

from __future__ import annotations

import json
import posixpath
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect_work_clusters.tasks.checks.conformance import Outcome, clean_env, search_path
from prefect_work_clusters.tasks.plan.models import Plan
from prefect_work_clusters.tasks.plan.paths import PathSet, is_glob, normalize
from prefect_work_clusters.tasks.proc.runner import run_process

PROBE = Path(__file__).with_name("import_probe.py")


@dataclass(frozen=True)
class Package:
    cluster: str
    module: str

    def holds(self, module: str) -> bool:
        return module == self.module or module.startswith(self.module + ".")


def module_of_path(path: str) -> str | None:
    """The module an owned path stands for, or None: ``src/auth_db/`` -> ``auth_db``."""
    p = normalize(path)
    if is_glob(p):
        return None
    if not p.endswith("/"):
        if not p.endswith(".py"):
            return None
        p = p.removesuffix(".py")
    parts = p.strip("/").removeprefix("src/").split("/")
    return ".".join(parts) if parts and all(s.isidentifier() for s in parts) else None


def cluster_packages(plan: Plan) -> list[Package]:
    return [Package(c.name, m) for c in plan.clusters for p in c.paths if (m := module_of_path(p))]


def _present(tree: Path, top: str) -> bool:
    return any((Path(root) / top).is_dir() or (Path(root) / f"{top}.py").is_file() for root in search_path(tree))


def _owner(module: str, packages: Sequence[Package]) -> Package | None:
    holding = [p for p in packages if p.holds(module)]
    return max(holding, key=lambda p: len(p.module)) if holding else None


Import = dict[str, Any]  # {"importer", "imported", "line", "text"}, as the probe writes them


def probe_imports(tree: Path, roots: Sequence[str], watch: Sequence[str], workdir: Path, env: Mapping[str, str],
                  timeout: float) -> tuple[list[Import], str | None, float]:
    """Every import made by a module under ``watch`` in ``tree`` (grimp, in a subprocess):
    (imports, why it failed or None, seconds)."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "imports.json"
    out.unlink(missing_ok=True)
    spec = {"path": search_path(tree), "roots": list(roots), "watch": list(watch)}
    res = run_process([sys.executable, "-I", str(PROBE), json.dumps(spec), str(out)], cwd=workdir,
                      env=clean_env(env), timeout=timeout, log_path=workdir / "grimp.log")
    if not out.exists():
        why = "ran past its timeout" if res.timed_out else " ".join(res.output_tail.strip().splitlines()[-2:])
        return [], why, res.duration
    found = json.loads(out.read_text())
    return list(found["imports"]), found["error"], res.duration


def independence(tree: Path, packages: Sequence[Package], workdir: Path, env: Mapping[str, str], timeout: float,
                 only: str | None = None) -> Outcome:
    """Every import between two clusters' packages in ``tree`` (only those made by cluster
    ``only``'s packages when given)."""
    watched = [p for p in packages if only is None or p.cluster == only]
    roots = sorted(r for r in {p.module.split(".")[0] for p in watched} if _present(tree, r))
    if not watched:
        return Outcome("skipped", note="no owned path is an importable Python package")
    if not roots:
        return Outcome("skipped", note="none of the cluster packages exist in this tree yet")
    found, why, seconds = probe_imports(tree, roots, sorted(p.module for p in watched), workdir, env, timeout)
    if why:
        return Outcome("failed", note=f"the import graph could not be built: {why}")
    evidence: list[str] = []
    for imp in found:
        src, dst = _owner(imp["importer"], watched), _owner(imp["imported"], packages)
        if src is not None and dst is not None and src.cluster != dst.cluster:
            evidence.append(f"{imp['importer']} (cluster {src.cluster}) imports {imp['imported']} "
                            f"(cluster {dst.cluster}) at line {imp['line']}: {imp['text'].strip()}")
    return Outcome("violation" if evidence else "ok", evidence,
                   note=f"import graph of {', '.join(roots)} (grimp) in {seconds:.1f} s")


# -- TypeScript and JavaScript ----------------------------------------------------------------

_JS_SUFFIXES = (".ts", ".tsx", ".mts", ".cts", ".js", ".jsx", ".mjs", ".cjs")
# import ... from "x" / export ... from "x" / import "x" / require("x") / import("x")
_SPECIFIER = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)["']([^"'\n]+)["']""")


def _resolve_js(tree: Path, importer: str, spec: str) -> str | None:
    """The repo path a relative specifier names (``./x`` -> ``x.ts``, ``x/index.ts``, ...)."""
    if not spec.startswith("."):
        return None  # a package, or a path alias: not another cluster's file by this parser's view
    base = posixpath.normpath(posixpath.join(posixpath.dirname(importer), spec))
    stem = base[: -len(Path(base).suffix)] if base.endswith((".js", ".mjs", ".cjs", ".jsx")) else base
    for candidate in (base, *(stem + s for s in _JS_SUFFIXES), *(f"{base}/index{s}" for s in _JS_SUFFIXES)):
        if (tree / candidate).is_file():
            return candidate
    # Not in this tree (another cluster's file, in a cluster's own worktree): its path still says whose.
    return None if base.startswith("../") else base


def ts_independence(tree: Path, plan: Plan, only: str | None = None) -> Outcome:
    """Clusters' TypeScript and JavaScript import each other only through the contract files:
    every relative import (``import``/``export ... from``, ``require``, dynamic ``import()``)
    from one cluster's files into another cluster's is reported with its line. Package imports
    and path aliases are not followed."""
    owners = [(c.name, PathSet(c.paths)) for c in plan.clusters]
    contracts = set(plan.contracts)
    evidence: list[str] = []
    scanned = 0
    for name, paths in owners:
        if only is not None and name != only:
            continue
        for file in sorted(p for p in tree.rglob("*") if p.suffix in _JS_SUFFIXES and "node_modules" not in p.parts):
            rel = file.relative_to(tree).as_posix()
            if not paths.matches(rel):
                continue
            scanned += 1
            for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
                for spec in _SPECIFIER.findall(line):
                    target = _resolve_js(tree, rel, spec)
                    if target is None or target in contracts:
                        continue
                    other = next((n for n, p in owners if n != name and p.matches(target)), None)
                    if other:
                        evidence.append(f"{rel} (cluster {name}) imports {spec} ({target}, cluster {other}) "
                                        f"at line {number}: {line.strip()}")
    if not scanned:
        return Outcome("skipped", note="no TypeScript or JavaScript file in the clusters' paths yet")
    return Outcome("violation" if evidence else "ok", evidence,
                   note=f"relative imports of {scanned} TypeScript/JavaScript files")
