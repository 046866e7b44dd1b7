"""What every ``work-clusters`` command shares: the Typer app, the two consoles, the common
options, and the one way to say a line to a person and to end with an exit status."""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Run one coding agent per work cluster in its own git worktree, then integrate.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Stream Prefect's log lines too, instead of "
                                                                 "the live view alone.")]
PlanArg = Annotated[Path, typer.Argument(help="Plan file (.yaml, .yml or .md), relative to the current directory.")]
RepoOpt = Annotated[Path, typer.Option("--repo", help="The git repository to work on.")]
RemoteRepoOpt = Annotated[str, typer.Option(
    "--repo", help="The git repository to work on, or a git remote (a URL, or a bare repository) to clone, "
                   "work in and push to.")]
WorkspaceOpt = Annotated[Path | None, typer.Option(help="Where worktrees and run records go.")]
CredentialsOpt = Annotated[str | None, typer.Option(
    help="With a remote --repo: the Secret block holding its token (default: $GITHUB_TOKEN and the like).")]


# The .runs/ folder of the run this process works on, once known: where a crash's traceback goes.
_runs_dir: Path | None = None


def remember_runs_dir(path: Path) -> None:
    global _runs_dir
    _runs_dir = path


def say(line: str) -> None:
    """One line for the person at the terminal (stderr), as it is: no markup, no highlighting."""
    err.print(line, markup=False, highlight=False)


def fail(line: str, code: int) -> NoReturn:
    """Say ``line`` and end the command with exit status ``code`` (see ``flows.cli``)."""
    say(line)
    sys.exit(code)


def crash_log(text: str) -> Path:
    """The traceback, kept in the run's .runs/ folder when there is one, else in a private temp
    file of its own (never a fixed shared path that other runs overwrite)."""
    if _runs_dir is not None and _runs_dir.is_dir():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = _runs_dir / f"crash-{stamp}-{os.getpid()}.log"
        path.write_text(text)
        return path
    fd, name = tempfile.mkstemp(prefix="work-clusters-crash-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return Path(name)
