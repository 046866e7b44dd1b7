"""Prefect's temporary server as the CLI runs it (``python -m prefect_work_clusters.flows.server_boot``):
the one command of ``flows/server_process.py``, booted ahead as the CLI starts (before it knows it
will run a flow) or spawned once Prefect's settings are read.

It first imports Prefect's server package, the slow part of the server's start (about 6 s of one
core on a 2-core machine) and one that touches nothing: no database, no port. Then it reads one
line on stdin: a port, and it serves there as Prefect's local mode would (``uvicorn`` with the
same factory and options as ``SubprocessASGIServer``); or end of input (the CLI found bad input,
or uses a running server, or died), and it exits without having touched anything.
"""

from __future__ import annotations

import signal
import sys


def main() -> int:
    # A terminal's Ctrl-C reaches the whole process group: the CLI handles it and stops this
    # process; until uvicorn installs its own handlers, it must not print a traceback here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import prefect.server.api.server  # noqa: F401 - the slow part, done while the CLI checks its input

    line = sys.stdin.readline().strip()
    if not line.isdigit():
        return 0
    import uvicorn

    uvicorn.run("prefect.server.api.server:create_app", factory=True, host="127.0.0.1", port=int(line),
                log_level="error", lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
