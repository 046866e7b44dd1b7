"""Prefect's own floor, run as a user's script would be: a fresh Python process that runs a flow
with one task and exits. With ``--server-start`` it times only starting and stopping the
temporary (ephemeral) server that Prefect's local mode starts for every process.

Prints one JSON line: {"import": s, "flow": s} or {"server_start": s, "server_stop": s}.
"""

from __future__ import annotations

import json
import sys
import time

t0 = time.monotonic()

if "--server-start" in sys.argv:
    from prefect.server.api.server import SubprocessASGIServer

    t1 = time.monotonic()
    server = SubprocessASGIServer()
    server.start()
    t2 = time.monotonic()
    server.stop()
    print(json.dumps({"import": round(t1 - t0, 3), "server_start": round(t2 - t1, 3),
                      "server_stop": round(time.monotonic() - t2, 3)}))
    sys.exit(0)

from prefect import flow, task  # noqa: E402

t1 = time.monotonic()


@task
def one() -> int:
    return 1


@flow(name="floor")
def floor() -> int:
    return one()


floor()
print(json.dumps({"import": round(t1 - t0, 3), "flow": round(time.monotonic() - t1, 3)}))
