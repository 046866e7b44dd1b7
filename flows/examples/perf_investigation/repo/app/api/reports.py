"""The customer report: revenue per customer, their top products, and their rank."""

from __future__ import annotations

import sqlite3
from typing import Any

from app.api.ranking import rank
from app.db import store


def customer_report(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = []
    for customer in store.all_customers(conn):
        orders = store.orders_of(conn, customer.id)
        revenue = 0
        for order in orders:
            revenue += store.product(conn, order.product_id).price_cents * order.quantity
        rows.append({"customer": customer.name, "region": customer.region, "orders": len(orders),
                     "revenue_cents": revenue, "top_products": top_products(orders)})
    return rank(rows)


def top_products(orders: list[store.Order], n: int = 3) -> list[int]:
    counts: dict[int, int] = {}
    for order in orders:
        counts[order.product_id] = counts.get(order.product_id, 0) + order.quantity
    return sorted(counts, key=lambda p: (-counts[p], p))[:n]
