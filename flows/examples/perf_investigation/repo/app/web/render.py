"""The report page: rows into the HTML templates."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).with_name("templates")


def render_report(rows: list[dict[str, Any]]) -> str:
    body = []
    for row in rows:
        template = (TEMPLATES / "row.html").read_text()
        cells = {key: html.escape(str(value)) for key, value in row.items()}
        cells["revenue"] = f"{row['revenue_cents'] / 100:,.2f}"
        body.append(template.format(**cells))
    page = (TEMPLATES / "page.html").read_text()
    return page.format(rows="\n".join(body), script="static/app.js")
