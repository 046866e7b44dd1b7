"""Merging conflicted paths again with mergiraf, a syntax-aware merge driver, when it is installed:
the driver is defined for one git command with ``-c`` and named for exactly those paths in the
common dir's ``info/attributes`` (put back as it was afterwards); the user's config and tracked
``.gitattributes`` are never written.

Split from ``merge`` (the rest of the integration's git side), whose ``DIFF3`` it uses.
"""

from __future__ import annotations

import re
import shlex
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

from prefect_work_clusters.tasks.git import core as gitops
from prefect_work_clusters.tasks.git.merge import DIFF3

_ATTR_BEGIN = "# >>> work-clusters: temporary merge driver (removed after the merge)\n"
_ATTR_END = "# <<< work-clusters\n"


def mergiraf_driver(executable: str, failures: Path) -> list[str]:
    """``-c`` options that define the mergiraf driver for one git command. ``checkout -m`` ignores a
    driver's exit status and keeps whatever is in ``%A`` (ours, if the driver died), so the driver
    line also appends the path (``%P``, quoted by git) to ``failures`` when mergiraf fails.
    ``%S/%X/%Y`` (marker labels) are left out: git 2.39 passes them through unexpanded."""
    line = (f"{shlex.quote(executable)} merge --git %O %A %B -p %P -l %L"
            f" || {{ echo %P >> {shlex.quote(str(failures))}; exit 1; }}")
    return ["-c", "merge.mergiraf.name=mergiraf (work-clusters)", "-c", f"merge.mergiraf.driver={line}"]


def _attr_pattern(path: str) -> str:
    escaped = re.sub(r"([\\*?\[])", r"\\\1", path)
    anchored = "/" + escaped  # a pattern without a slash would match the name in every folder
    return '"' + anchored.replace('"', '\\"') + '"' if re.search(r'[\s"]', anchored) else anchored


@contextmanager
def merge_attributes(repo: Path, paths: Sequence[str], driver: str) -> Iterator[None]:
    """``merge=<driver>`` for exactly ``paths``, through the common dir's ``info/attributes``
    (never a tracked ``.gitattributes``); the file is put back as it was afterwards."""
    info = gitops.common_dir(repo) / "info"
    info.mkdir(exist_ok=True)
    attributes = info / "attributes"
    with FileLock(str(info / "work-clusters-attributes.lock")):
        original = attributes.read_bytes() if attributes.exists() else None
        body = "".join(f"{_attr_pattern(p)} merge={driver}\n" for p in paths)
        prefix = (original or b"").decode("utf-8", "surrogateescape")
        if prefix and not prefix.endswith("\n"):
            prefix += "\n"
        attributes.write_text(prefix + _ATTR_BEGIN + body + _ATTR_END, errors="surrogateescape")
        try:
            yield
        finally:
            if original is None:
                attributes.unlink(missing_ok=True)
            else:
                attributes.write_bytes(original)


def remerge_with_driver(worktree: Path, paths: Sequence[str], executable: str) -> set[str]:
    """Merge ``paths`` again from their index stages with the mergiraf driver (``checkout -m``
    runs the driver the attributes name); results land in the worktree, unstaged. Returns the
    paths where mergiraf reported failure."""
    with tempfile.TemporaryDirectory(prefix="wc-mergiraf-") as tmp, \
            merge_attributes(worktree, paths, "mergiraf"):
        failures = Path(tmp) / "failed"
        gitops.run(worktree, *mergiraf_driver(executable, failures), *DIFF3, "checkout", "-m", "--", *paths,
                   check=False)
        return set(failures.read_text().splitlines()) if failures.exists() else set()
