"""Time one customer report on a seeded database: ``python -m app.bench``."""

from __future__ import annotations

import time

from app.api.reports import customer_report
from app.db import store
from app.web.render import render_report


def main() -> None:
    conn = store.connect()
    store.seed(conn)
    start = time.perf_counter()
    rows = customer_report(conn)
    page = render_report(rows)
    print(f"report: {len(rows)} customers, {len(page)} bytes of HTML in {time.perf_counter() - start:.3f} s")


if __name__ == "__main__":
    main()
