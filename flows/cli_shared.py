"""What every ``work-clusters`` command shares: the Typer app, the two consoles, the common
options, and the one way to say a line to a person and to end with an exit status."""

from __future__ import annotations

import sys
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


def say(line: str) -> None:
    """One line for the person at the terminal (stderr), as it is: no markup, no highlighting."""
    err.print(line, markup=False, highlight=False)


def fail(line: str, code: int) -> NoReturn:
    """Say ``line`` and end the command with exit status ``code`` (see ``flows.cli``)."""
    say(line)
    sys.exit(code)
