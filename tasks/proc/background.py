"""Work begun in a thread of its own now, for the caller to take later: a ``Future`` whose thread
ends with the work (the pool is let go at once; nothing waits for it but the caller).

This module imports nothing of ours."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def begin(name: str, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
    """``work(*args, **kwargs)`` begun now in a thread named after ``name``."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    try:
        return pool.submit(work, *args, **kwargs)
    finally:
        pool.shutdown(wait=False)
