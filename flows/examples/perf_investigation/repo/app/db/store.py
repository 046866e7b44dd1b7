"""Data access: customers, products and orders in SQLite."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = Path(__file__).with_name("schema.sql")
REGIONS = ("north", "south", "east", "west")


@dataclass(frozen=True)
class Customer:
    id: int
    name: str
    region: str


@dataclass(frozen=True)
class Product:
    id: int
    name: str
    price_cents: int


@dataclass(frozen=True)
class Order:
    id: int
    customer_id: int
    product_id: int
    quantity: int


def connect(path: str = ":memory:") -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.read_text())
    return conn


def seed(conn: sqlite3.Connection, customers: int = 300, products: int = 60, orders: int = 9000,
         seed: int = 23) -> None:
    """Fill the tables with a reproducible shop."""
    rng = random.Random(seed)
    conn.executemany("INSERT INTO customers VALUES (?, ?, ?)",
                     [(i, f"customer {i}", rng.choice(REGIONS)) for i in range(1, customers + 1)])
    conn.executemany("INSERT INTO products VALUES (?, ?, ?)",
                     [(i, f"product {i}", rng.randrange(100, 20000)) for i in range(1, products + 1)])
    conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)",
                     [(i, rng.randrange(1, customers + 1), rng.randrange(1, products + 1), rng.randrange(1, 5))
                      for i in range(1, orders + 1)])
    conn.commit()


def all_customers(conn: sqlite3.Connection) -> list[Customer]:
    return [Customer(*row) for row in conn.execute("SELECT id, name, region FROM customers ORDER BY id")]


def orders_of(conn: sqlite3.Connection, customer_id: int) -> list[Order]:
    rows = conn.execute("SELECT id, customer_id, product_id, quantity FROM orders WHERE customer_id = ?",
                        (customer_id,))
    return [Order(*row) for row in rows]


def product(conn: sqlite3.Connection, product_id: int) -> Product:
    row = conn.execute("SELECT id, name, price_cents FROM products WHERE id = ?", (product_id,)).fetchone()
    return Product(*row)
