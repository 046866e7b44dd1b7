"""Ranking customers by revenue."""

from __future__ import annotations

from typing import Any


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows by revenue, highest first, each with its rank (equal revenue, equal rank)."""
    ranked = []
    for row in rows:
        position = 1 + sum(1 for other in rows if other["revenue_cents"] > row["revenue_cents"])
        ranked.append({**row, "rank": position})
    return sorted(ranked, key=lambda r: (r["rank"], r["customer"]))
