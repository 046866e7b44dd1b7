"""The terminal's view of a run: one line per cluster (state, attempt, elapsed, cost), redrawn in
place on a terminal, printed as plain lines when a cluster changes state otherwise (a CI log).

Prefect's own log stream stays off the terminal unless ``--verbose``: every line of it still goes
to the Prefect API (the UI's run page), and the summary at the end lists every warning.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live
from rich.table import Table

from prefect_work_clusters.tasks.agents import progress
from prefect_work_clusters.tasks.agents.progress import Row, headline


def table(rows: list[Row]) -> Table:
    """The live table: one row per cluster, with the run's headline as its title."""
    view = Table(title=headline(rows), title_justify="left")
    for col in ("cluster", "state", "attempt", "elapsed", "cost"):
        view.add_column(col)
    for row in rows:
        view.add_row(*row.cells())
    return view


def plain(row: Row) -> str:
    """One cluster's line for a log that is not a terminal."""
    cells = row.cells()
    extra = ", ".join(c for c in (f"attempt {row.attempt}" if row.attempt else "", cells[3], cells[4]) if c)
    return f"{row.cluster}: {cells[1]}" + (f" ({extra})" if extra else "")


def hide_prefect_console() -> None:
    """Keep Prefect's log lines off the terminal for the rest of this CLI process (they still go
    to the API), down to the temporary server's "Stopping" line at exit."""
    for name in ("", "prefect"):
        for handler in logging.getLogger(name).handlers:
            if type(handler).__name__ == "PrefectConsoleHandler":
                handler.setLevel(logging.CRITICAL + 1)


@contextmanager
def live_view(console: Console) -> Iterator[None]:
    """Show the clusters of the run this process runs while the body runs."""
    lock = threading.Lock()
    if console.is_terminal:
        latest: list[list[Row]] = [[]]

        def keep(rows: list[Row]) -> None:
            latest[0] = rows

        stop = progress.watch(keep)
        # Redrawn twice a second from the latest rows, so a running cluster's elapsed time ticks.
        with Live(get_renderable=lambda: table(latest[0]) if latest[0] else "", console=console,
                  refresh_per_second=2, transient=False):
            try:
                yield
            finally:
                stop()
        return
    said: dict[str, str] = {}

    def log(rows: list[Row]) -> None:
        with lock:
            for row in rows:
                if said.get(row.cluster) != f"{row.state}/{row.attempt}":
                    said[row.cluster] = f"{row.state}/{row.attempt}"
                    console.print(plain(row), markup=False, highlight=False)

    stop = progress.watch(log)
    try:
        yield
    finally:
        stop()
