"""The terminal's live view of a run (no Prefect needed): redrawn in place on a terminal, with a
running cluster's elapsed time ticking; one plain line per change of state otherwise."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

from prefect_work_clusters.flows.live import live_view
from prefect_work_clusters.tasks.agents import progress
from prefect_work_clusters.tasks.agents.progress import Row


def _show(console: Console, *pictures: list[Row], wait: float = 0.0) -> None:
    with live_view(console):
        for rows in pictures:
            for watcher in list(progress._watchers):
                watcher(rows)
        time.sleep(wait)
    assert not progress._watchers  # the view stopped watching


def test_on_a_terminal_the_table_is_redrawn_and_a_running_clusters_time_ticks() -> None:
    out = io.StringIO()
    started = time.monotonic() - 7
    _show(Console(file=out, force_terminal=True, width=100),
          [Row("api", "running", 1, 0.0, since=started), Row("ui", "failed", 2, 4.0, 0.12)], wait=0.7)
    text = out.getvalue()
    assert "1 of 2 clusters done: ❌ 1 failed · ⏳ 1 running" in text
    assert re.search(r"⏳ running\s*│\s*1\s*│\s*[78] s", text) and "$0.12" in text
    assert "\x1b[1A" in text  # redrawn in place


def test_elsewhere_each_change_of_state_is_one_plain_line() -> None:
    out = io.StringIO()
    _show(Console(file=out, force_terminal=False, width=200),
          [Row("api", "pending")], [Row("api", "running", 1, 0.0)], [Row("api", "running", 1, 3.0)],
          [Row("api", "retrying", 1, 4.0)], [Row("api", "succeeded", 2, 9.0, 0.5)])
    assert out.getvalue().splitlines() == ["api: … pending", "api: ⏳ running (attempt 1, 0 s)",
                                           "api: 🔁 retrying (attempt 1, 4 s)",
                                           "api: ✅ succeeded (attempt 2, 9 s, $0.50)"]
