"""`charger api`: balances, authorization, statements and a billing page over HTTP.

Stateless: balances come from the worker's Redis, statements from the ledger store behind
`charger.statements.reader.StatementReader`, rate plans from the same files and topic the
worker reads. Any number can run side by side behind a load balancer.
"""
