"""A child's output: every byte into the log file at the pipe's speed, a bounded, clean share to people.

Measured before this module: each line went to Prefect's logger on the thread that read the
pipe, so 30,000 lines of 1 KB took 128 s for an agent that needs under 1 s (the agent blocked on
the full pipe), and one 100 MB line without a newline peaked at 1 GB. Now:

- the reader thread only writes the raw chunk to the log file and cuts it into lines, each kept
  to ``MAX_LINE`` characters (the rest of a longer line is counted, never held);
- what people see (Prefect's log, the terminal) goes through ``on_line`` from a thread of its
  own, a batch at a time (every ``BATCH_SECONDS`` or ``BATCH_CHARS``), with escape sequences
  and control characters removed, and capped: the first ``HEAD_CHARS`` of output, every line
  that looks like an error (up to ``ERROR_CHARS``), and at the end the last ``TAIL_CHARS``,
  with one line saying how much was left out and where all of it is.

This module imports nothing of ours.
"""

from __future__ import annotations

import logging
import os
import re
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

MAX_LINE = 4000
TAIL_CHARS = 4000
HEAD_CHARS = 64_000
ERROR_CHARS = 64_000
LAST_CHARS = 8_000
BATCH_SECONDS = 0.5
BATCH_CHARS = 32_000
PENDING_CHARS = 256_000  # a stalled ``on_line`` holds at most this much; older lines are dropped

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), other two-byte escapes, then any control
# character but tab. What is left cannot clear a screen, move the cursor or retitle a terminal.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|\x9b[0-?]*[ -/]*[@-~]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
# Plain substring tests on the lowered line: a case-insensitive regex alternation cost 10 s for
# 30,000 lines of 1 KB, ten times the agent's own run.
_LOOKS_BAD = ("error", "exception", "traceback", "fatal", "panic", "failed", "denied")


def clean(text: str) -> str:
    """``text`` without terminal escape sequences and control characters (tab is kept).

    >>> clean("\\x1b[2J\\x1b[31mred\\x1b[0m\\rdone\\x07")
    'reddone'
    """
    if text.isprintable():  # the common case, checked in C
        return text
    return _CONTROL.sub("", _ESCAPES.sub("", text))


class OutputSink:
    """Receives a child's raw output (``feed`` from one reader thread) and serves the log file,
    ``on_line`` and the tail of a ``ProcessResult``. ``close`` ends it; call it once."""

    def __init__(self, log_path: Path | None, on_line: Callable[[str], None] | None) -> None:
        self._log: BinaryIO | None = None
        self._where = str(log_path) if log_path is not None else "the process's output"
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(log_path, "ab")
        self._line: list[bytes] = []  # the unfinished line, at most MAX_LINE bytes of it
        self._line_bytes = 0
        self._line_cut = 0  # bytes of the unfinished line beyond MAX_LINE, counted, not kept
        self._tail: deque[str] = deque()
        self._tail_chars = 0
        self._people = _People(on_line, self._where) if on_line is not None else None

    def feed(self, chunk: bytes) -> None:
        if self._log is not None:
            self._log.write(chunk)
        *complete, rest = chunk.split(b"\n")
        if complete:
            # Past the head, only lines with an error word and the last ones are shown: a chunk
            # without such a word skips its lines but the last few (only counted), since per-line
            # work here is what the agent waits on.
            bad = self._people is None or not self._people.past_head() or _looks_bad(chunk)
            self._append(complete[0])
            self._end_line(newline=True, bad=bad)
            lines = complete[1:]
            skip = 0 if bad and self._people is not None else _all_but_last(lines)
            if skip and self._people is not None:
                self._people.left_out(skip)
            for line in lines[skip:]:
                self._append(line)
                self._end_line(newline=True, bad=bad)
        self._append(rest)

    def _append(self, piece: bytes) -> None:
        room = MAX_LINE - self._line_bytes
        if len(piece) > room:
            self._line_cut += len(piece) - room
            piece = piece[:max(room, 0)]
        if piece:
            self._line.append(piece)
            self._line_bytes += len(piece)

    def _end_line(self, *, newline: bool, bad: bool = True) -> None:
        text = clean(b"".join(self._line).decode("utf-8", errors="replace"))
        if self._line_cut:
            text += f" [... {self._line_cut:,} more bytes of this line cut; all in {self._where}]"
        self._line, self._line_bytes, self._line_cut = [], 0, 0
        self._tail.append(text + "\n" if newline else text)
        self._tail_chars += len(self._tail[-1])
        while self._tail_chars - len(self._tail[0]) >= TAIL_CHARS:
            self._tail_chars -= len(self._tail.popleft())
        if self._people is not None:
            self._people.add(text, bad)

    def tail(self) -> str:
        """The last ``TAIL_CHARS`` of the output, cleaned."""
        return "".join(self._tail)[-TAIL_CHARS:]

    def close(self) -> None:
        """Take the unfinished line, flush the log, hand people the rest; idempotent."""
        if self._line_bytes or self._line_cut:
            self._end_line(newline=False)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._people is not None:
            self._people.close()
            self._people = None


def _all_but_last(lines: list[bytes]) -> int:
    """How many of ``lines`` come before the last ``max(TAIL_CHARS, LAST_CHARS)`` characters."""
    keep, kept = max(TAIL_CHARS, LAST_CHARS), 0
    for count, line in enumerate(reversed(lines)):
        if kept >= keep:
            return len(lines) - count
        kept += min(len(line), MAX_LINE) + 1
    return 0


def _looks_bad(text: str | bytes) -> bool:
    if isinstance(text, bytes):
        low_bytes = text.lower()
        return any(word.encode() in low_bytes for word in _LOOKS_BAD)
    low = text.lower()
    return any(word in low for word in _LOOKS_BAD)


def drain(pipe: BinaryIO, stop: threading.Event, sink: OutputSink) -> None:
    """Read the pipe into ``sink`` until EOF, or, once ``stop`` is set, until nothing more is waiting."""
    fd = pipe.fileno()
    os.set_blocking(fd, False)
    give_up: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            ready = selector.select(timeout=0.1)
            if stop.is_set():
                # Never chase a writer that outlived the kill (one that left unseen).
                give_up = give_up or time.monotonic() + 1.0
                if not ready or time.monotonic() > give_up:
                    break
            if not ready:
                continue
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                break
            sink.feed(chunk)


class _People:
    """The capped, batched share of the output that ``on_line`` gets, on a thread of its own."""

    def __init__(self, on_line: Callable[[str], None], where: str) -> None:
        self._on_line: Callable[[str], None] | None = on_line
        self._where = where
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._pending: deque[str] = deque()
        self._pending_chars = 0
        self._head_left = HEAD_CHARS
        self._errors_left = ERROR_CHARS
        self._held: deque[str] = deque()  # the latest lines past the head: shown at the end
        self._held_chars = 0
        self._left_out = 0  # lines never shown (past the head, not errors, not in the end's share)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="output-to-people", daemon=True)
        self._thread.start()

    def add(self, text: str, maybe_bad: bool) -> None:
        with self._lock:
            if self._head_left > 0:
                self._head_left -= len(text) + 1
                self._queue(text)
            elif self._errors_left > 0 and maybe_bad and _looks_bad(text):
                self._errors_left -= len(text) + 1
                self._queue(text)
            else:
                self._held.append(text)
                self._held_chars += len(text) + 1
                while self._held_chars > LAST_CHARS and len(self._held) > 1:
                    self._held_chars -= len(self._held.popleft()) + 1
                    self._left_out += 1

    def _queue(self, text: str) -> None:
        self._pending.append(text)
        self._pending_chars += len(text) + 1
        while self._pending_chars > PENDING_CHARS and len(self._pending) > 1:
            self._pending_chars -= len(self._pending.popleft()) + 1
            self._left_out += 1
        if self._pending_chars >= BATCH_CHARS:
            self._wake.notify()

    def past_head(self) -> bool:
        with self._lock:
            return self._head_left <= 0

    def left_out(self, lines: int) -> None:
        with self._lock:
            self._left_out += lines

    def close(self) -> None:
        with self._lock:
            if self._left_out:
                self._pending.append(f"[... {self._left_out:,} line(s) of output not shown here; "
                                     f"all of it is in {self._where}]")
            self._pending.extend(self._held)
            self._held.clear()
            self._closed = True
            self._wake.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._closed and self._pending_chars < BATCH_CHARS:
                    self._wake.wait(BATCH_SECONDS)
                batch = list(self._pending)
                self._pending.clear()
                self._pending_chars = 0
                done = self._closed
            if batch and self._on_line is not None:
                # One call per batch; the lines after the first are indented, so a line an agent
                # prints can never pass for one of Prefect's own.
                try:
                    self._on_line("\n    ".join(batch))
                except Exception:
                    log.exception("on_line callback failed; no further output is passed to it")
                    self._on_line = None
            if done:
                return
