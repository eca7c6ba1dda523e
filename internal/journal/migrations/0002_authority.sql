-- 0002: the authority time lock (widening policy changes wait authority.hold).
--
-- authority_baseline holds one row: the authority-relevant settings in force
-- (the allowlist and the compliance section) as JSON. No row: the journal is
-- new, and the policy it starts with is in force at once.
CREATE TABLE authority_baseline (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    body       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- authority_changes holds every widening change treasuryd has seen: item
-- names the change and its new value (e.g. an allowlist entry), so an edit
-- of a pending value is a new item. first_seen is when treasuryd first saw
-- it; effective_at when it matures. A pending item becomes matured (in
-- force) or cancelled (gone from the file before maturing), never deleted.
CREATE TABLE authority_changes (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL CHECK (kind IN ('allowlist', 'compliance')),
    item         TEXT    NOT NULL,
    diff         TEXT    NOT NULL,
    first_seen   INTEGER NOT NULL,
    effective_at INTEGER NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'matured', 'cancelled')),
    resolved_at  INTEGER
);
CREATE UNIQUE INDEX authority_changes_pending_item ON authority_changes (item) WHERE state = 'pending';
