"""Run as a script, in a subprocess: the imports a tree's packages make, found with grimp.

A subprocess because grimp finds packages with ``importlib``: in our own process a tree's
package named like one of ours (or one already imported) would resolve to the wrong files, and
two trees with the same package names would share one module cache. This script imports only
the standard library and grimp, and puts the tree before everything else on ``sys.path``.

    python -I import_probe.py '{"path": [...], "roots": [...], "watch": [...]}' OUT.json

writes ``{"imports": [{"importer", "imported", "line", "text"}, ...], "error": null}`` for every
import made by a module under a ``watch`` prefix. Imports of modules outside ``roots`` appear
under their top-level package name (grimp's external packages).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _under(module: str, prefixes: list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def probe(roots: list[str], watch: list[str]) -> dict[str, Any]:
    import grimp

    graph = grimp.build_graph(*roots, include_external_packages=True, cache_dir=None)
    found: list[dict[str, Any]] = []
    for importer in sorted(m for m in graph.modules if _under(m, watch)):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            details = graph.get_import_details(importer=importer, imported=imported)
            found += [{"importer": importer, "imported": imported, "line": d["line_number"],
                       "text": d["line_contents"]} for d in details]
            if not details:  # an external package: squashed, so the details are not kept
                found.append({"importer": importer, "imported": imported, "line": None, "text": ""})
    return {"imports": found, "error": None}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    here = Path(__file__).resolve().parent
    sys.path[:] = list(spec["path"]) + [p for p in sys.path if p and Path(p).resolve() != here]
    try:
        result = probe(spec["roots"], spec["watch"])
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the check's note
        result = {"imports": [], "error": f"{type(exc).__name__}: {exc}"}
    Path(argv[2]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
