-- 0002: the audit chain (docs/audit.md), as migrations/0003_audit.sql: seq
-- counts 1, 2, 3... without gaps; at is Unix nanoseconds (UTC); body is the
-- entry's canonical JSON; hash is the 32 raw bytes of SHA-256(previous hash
-- || body). Entries are never updated or deleted. Appends are serialised by
-- a transaction-level advisory lock (audit.go).
CREATE TABLE audit (
    seq  BIGINT PRIMARY KEY,
    at   BIGINT NOT NULL,
    kind TEXT   NOT NULL,
    body BYTEA  NOT NULL,
    hash BYTEA  NOT NULL CHECK (length(hash) = 32)
);
