"""The one home of what the tests share; import from the module that holds it.

- harness: `Run` (one isolated charging run: inputs, outputs, balances) and `Stack`.
- records: a builder for every input record type, dated by a run or a fixed time.
- worker: `Worker` and `spawn_worker` (the real process), `running` (the runtime in-process).
- waits: `until`, a deadline-bound wait for any condition.
- outputs: ledger entries, switch commands, notifications and recharge requests of a run.
- http: GETs against a worker's or Prometheus's web server.
- traffic: a steady stream of SMS, attempts and calls, with the balances it must leave,
  and the tally of a run's ledger and balances against them.
- servers, proxy: a locked-down Valkey, TLS fronts, a broker behind one, an outage proxy.
- cluster: a client for a test's Redis URL (cluster-aware for ``redis+cluster://``), and
  which primary serves each of a run's slots.
- api: accounts written to Redis by the worker's planner and apply.lua (no broker), a
  ledger stored in PostgreSQL as the sink stores it, the API's services, `charger api` as
  a process or in a thread.
- statements: `MemoryStatements`, a `StatementReader` in memory, and ledger builders.
- browser: headless Chromium through WebDriver, and where screenshots are kept.
- corpus, acl, certs, spending, strategies: bad-input cases, the deploy ACL file, a
  throwaway PKI, the reference of how calls spend money, Hypothesis strategies for records.
"""
