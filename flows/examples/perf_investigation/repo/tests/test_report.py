import unittest

from app.api.reports import customer_report
from app.db import store
from app.web.render import render_report


class ReportTest(unittest.TestCase):
    def test_ranks_by_revenue(self) -> None:
        conn = store.connect()
        store.seed(conn, customers=20, products=5, orders=200)
        rows = customer_report(conn)
        self.assertEqual(len(rows), 20)
        revenues = [r["revenue_cents"] for r in rows]
        self.assertEqual(revenues, sorted(revenues, reverse=True))
        self.assertEqual(rows[0]["rank"], 1)

    def test_page_holds_every_row(self) -> None:
        conn = store.connect()
        store.seed(conn, customers=5, products=3, orders=30)
        page = render_report(customer_report(conn))
        self.assertEqual(page.count("<tr><td>"), 5)


if __name__ == "__main__":
    unittest.main()
