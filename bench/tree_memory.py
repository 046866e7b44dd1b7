"""The memory of a process tree, sampled while it runs: what the scale benchmark holds to issue 16's
target 5 (the whole tree, PSS summed), used by ``common.timed``."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import platform
import threading
from typing import Any

# kcmp(2) and its KCMP_VM: whether two processes share one address space.
_KCMP = {"x86_64": 312, "aarch64": 272}.get(platform.machine())
_KCMP_VM = 1


class TreeSampler:
    """Peak memory of a process and all its descendants, sampled every ``interval`` seconds: the
    sum of their RSS, and the sum of their PSS (proportional set size: a page shared by several
    processes counts once in all, as when a child between fork and exec shares its parent's
    pages, which the RSS sum counts twice)."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.peak_pss = 0
        self.at_peak: list[tuple[str, float]] = []  # (process, PSS MB) at the PSS peak, largest first
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        total = pss = 0
        seen: list[tuple[str, float]] = []
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                if _in_parents_memory(proc):
                    continue
                mem = proc.memory_full_info()
                total += mem.rss
                pss += mem.pss
                seen.append((" ".join(proc.cmdline()[:3])[:80], round(mem.pss / 2**20, 1)))
        self.peak = max(self.peak, total)
        if pss > self.peak_pss:
            self.peak_pss = pss
            self.at_peak = sorted(seen, key=lambda x: -x[1])[:8]

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    @property
    def peak_mb(self) -> float:
        return round(self.peak / 2**20, 1)

    @property
    def peak_pss_mb(self) -> float:
        return round(self.peak_pss / 2**20, 1)


def _in_parents_memory(proc: Any) -> bool:
    """Whether ``proc`` runs in its parent's address space: a child between ``vfork`` and its
    ``exec`` (Python's subprocess uses vfork here). Its PSS is then its parent's whole PSS,
    counted already in the parent. False where the kernel cannot be asked."""
    if _KCMP is None:
        return False
    try:
        return bool(_libc().syscall(_KCMP, proc.pid, proc.ppid(), _KCMP_VM, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


@functools.cache
def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)
