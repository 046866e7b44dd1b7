"""The optional OS sandbox: a command under bubblewrap, able to write only where it must.

Inside, the whole filesystem is mounted read-only (``--ro-bind / /``); writable are only the
paths a ``Sandbox`` names (the agent's worktree and what git needs to commit there) and a private
temp dir, made for the one process and removed after it, that ``TMPDIR`` points to. It gets its
own PID namespace (``--unshare-pid``: when the command exits, everything it started dies with
the namespace) and dies with its parent (``--die-with-parent``). The network is shared: agents
call their model APIs. A write anywhere else fails with EROFS ("Read-only file system"); the lines
of output that say so are collected, so the report can name the attempt's refused writes.

Example::

    box = Sandbox(writable=(worktree, admin_dir, objects_dir))
    result = run_process(argv, cwd=worktree, env=env, timeout=600, sandbox=box)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

BWRAP = "bwrap"  # checked at validation by tasks.plan.rules.sandbox_problem
REFUSED = "Read-only file system"  # strerror(EROFS): what any program prints for a refused write


@dataclass(frozen=True)
class Sandbox:
    """Where a sandboxed command may write, besides its private temp dir."""

    writable: tuple[Path, ...]

    def argv(self, executable: str, argv: Sequence[str], cwd: Path, tmp: Path) -> list[str]:
        """The bwrap command line that runs ``argv`` (``executable`` resolved) in ``cwd``."""
        binds: list[str] = []
        for path in (*self.writable, tmp):
            binds += ["--bind", str(path), str(path)]
        return [BWRAP, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", *binds,
                "--unshare-pid", "--die-with-parent", "--chdir", str(cwd), "--", executable, *argv[1:]]

    @staticmethod
    def env(env: Mapping[str, str], tmp: Path) -> dict[str, str]:
        return {**env, "TMPDIR": str(tmp), "TMP": str(tmp), "TEMP": str(tmp)}


def refused_writes(output: str) -> list[str]:
    """The output lines that report a write the sandbox refused."""
    return [line.strip() for line in output.splitlines() if REFUSED in line]
