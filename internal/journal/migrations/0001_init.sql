-- 0001: the first schema. Ids are INTEGER PRIMARY KEY without AUTOINCREMENT:
-- accepts, withdrawals and reports are never deleted, so ids only grow, and
-- AUTOINCREMENT would write sqlite_sequence on every insert. Times are Unix
-- nanoseconds (UTC) in INTEGER columns, NULL where the Go value is the zero
-- time. Money is decimal TEXT, exactly as
-- decimal.Decimal.String() wrote it.

CREATE TABLE accepts (
    id            INTEGER PRIMARY KEY,
    program       TEXT    NOT NULL,
    quote_id      TEXT    NOT NULL,
    raw_quote     BLOB    NOT NULL,
    base_asset    TEXT    NOT NULL,
    quote_asset   TEXT    NOT NULL,
    side          TEXT    NOT NULL,
    base_qty      TEXT    NOT NULL,
    quote_qty     TEXT    NOT NULL,
    expiry_micros INTEGER NOT NULL,
    sent_at       INTEGER NOT NULL,
    result        TEXT    NOT NULL CHECK (result IN ('pending', 'ok', 'rejected', 'error', 'unknown', 'missing')),
    message       TEXT    NOT NULL DEFAULT '',
    result_at     INTEGER,
    convert_id    TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX accepts_program_sent_at ON accepts (program, sent_at);
-- Only one index on accepts: every index is another page written (and
-- checksummed into the WAL) on the accept path. Filters without a program
-- scan a table that grows by a few rows a minute.

CREATE TABLE withdrawals (
    id          INTEGER PRIMARY KEY,
    rule        TEXT    NOT NULL,
    asset       TEXT    NOT NULL,
    network     TEXT    NOT NULL,
    address     TEXT    NOT NULL,
    amount      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('intent', 'unknown', 'submitted', 'completed', 'failed', 'rejected', 'unresolved')),
    desk_id     TEXT    NOT NULL DEFAULT '',
    desk_status TEXT    NOT NULL DEFAULT '',
    error       TEXT    NOT NULL DEFAULT '',
    updated_at  INTEGER
);
CREATE INDEX withdrawals_rule_created_at ON withdrawals (rule, created_at);
CREATE INDEX withdrawals_asset_created_at ON withdrawals (asset, created_at);
CREATE INDEX withdrawals_created_at ON withdrawals (created_at);
CREATE INDEX withdrawals_state ON withdrawals (state);

-- settings holds small named flags; 'paused' is the pause flag ('1' or '0').
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_by TEXT NOT NULL DEFAULT '',
    updated_at INTEGER
);

CREATE TABLE reports (
    id    INTEGER PRIMARY KEY,
    at    INTEGER NOT NULL,
    clean INTEGER NOT NULL,
    body  BLOB    NOT NULL
);
CREATE INDEX reports_at ON reports (at);

CREATE TABLE frames (
    id            INTEGER PRIMARY KEY,
    program       TEXT    NOT NULL,
    received_at   INTEGER NOT NULL,
    raw           BLOB    NOT NULL,
    paused        INTEGER NOT NULL,
    gate_open     INTEGER NOT NULL,
    gate_reason   TEXT    NOT NULL DEFAULT '',
    balance       TEXT    NOT NULL,
    balance_known INTEGER NOT NULL,
    in_flight     INTEGER NOT NULL,
    outcome       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX frames_received_at ON frames (received_at);
CREATE INDEX frames_program_received_at ON frames (program, received_at);
