"""Every command the runner starts runs under the child-subreaper launcher (``reaper.py``) on
Linux: its command line, and the report of what it killed after the command ended.

Example::

    argv, program, report = under_launcher(["pytest", "-q"], "/usr/bin/pytest", grace=5.0)
    ...  # Popen(argv, executable=program), wait
    killed = leftovers(report)  # command lines of what the command left running
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REAPER = Path(__file__).with_name("reaper.py")
# Imported by folder rather than run by path, so that its compiled bytecode is cached.
LAUNCH = f"import sys; sys.path.insert(0, {str(REAPER.parent)!r}); import reaper; sys.exit(reaper.main(sys.argv[1:]))"


def under_launcher(argv: Sequence[str], executable: str, grace: float) -> tuple[list[str], str, Path | None]:
    """``(argv, executable, report file)`` that run ``argv`` under the launcher; unchanged, with no
    report, where no child subreaper exists (not Linux)."""
    if not sys.platform.startswith("linux"):
        return list(argv), executable, None
    fd, name = tempfile.mkstemp(prefix="wc-reaper-", suffix=".txt")
    os.close(fd)
    return [sys.executable, "-I", "-S", "-c", LAUNCH, name, str(grace), executable, *argv], sys.executable, Path(name)


def leftovers(report: Path | None) -> tuple[str, ...]:
    """What the launcher killed after the command ended (nothing when it was killed itself)."""
    if report is None:
        return ()
    try:
        text = report.read_text(errors="replace")
    except OSError:
        text = ""
    report.unlink(missing_ok=True)
    return tuple(c for c in text.split("\0") if c)
