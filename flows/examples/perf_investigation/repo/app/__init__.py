"""shop-reports: the customer report of a small shop."""
