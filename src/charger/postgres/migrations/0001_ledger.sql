-- The ledger as statements read it: one row per ledger entry id, and what the sink refused.

-- One row per entry, written once by `charger ledger-sink` and never updated: the first
-- record read under an id is the entry (a republished or re-created one changes nothing).
CREATE TABLE ledger_entries (
    entry_id             text        PRIMARY KEY,
    account              text        NOT NULL,
    kind                 text        NOT NULL,
    -- Signed micro-units of `currency`: debits negative, credits positive.
    amount_micros        bigint      NOT NULL,
    balance_after_micros bigint      NOT NULL,
    currency             text        NOT NULL,
    -- What dates the entry on a statement: the document's `time` (docs/architecture.md).
    occurred_at          timestamptz NOT NULL,
    -- The ledger.entry record as first read (decoded JSON).
    document             jsonb       NOT NULL,
    -- Where on billing.ledger it was first read: orders entries of one instant.
    ledger_partition     integer     NOT NULL,
    ledger_offset        bigint      NOT NULL,
    stored_at            timestamptz NOT NULL DEFAULT now()
);

-- Statements and daily movements: an account's entries in time order, and the sums before
-- a day (opening balances) from the index alone.
CREATE INDEX ledger_entries_account_time
    ON ledger_entries (account, occurred_at, ledger_partition, ledger_offset)
    INCLUDE (amount_micros, kind);

-- Records of billing.ledger the sink did not store: another payload under a known id
-- (`conflict`: the stored entry stays), or not a ledger entry at all (`malformed`).
-- One row per record, however often it is read again.
CREATE TABLE ledger_refused (
    refused_id       bigserial   PRIMARY KEY,
    reason           text        NOT NULL CHECK (reason IN ('conflict', 'malformed')),
    entry_id         text,
    ledger_partition integer     NOT NULL,
    ledger_offset    bigint      NOT NULL,
    detail           text        NOT NULL,
    -- The refused record: decoded when it was JSON, its bytes when it was not.
    document         jsonb,
    raw              bytea,
    refused_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (ledger_partition, ledger_offset)
);

CREATE INDEX ledger_refused_entry ON ledger_refused (entry_id);
