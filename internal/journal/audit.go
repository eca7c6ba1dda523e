package journal

// The audit chain (SPEC 13, docs/audit.md): every write that changes money
// state also appends, in the same transaction, one entry per record it
// changed to a hash chain. Entry n holds its sequence number, time, kind and
// a canonical JSON body, and hash_n = SHA-256(hash_{n-1} || body_n), where
// hash_0 is 32 zero bytes and || is byte concatenation of the 32 raw bytes of
// the previous hash and the body's bytes as stored. The body holds seq, at
// and kind as well, so none of them can be changed without breaking the
// chain; its "data" is the record as the journal holds it after the write,
// so `treasuryd audit verify` can check every row against its last entry.
//
// Canonical JSON here is encoding/json's output for the structs below, whose
// fields are declared in the order of their JSON names (so keys come sorted),
// without whitespace; decimals are strings exactly as the journal stores
// them, times RFC 3339 with nanoseconds in UTC. A verifier never needs to
// rebuild a body to check the chain: it hashes the stored bytes.

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Audit entry kinds.
const (
	AuditAcceptIntent        = "accept_intent"         // InsertAccept: journaled before the POST
	AuditAcceptResult        = "accept_result"         // SetAcceptResult
	AuditAcceptMarkedUnknown = "accept_marked_unknown" // MarkPendingAcceptsUnknown at start
	AuditAcceptSettled       = "accept_settled"        // SettleAccept by reconciliation
	AuditWithdrawalIntent    = "withdrawal_intent"     // InsertWithdrawalIntent
	AuditWithdrawalUpdate    = "withdrawal_update"     // UpdateWithdrawal
	AuditOperatorResolution  = "operator_resolution"   // ResolveWithdrawal: an operator's answer
	AuditPause               = "pause"                 // SetPaused(true)
	AuditResume              = "resume"                // SetPaused(false)
	AuditReport              = "report"                // SaveReport
	AuditAuthorityPending    = "authority_pending"     // a widening change waiting for its hold (SPEC 10)
	AuditAuthorityCancelled  = "authority_cancelled"   // a pending change withdrawn
	AuditAuthorityMatured    = "authority_matured"     // a pending change in force
	AuditAuthorityBaseline   = "authority_baseline"    // the settings in force changed (narrowing at once, or a change matured)
	AuditLeadershipTerm      = "leadership_term"       // BeginTerm: a process leads a PostgreSQL journal under a new fencing term
	AuditAcceptSnapshot      = "accept_snapshot"       // an accept journaled before the chain existed
	AuditWithdrawalSnapshot  = "withdrawal_snapshot"   // likewise a withdrawal
	AuditPauseSnapshot       = "pause_snapshot"        // likewise the pause flag
	AuditReportSnapshot      = "report_snapshot"       // likewise a report
	auditMigration           = 3                       // the migration that creates the chain (and snapshots what came before)
	auditHashLen             = sha256.Size             // 32
)

// auditKinds maps each entry kind to the journal table whose row its data
// holds ("" for kinds verify does not check row by row yet: the authority
// changes) and whether the kind starts a record (its id must be new) rather
// than updating one.
var auditKinds = map[string]struct {
	table string
	first bool
}{
	AuditAcceptIntent:        {"accepts", true},
	AuditAcceptSnapshot:      {"accepts", true},
	AuditAcceptResult:        {"accepts", false},
	AuditAcceptMarkedUnknown: {"accepts", false},
	AuditAcceptSettled:       {"accepts", false},
	AuditWithdrawalIntent:    {"withdrawals", true},
	AuditWithdrawalSnapshot:  {"withdrawals", true},
	AuditWithdrawalUpdate:    {"withdrawals", false},
	AuditOperatorResolution:  {"withdrawals", false},
	AuditPause:               {"settings", false},
	AuditResume:              {"settings", false},
	AuditPauseSnapshot:       {"settings", false},
	AuditReport:              {"reports", true},
	AuditReportSnapshot:      {"reports", true},
	AuditAuthorityPending:    {"", false},
	AuditAuthorityCancelled:  {"", false},
	AuditAuthorityMatured:    {"", false},
	AuditAuthorityBaseline:   {"", false},
	AuditLeadershipTerm:      {"", false},
}

// AuditHead is the newest entry of the chain: what an outside system pins.
// Sequence 0 (and the hash of 32 zero bytes) is the empty chain.
type AuditHead struct {
	Sequence int64  `json:"sequence"`
	Hash     string `json:"hash"` // hex
}

// AuditEntry is one stored entry.
type AuditEntry struct {
	Seq  int64
	At   time.Time
	Kind string
	Body []byte // canonical JSON, exactly the bytes hashed
	Hash []byte // 32 bytes
}

// auditBody is an entry's body. Fields in the order of their JSON names.
type auditBody struct {
	At   string          `json:"at"`
	By   string          `json:"by,omitempty"` // who, for operator actions
	Data json.RawMessage `json:"data"`
	Kind string          `json:"kind"`
	Seq  int64           `json:"seq"`
}

// auditAccept is an accepts row. Fields in the order of their JSON names.
type auditAccept struct {
	BaseAsset      string `json:"base_asset"`
	BaseQty        string `json:"base_qty"`
	ConvertID      string `json:"convert_id"`
	ExpiryMicros   int64  `json:"expiry_micros"`
	ID             int64  `json:"id"`
	Message        string `json:"message"`
	Program        string `json:"program"`
	QuoteAsset     string `json:"quote_asset"`
	QuoteID        string `json:"quote_id"`
	QuoteQty       string `json:"quote_qty"`
	RawQuoteSHA256 string `json:"raw_quote_sha256"`
	Result         string `json:"result"`
	ResultAt       string `json:"result_at"`
	SentAt         string `json:"sent_at"`
	Side           string `json:"side"`
}

// auditWithdrawal is a withdrawals row. Fields in the order of their JSON names.
type auditWithdrawal struct {
	Address    string `json:"address"`
	Amount     string `json:"amount"`
	Asset      string `json:"asset"`
	CreatedAt  string `json:"created_at"`
	DeskID     string `json:"desk_id"`
	DeskStatus string `json:"desk_status"`
	Error      string `json:"error"`
	ID         int64  `json:"id"`
	Network    string `json:"network"`
	Rule       string `json:"rule"`
	State      string `json:"state"`
	UpdatedAt  string `json:"updated_at"`
}

// auditPause is the pause flag's settings row.
type auditPause struct {
	Paused    bool   `json:"paused"`
	Reason    string `json:"reason"` // the pause_reason row: why it was set
	UpdatedAt string `json:"updated_at"`
	UpdatedBy string `json:"updated_by"`
}

// auditReport is a reports row; the report itself by its SHA-256.
type auditReport struct {
	At         string `json:"at"`
	BodySHA256 string `json:"body_sha256"`
	Clean      bool   `json:"clean"`
	ID         int64  `json:"id"`
}

// auditTime formats a stored time (Unix nanoseconds, NULL for unset).
func auditTime(n sql.NullInt64) string {
	if !n.Valid {
		return ""
	}
	return time.Unix(0, n.Int64).UTC().Format(time.RFC3339Nano)
}

func auditNanos(n int64) string { return auditTime(sql.NullInt64{Int64: n, Valid: true}) }

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// auditCursor is a chain head: the last entry's sequence and hash.
type auditCursor struct {
	known bool
	seq   int64
	hash  [auditHashLen]byte
}

// appendAudit appends one entry to the chain inside tx, which holds the
// write lock (every journal write is BEGIN IMMEDIATE). data is marshalled as
// the entry's canonical "data"; by names who acted, for operator actions
// ("" otherwise). The caller holds j.wsem.
//
// The head comes from memory (the head after this process's last commit,
// or earlier in this transaction) rather than a read per entry, which is on
// the accept path. It can be stale only if another process (a one-shot
// `reconcile`) appended since: then the entry after it exists, the INSERT
// fails on the primary key, and the head is read in this transaction and
// the entry built again on it. A statement that fails does not end the
// transaction.
func (j *Journal) appendAudit(ctx context.Context, tx *sql.Tx, kind, by string, data any) error {
	return j.appendAuditTo(ctx, sqlAuditWriter{j: j, tx: tx}, kind, by, data)
}

// auditWriter is the transaction an entry is appended in: a database/sql
// transaction (sqlAuditWriter) or the accept path's driver-level batch
// (batchTx).
type auditWriter interface {
	insertEntry(ctx context.Context, seq, at int64, kind string, body, hash []byte) error
	readHead(ctx context.Context) (auditCursor, error)
	// lockChain serialises appends across processes on PostgreSQL (a
	// transaction-level advisory lock, held to commit or rollback).
	lockChain(ctx context.Context) error
}

// auditLockKey is the chain's advisory lock on PostgreSQL: "trau".
const auditLockKey = 0x74726175

const auditLockSQL = "SELECT pg_advisory_xact_lock(?)"

func (w sqlAuditWriter) lockChain(ctx context.Context) error {
	_, err := w.tx.ExecContext(ctx, auditLockSQL, auditLockKey)
	return err
}

// sqlAuditWriter appends inside a database/sql transaction.
type sqlAuditWriter struct {
	j  *Journal
	tx *sql.Tx
}

func (w sqlAuditWriter) insertEntry(ctx context.Context, seq, at int64, kind string, body, hash []byte) error {
	if w.j.auditInsert == nil {
		// Prepared once per transaction, used for each of its entries and
		// finalized with it: a statement prepared on the pool for good would
		// outlive every transaction, and one left so on j.w kept the WAL
		// from being restarted after checkpoints
		// (TestBackgroundCheckpointsKeepTheWALFromGrowing).
		st, err := w.tx.PrepareContext(ctx, auditInsertSQL)
		if err != nil {
			return fmt.Errorf("audit: prepare: %w", err)
		}
		w.j.auditInsert = st
	}
	_, err := w.j.auditInsert.ExecContext(ctx, seq, at, kind, body, hash)
	return err
}

func (w sqlAuditWriter) readHead(ctx context.Context) (auditCursor, error) {
	return readAuditHead(ctx, w.tx)
}

// appendAuditTo appends one entry to the chain inside tx, which holds the
// write lock (every journal write is BEGIN IMMEDIATE). data is marshalled as
// the entry's canonical "data"; by names who acted, for operator actions
// ("" otherwise). The caller holds j.wsem.
//
// The head comes from memory (the head after this process's last commit,
// or earlier in this transaction) rather than a read per entry, which is on
// the accept path. It can be stale only if another process (a one-shot
// `reconcile`) appended since: then the entry after it exists, the INSERT
// fails on the primary key, and the head is read in this transaction and
// the entry built again on it. A statement that fails does not end the
// transaction.
func (j *Journal) appendAuditTo(ctx context.Context, tx auditWriter, kind, by string, data any) error {
	if _, ok := auditKinds[kind]; !ok {
		return fmt.Errorf("audit: unknown entry kind %q", kind)
	}
	var err error
	d, ok := data.(auditJSON)
	if !ok {
		if d, err = json.Marshal(data); err != nil {
			return fmt.Errorf("audit: encode %s: %w", kind, err)
		}
	}
	now := time.Now().UnixNano()
	at := auditNanos(now)
	if j.Postgres() && j.auditPending == 0 {
		// PostgreSQL: a failed statement aborts the transaction, so a
		// stale head cannot be retried as on SQLite; and two processes'
		// transactions do not exclude each other. The first entry of a
		// transaction takes the chain's lock and reads the head under it.
		if err := tx.lockChain(ctx); err != nil {
			return fmt.Errorf("audit: lock the chain: %w", err)
		}
		j.auditTx.known = false
	}
	fromMemory := j.auditTx.known
	for {
		if !j.auditTx.known {
			if j.auditTx, err = tx.readHead(ctx); err != nil {
				return err
			}
		}
		seq := j.auditTx.seq + 1
		body := auditBodyBytes(at, by, d, kind, seq)
		h := auditHash(j.auditTx.hash[:], body)
		err = tx.insertEntry(ctx, seq, now, kind, body, h[:])
		if err != nil && fromMemory {
			fromMemory, j.auditTx.known = false, false // read the head and build the entry again, once
			continue
		}
		if err != nil {
			j.auditTx.known = false
			return fmt.Errorf("audit: append entry %d: %w", seq, err)
		}
		j.auditTx = auditCursor{known: true, seq: seq, hash: h}
		j.auditPending++
		return nil
	}
}

// auditInsertSQL appends an entry.
const auditInsertSQL = `INSERT INTO audit (seq, at, kind, body, hash) VALUES (?, ?, ?, ?, ?)`

// readAuditHead reads the chain's head in tx.
func readAuditHead(ctx context.Context, tx *sql.Tx) (auditCursor, error) {
	c := auditCursor{known: true}
	var hash []byte
	err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&c.seq, &hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return c, nil // the empty chain: sequence 0, 32 zero bytes
	case err != nil:
		return auditCursor{}, fmt.Errorf("audit: read the chain head: %w", err)
	case len(hash) != auditHashLen:
		return auditCursor{}, fmt.Errorf("audit: entry %d: hash is %d bytes, not %d", c.seq, len(hash), auditHashLen)
	}
	copy(c.hash[:], hash)
	return c, nil
}

// auditBodyBytes is json.Marshal(auditBody{...}) written directly: the
// same bytes (TestAuditBodyBytesAreEncodingJSONs), without encoding data a
// second time. kind is one of the fixed ASCII kinds, at RFC 3339.
func auditBodyBytes(at, by string, data []byte, kind string, seq int64) []byte {
	b := make([]byte, 0, len(data)+len(by)+96)
	b = append(b, `{"at":"`...)
	b = append(b, at...)
	b = append(b, `",`...)
	if by != "" {
		q, _ := json.Marshal(by) // a string always encodes
		b = append(b, `"by":`...)
		b = append(b, q...)
		b = append(b, ',')
	}
	b = append(b, `"data":`...)
	b = append(b, data...)
	b = append(b, `,"kind":"`...)
	b = append(b, kind...)
	b = append(b, `","seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	return append(b, '}')
}

// auditHash is SHA-256(prev || body).
func auditHash(prev, body []byte) [auditHashLen]byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(body)
	var out [auditHashLen]byte
	h.Sum(out[:0])
	return out
}

// auditSettle ends the transaction's part of the chain: if it committed,
// its entries are counted and its head is the process's; if not, the head
// in memory is forgotten, to be read again. The caller holds j.wsem (as
// appendAudit's did).
func (j *Journal) auditSettle(committed bool) {
	n := j.auditPending
	j.auditPending = 0
	j.auditInsert = nil // closed with its transaction
	if !committed {
		j.auditTx = j.auditHead
		if n > 0 {
			// A failed COMMIT may or may not have committed.
			j.auditTx, j.auditHead = auditCursor{}, auditCursor{}
		}
		return
	}
	j.auditHead = j.auditTx
	if n > 0 {
		j.auditAppended.Add(int64(n))
		if c := j.auditCounter; c != nil {
			c.Add(float64(n))
		}
	}
}

// Counter is what the journal counts appended audit entries on
// (treasuryd_audit_entries_total): a prometheus.Counter.
type Counter interface{ Add(float64) }

// SetAuditCounter sets the counter of audit entries appended by this
// process. Call it before Start.
func (j *Journal) SetAuditCounter(c Counter) { j.auditCounter = c }

// AuditAppended returns how many audit entries this process has committed.
func (j *Journal) AuditAppended() int64 { return j.auditAppended.Load() }

// auditAcceptInsert appends the entry of an accept just inserted, from the
// values bound to its INSERT (no read back: this is the accept path).
func (j *Journal) auditAcceptInsert(ctx context.Context, tx auditWriter, id int64, a *Accept, sentAt int64) error {
	e := auditAccept{
		BaseAsset: a.BaseAsset, BaseQty: a.BaseQty.String(), ExpiryMicros: a.ExpiryMicros, ID: id,
		Program: a.Program, QuoteAsset: a.QuoteAsset, QuoteID: a.QuoteID, QuoteQty: a.QuoteQty.String(),
		RawQuoteSHA256: sha256Hex(nonNil(a.RawQuote)), Result: AcceptPending, SentAt: auditNanos(sentAt), Side: a.Side,
	}
	if err := j.appendAuditTo(ctx, tx, AuditAcceptIntent, "", auditJSON(e.appendJSON(make([]byte, 0, auditAcceptJSONCap)))); err != nil {
		return err
	}
	j.stagedAccepts = append(j.stagedAccepts, e)
	return nil
}

// maxPendingAccepts bounds pendingAccepts: each program has at most one
// accept waiting for its result, so 1,024 (the group's queueLen) is five
// times SPEC 8's 200 programs. Beyond it (results that never came: a
// journal closed under them) an accept's result entry reads its row.
const maxPendingAccepts = 1024

// settlePendingAccepts ends the batch's part of pendingAccepts: the accepts
// it inserted are remembered if it committed, forgotten if not (their ids
// may be given to other rows). The caller holds j.wsem.
func (j *Journal) settlePendingAccepts(committed bool) {
	if committed {
		if j.pendingAccepts == nil {
			j.pendingAccepts = make(map[int64]auditAccept)
		}
		for _, e := range j.stagedAccepts {
			if len(j.pendingAccepts) < maxPendingAccepts {
				j.pendingAccepts[e.ID] = e
			}
		}
	}
	clear(j.stagedAccepts)
	j.stagedAccepts = j.stagedAccepts[:0]
}

// auditBatchAcceptResult appends the entry of a result just written on
// accept id (its UPDATE changed the row, so the row was pending). A pending
// accept's row is exactly what its insert wrote: nothing changes a row and
// leaves it pending (results, MarkPendingAcceptsUnknown and SettleAccept all
// move it out of pending, and only from pending). So the entry is built from
// the insert's entry, remembered, and the result's values, rather than by
// reading the row back; for an accept this process did not insert, or no
// longer remembers, the row is read. The caller holds j.wsem.
func (j *Journal) auditBatchAcceptResult(t *batchTx, id int64, result, message string, at int64) error {
	e, ok := j.pendingAccepts[id]
	if !ok {
		return j.auditBatchAcceptRow(t, AuditAcceptResult, id)
	}
	// Forgotten whether or not the batch commits: a retry reads the row.
	delete(j.pendingAccepts, id)
	e.Result, e.Message, e.ResultAt = result, message, auditNanos(at)
	return j.appendAuditTo(t.ctx, t, AuditAcceptResult, "", auditJSON(e.appendJSON(make([]byte, 0, auditAcceptJSONCap))))
}

// auditAcceptJSONCap is room for an accept's data in one allocation: its
// fixed text and hash take some 250 bytes; ids, names and times the rest.
const auditAcceptJSONCap = 512

// auditJSON is an entry's data already in canonical JSON: appendAuditTo
// takes it as it is rather than marshalling it.
type auditJSON []byte

// appendJSON appends json.Marshal(a) to b, written directly: the same bytes
// (TestAuditAcceptJSONIsEncodingJSONs) at a fraction of the cost, since it is
// on the accept path twice per accept. Fields in the order of their JSON
// names, as the struct declares them.
func (a *auditAccept) appendJSON(b []byte) []byte {
	b = append(b, `{"base_asset":`...)
	b = appendJSONString(b, a.BaseAsset)
	b = append(b, `,"base_qty":`...)
	b = appendJSONString(b, a.BaseQty)
	b = append(b, `,"convert_id":`...)
	b = appendJSONString(b, a.ConvertID)
	b = append(b, `,"expiry_micros":`...)
	b = strconv.AppendInt(b, a.ExpiryMicros, 10)
	b = append(b, `,"id":`...)
	b = strconv.AppendInt(b, a.ID, 10)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, a.Message)
	b = append(b, `,"program":`...)
	b = appendJSONString(b, a.Program)
	b = append(b, `,"quote_asset":`...)
	b = appendJSONString(b, a.QuoteAsset)
	b = append(b, `,"quote_id":`...)
	b = appendJSONString(b, a.QuoteID)
	b = append(b, `,"quote_qty":`...)
	b = appendJSONString(b, a.QuoteQty)
	b = append(b, `,"raw_quote_sha256":`...)
	b = appendJSONString(b, a.RawQuoteSHA256)
	b = append(b, `,"result":`...)
	b = appendJSONString(b, a.Result)
	b = append(b, `,"result_at":`...)
	b = appendJSONString(b, a.ResultAt)
	b = append(b, `,"sent_at":`...)
	b = appendJSONString(b, a.SentAt)
	b = append(b, `,"side":`...)
	b = appendJSONString(b, a.Side)
	return append(b, '}')
}

// appendJSONString appends s as encoding/json writes a string: quoted as
// it is when every byte is printable ASCII that it does not escape, else
// by encoding/json itself (which escapes ", \, <, >, &, control bytes and
// invalid UTF-8 its own way).
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

const auditAcceptCols = `id, program, quote_id, raw_quote, base_asset, quote_asset, side, base_qty, quote_qty,
	expiry_micros, sent_at, result, message, result_at, convert_id`

type scanner interface{ Scan(dest ...any) error }

// scanAuditAccept reads an accepts row (auditAcceptCols) as stored.
func scanAuditAccept(s scanner) (auditAccept, error) {
	var (
		a        auditAccept
		raw      []byte
		sentAt   sql.NullInt64
		resultAt sql.NullInt64
	)
	if err := s.Scan(&a.ID, &a.Program, &a.QuoteID, &raw, &a.BaseAsset, &a.QuoteAsset, &a.Side, &a.BaseQty, &a.QuoteQty,
		&a.ExpiryMicros, &sentAt, &a.Result, &a.Message, &resultAt, &a.ConvertID); err != nil {
		return auditAccept{}, err
	}
	a.RawQuoteSHA256 = sha256Hex(raw)
	a.SentAt, a.ResultAt = auditTime(sentAt), auditTime(resultAt)
	return a, nil
}

// auditAcceptRow appends an entry holding accept id as it now is in tx.
func (j *Journal) auditAcceptRow(ctx context.Context, tx *sql.Tx, kind string, id int64) error {
	a, err := scanAuditAccept(tx.QueryRowContext(ctx, `SELECT `+auditAcceptCols+` FROM accepts WHERE id = ?`, id))
	if err != nil {
		return fmt.Errorf("audit: read accept %d: %w", id, err)
	}
	return j.appendAudit(ctx, tx, kind, "", a)
}

// auditBatchAcceptRow is auditAcceptRow inside the accept path's batch.
func (j *Journal) auditBatchAcceptRow(t *batchTx, kind string, id int64) error {
	row, found, err := t.queryRow(stAuditAccept, id)
	if err == nil && !found {
		err = ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("audit: read accept %d: %w", id, err)
	}
	a, err := scanAuditAccept(row)
	if err != nil {
		return fmt.Errorf("audit: read accept %d: %w", id, err)
	}
	return j.appendAuditTo(t.ctx, t, kind, "", auditJSON(a.appendJSON(make([]byte, 0, auditAcceptJSONCap))))
}

const auditWithdrawalCols = `id, rule, asset, network, address, amount, created_at, state, desk_id, desk_status, error, updated_at`

func scanAuditWithdrawal(s scanner) (auditWithdrawal, error) {
	var (
		w                  auditWithdrawal
		created, updatedAt sql.NullInt64
	)
	if err := s.Scan(&w.ID, &w.Rule, &w.Asset, &w.Network, &w.Address, &w.Amount, &created, &w.State,
		&w.DeskID, &w.DeskStatus, &w.Error, &updatedAt); err != nil {
		return auditWithdrawal{}, err
	}
	w.CreatedAt, w.UpdatedAt = auditTime(created), auditTime(updatedAt)
	return w, nil
}

// auditWithdrawalRow appends an entry holding withdrawal id as it now is in tx.
func (j *Journal) auditWithdrawalRow(ctx context.Context, tx *sql.Tx, kind, by string, id int64) error {
	w, err := scanAuditWithdrawal(tx.QueryRowContext(ctx, `SELECT `+auditWithdrawalCols+` FROM withdrawals WHERE id = ?`, id))
	if err != nil {
		return fmt.Errorf("audit: read withdrawal %d: %w", id, err)
	}
	return j.appendAudit(ctx, tx, kind, by, w)
}

// scanAuditPause reads the pause flag's settings row; ok=false without one.
func scanAuditPause(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (p auditPause, ok bool, err error) {
	var (
		value string
		at    sql.NullInt64
	)
	err = q.QueryRowContext(ctx, `SELECT value, updated_by, updated_at FROM settings WHERE key = ?`, settingPaused).
		Scan(&value, &p.UpdatedBy, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return auditPause{}, false, nil
	}
	if err != nil {
		return auditPause{}, false, err
	}
	switch value {
	case "1":
		p.Paused = true
	case "0":
	default:
		return auditPause{}, false, fmt.Errorf("settings row %q: value %q is not 0 or 1", settingPaused, value)
	}
	p.UpdatedAt = auditTime(at)
	// The reason row is written in the same transaction as the flag; a
	// journal from before it existed has none.
	err = q.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, settingPauseReason).Scan(&p.Reason)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return auditPause{}, false, err
	}
	return p, true, nil
}

func scanAuditReport(s scanner) (auditReport, error) {
	var (
		r    auditReport
		at   sql.NullInt64
		body []byte
	)
	if err := s.Scan(&r.ID, &at, &r.Clean, &body); err != nil {
		return auditReport{}, err
	}
	r.At, r.BodySHA256 = auditTime(at), sha256Hex(body)
	return r, nil
}

// AppendAuthority appends an authority entry (AuditAuthorityPending,
// AuditAuthorityCancelled or AuditAuthorityMatured) in a transaction of its
// own, flushed to disk, with data as its canonical "data": a struct whose
// fields are declared in the order of their JSON names (or a map, which
// encoding/json writes with sorted keys), decimals as strings, times as
// RFC 3339 UTC. Journal code that writes the authority tables should call
// j.appendAudit(ctx, tx, kind, by, data) inside its own transaction instead,
// so the record and its entry commit together.
func (j *Journal) AppendAuthority(ctx context.Context, kind, by string, data any) error {
	switch kind {
	case AuditAuthorityPending, AuditAuthorityCancelled, AuditAuthorityMatured:
	default:
		return fmt.Errorf("journal: append authority entry: %q is not an authority kind", kind)
	}
	if err := j.write(ctx, j.full, func(tx *sql.Tx) error { return j.appendAudit(ctx, tx, kind, by, data) }); err != nil {
		return fmt.Errorf("journal: append %s entry: %w", kind, err)
	}
	return nil
}

// auditSnapshot appends one snapshot entry per money-state record already
// in the journal when the chain is created (the migration to schema 3), in
// the migration's transaction, so that from then on every row is covered.
func (j *Journal) auditSnapshot(ctx context.Context, tx *sql.Tx) error {
	// Each table is read whole before its entries are appended: the
	// transaction's one connection runs one statement at a time.
	as, err := collectRows(ctx, tx, "read accepts", `SELECT `+auditAcceptCols+` FROM accepts ORDER BY id`, nil, scanAuditAccept)
	if err != nil {
		return err
	}
	for _, a := range as {
		if err := j.appendAudit(ctx, tx, AuditAcceptSnapshot, "", a); err != nil {
			return err
		}
	}
	ws, err := collectRows(ctx, tx, "read withdrawals", `SELECT `+auditWithdrawalCols+` FROM withdrawals ORDER BY id`, nil,
		scanAuditWithdrawal)
	if err != nil {
		return err
	}
	for _, w := range ws {
		if err := j.appendAudit(ctx, tx, AuditWithdrawalSnapshot, "", w); err != nil {
			return err
		}
	}
	rs, err := collectRows(ctx, tx, "read reports", `SELECT id, at, clean, body FROM reports ORDER BY id`, nil, scanAuditReport)
	if err != nil {
		return err
	}
	for _, r := range rs {
		if err := j.appendAudit(ctx, tx, AuditReportSnapshot, "", r); err != nil {
			return err
		}
	}
	p, ok, err := scanAuditPause(ctx, tx)
	if err != nil {
		return err
	}
	if ok {
		return j.appendAudit(ctx, tx, AuditPauseSnapshot, "", p)
	}
	return nil
}

// AuditHead returns the newest entry's sequence and hash (sequence 0 and 32
// zero bytes for an empty chain).
func (j *Journal) AuditHead(ctx context.Context) (AuditHead, error) {
	db, err := j.reader()
	if err != nil {
		return AuditHead{}, err
	}
	h := AuditHead{Hash: hex.EncodeToString(make([]byte, auditHashLen))}
	var hash []byte
	err = db.QueryRowContext(ctx, `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).Scan(&h.Sequence, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return h, nil
	}
	if err != nil {
		return AuditHead{}, fmt.Errorf("journal: audit head: %w", err)
	}
	h.Hash = hex.EncodeToString(hash)
	return h, nil
}

// AuditEntries calls fn for each entry appended at or after since, in
// sequence order, from one read transaction (a consistent snapshot; memory
// does not grow with the count). An error from fn stops the walk and is
// returned as is.
func (j *Journal) AuditEntries(ctx context.Context, since time.Time, fn func(AuditEntry) error) error {
	db, err := j.reader()
	if err != nil {
		return err
	}
	return eachRow(ctx, db, "read audit entries", `SELECT seq, at, kind, body, hash FROM audit WHERE at >= ? ORDER BY seq`,
		[]any{sinceNanos(since)}, scanAuditEntry, fn)
}

// scanAuditEntry decodes an audit row (seq, at, kind, body, hash).
func scanAuditEntry(s scanner) (AuditEntry, error) {
	var (
		e  AuditEntry
		at int64
	)
	if err := s.Scan(&e.Seq, &at, &e.Kind, &e.Body, &e.Hash); err != nil {
		return AuditEntry{}, err
	}
	e.At = time.Unix(0, at).UTC()
	return e, nil
}
