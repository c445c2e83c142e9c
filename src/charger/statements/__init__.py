"""Statements: what a customer sees of its ledger. `model` and `reader` are pure; the
PostgreSQL store that answers them and the HTTP API that shows them are adapters."""
