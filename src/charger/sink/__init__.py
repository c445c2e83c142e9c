"""`charger ledger-sink`: billing.ledger into PostgreSQL, for statements."""
