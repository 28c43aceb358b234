"""Usage: the ledger's daily roll-up, its aggregations, the /usage/ pages, CSV export and summary JSON."""
