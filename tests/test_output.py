"""An agent's output (issue 21): all of it in the log file, a bounded, batched, cleaned share to people.

Before the fix each line went to the callback (Prefect's logger) on the thread that read the
pipe: 30,000 lines of 1 KB took 128 s, one 100 MB line peaked at 1 GB, and escape sequences and
a fake "Finished in state Completed()" line went to the terminal as they were."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from prefect_work_clusters.tasks.proc.output import ERROR_CHARS, HEAD_CHARS, LAST_CHARS, MAX_LINE, OutputSink, clean
from prefect_work_clusters.tasks.proc.runner import run_process

PY = sys.executable


def run(code: str, tmp_path: Path, seen: list[str], delay: float = 0.0) -> tuple[Path, str]:
    log = tmp_path / "agent.log"

    def slow(text: str) -> None:
        time.sleep(delay)  # as Prefect's logger is, shipping each record to the API
        seen.append(text)

    result = run_process([PY, "-c", code], cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, timeout=120,
                         log_path=log, on_line=slow)
    assert result.ok, result.output_tail
    return log, result.output_tail


def test_a_flood_reaches_people_in_a_few_capped_batches_and_the_log_whole(tmp_path: Path) -> None:
    seen: list[str] = []
    code = "import sys\nfor i in range(30_000): sys.stdout.write(f'{i:06d} ' + 'x' * 1000 + '\\n')"
    log, tail = run(code, tmp_path, seen, delay=0.01)
    assert log.stat().st_size == 30_000 * 1008  # every byte in the log file
    assert len(seen) < 50, len(seen)  # batches, not 30,000 calls of 10 ms each
    shown = sum(map(len, seen))
    assert shown < HEAD_CHARS + LAST_CHARS + 2 * MAX_LINE
    assert "line(s) of output not shown here; all of it is in " + str(log) in "".join(seen)
    assert seen[-1].endswith("029999 " + "x" * 1000)  # the end is shown
    assert len(tail) <= 4000


def test_one_huge_line_is_cut_with_a_marker_and_never_held_whole(tmp_path: Path) -> None:
    seen: list[str] = []
    log, tail = run("import sys; sys.stdout.write('y' * 20_000_000)", tmp_path, seen)
    assert log.stat().st_size == 20_000_000
    [text] = seen
    assert text.startswith("y" * MAX_LINE + " [... 19,996,000 more bytes of this line cut; all in ")
    assert len(text) < MAX_LINE + 300 and tail == text[-4000:]


def test_the_sink_holds_a_bounded_amount_whatever_it_is_fed(tmp_path: Path) -> None:
    seen: list[str] = []
    sink = OutputSink(tmp_path / "log", seen.append)
    chunk = b"z" * 65536
    for _ in range(200):  # 13 MB without a newline
        sink.feed(chunk)
    assert sum(map(len, sink._line)) == MAX_LINE  # noqa: SLF001 - the bound under test
    sink.close()
    assert (tmp_path / "log").stat().st_size == 200 * 65536


def test_escape_sequences_and_control_characters_never_reach_people(tmp_path: Path) -> None:
    seen: list[str] = []
    code = ("import sys; sys.stdout.write('\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07ok '"
            "'\\x1b[31mred\\x1b[0m\\r\\x08\\x00done\\n'"
            "'Finished in state Completed()\\n')")
    log, tail = run(code, tmp_path, seen)
    assert seen == ["ok reddone\n    Finished in state Completed()"]  # the fake Prefect line is indented
    assert tail == "ok reddone\nFinished in state Completed()\n"
    assert b"\x1b[2J" in log.read_bytes() and b"\x1b]0;pwned\x07" in log.read_bytes()  # the log keeps raw bytes
    assert clean("tab\tkept \x9b2J\x1bP") == "tab\tkept "


def test_error_lines_past_the_head_still_reach_people(tmp_path: Path) -> None:
    seen: list[str] = []
    code = ("import sys\nfor i in range(2000): print('noise ' * 20)\nprint('Traceback: ERROR boom', flush=True)\n"
            "for i in range(2000): print('noise ' * 20)\nprint('the end')")
    run(code, tmp_path, seen)
    shown = "\n".join(seen)
    assert "Traceback: ERROR boom" in shown and shown.endswith("the end")
    assert len(shown) < HEAD_CHARS + ERROR_CHARS + LAST_CHARS


def test_bench_output_smoke(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    bench = Path(__file__).resolve().parent.parent / "bench" / "bench_output.py"
    res = subprocess.run([PY, str(bench), "--lines", "2000", "--big-mb", "5", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    assert data["flood"]["log_bytes"] == 2000 * 1008 and data["big"]["log_bytes"] == 5 * 2**20
    assert data["flood"]["calls"] < 20 and data["big"]["peak_rss_mb"] > 0
    assert "one 5 MB line: peak RSS" in res.stdout
