"""Usage: the ledger and its cost rules, budgets, the daily roll-ups, the /usage/ pages, export and summary."""
