"""Running a ``bench/`` script end to end from a test, at a tiny size, and checking its output.

A script runs in the test's own process, as ``python bench/SCRIPT ARGS`` would run it (its own
folder first on ``sys.path``, ``__main__``, its arguments in ``sys.argv``), so that it does not
pay a fresh interpreter's import of Prefect and of this package (2-4 s a script on 2 cores): the
processes a script starts itself (``work-clusters``, ``floor.py``, git, mypy) are still separate
processes, exactly as in the full benchmark. What a script changes in the process (``sys.path``,
``os.environ``, its ``bench/`` modules) is put back afterwards; a script that patches the package
itself (``bench_attempt_calls.py`` wraps ``tasks.git.core.run``) must not be run this way.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _drop_bench_modules() -> None:
    """Forget modules loaded from bench/ (``common``, ``bench_overhead``): each script imports
    its own, as a fresh process would, and never one that a test left behind."""
    for name, module in list(sys.modules.items()):
        if Path(getattr(module, "__file__", None) or "/").parent == BENCH:
            del sys.modules[name]


@contextlib.contextmanager
def _as_main(script: Path, args: tuple[str, ...]) -> Iterator[None]:
    argv, path, environ = sys.argv[:], sys.path[:], dict(os.environ)
    _drop_bench_modules()
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.parent))
    for key in [k for k in os.environ if k.startswith("GIT_")]:  # a hook's GIT_DIR must not steer its git
        del os.environ[key]
    try:
        yield
    finally:
        sys.argv, sys.path[:] = argv, path
        os.environ.clear()
        os.environ.update(environ)
        _drop_bench_modules()


def run_bench(script: str, out: Path, *args: str) -> tuple[str, dict[str, Any]]:
    """Run ``bench/script --out OUT ARGS`` to the end; its printed output and its results JSON,
    whose table (figure, value, target, verdict) must be printed and whose machine recorded."""
    printed = io.StringIO()
    path = BENCH / script
    code: object = 0
    with _as_main(path, ("--out", str(out), *args)), contextlib.redirect_stdout(printed):
        try:
            runpy.run_path(str(path), run_name="__main__")
        except SystemExit as exc:
            code = exc.code
    stdout = printed.getvalue()
    assert code in (0, None), f"{script} exited {code!r}:\n{stdout[-3000:]}"
    data: dict[str, Any] = json.loads(out.read_text())
    assert data["table"], f"{script} wrote no table rows"
    assert {"nproc", "cpu", "git", "python", "prefect"} <= set(data["machine"])
    for row in data["table"]:
        assert row["figure"] in stdout, f"{script} did not print its row {row['figure']!r}"
    return stdout, data
