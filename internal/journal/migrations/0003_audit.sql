-- 0003: the audit chain (docs/audit.md). Every money-state write appends one
-- entry per record it changes, in its own transaction. seq counts 1, 2, 3...
-- without gaps; at is Unix nanoseconds (UTC); body is the entry's canonical
-- JSON (it holds seq, at and kind too, so they are covered by the hash);
-- hash is the 32 raw bytes of SHA-256(previous hash || body), the previous
-- hash of entry 1 being 32 zero bytes. Entries are never updated or deleted.
CREATE TABLE audit (
    seq  INTEGER PRIMARY KEY,
    at   INTEGER NOT NULL,
    kind TEXT    NOT NULL,
    body BLOB    NOT NULL,
    hash BLOB    NOT NULL CHECK (length(hash) = 32)
);
