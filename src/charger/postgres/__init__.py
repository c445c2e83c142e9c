"""The PostgreSQL adapter: connections from settings, the schema's migrations, the ledger
store the sink writes and the statement reader the API reads through."""
