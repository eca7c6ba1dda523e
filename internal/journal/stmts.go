package journal

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
)

// The accept path's statements, prepared once per write connection at the
// driver level (group.go's writeBatch runs them inside conn.Raw).

// Statement ids, indexes into stmtSQL.
const (
	stBegin = iota
	stCommit
	stRollback
	stInsertAccept
	stSetResult
	stAcceptResult
	stAuditInsert
	stAuditHead
	stAuditAccept
	stCount
)

// stmtSQL is the text of each statement id. BEGIN IMMEDIATE as the pools'
// _txlock=immediate: the write lock is taken at BEGIN, so a transaction never
// fails half way upgrading a read lock.
var stmtSQL = [stCount]string{
	stBegin:    "BEGIN IMMEDIATE",
	stCommit:   "COMMIT",
	stRollback: "ROLLBACK",
	stInsertAccept: `INSERT INTO accepts
		(program, quote_id, raw_quote, base_asset, quote_asset, side, base_qty, quote_qty, expiry_micros, sent_at, result)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
	stSetResult:    `UPDATE accepts SET result = ?, message = ?, result_at = ? WHERE id = ? AND result = ?`,
	stAcceptResult: `SELECT result FROM accepts WHERE id = ?`,
	// The audit chain's entries of the accept path (audit.go), appended in
	// the same transaction as the row they record.
	stAuditInsert: auditInsertSQL,
	stAuditHead:   `SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`,
	stAuditAccept: `SELECT ` + auditAcceptCols + ` FROM accepts WHERE id = ?`,
}

// stmtCache holds the statements prepared on one driver connection of j.w.
// It is used only while holding the writer slot (or, at open, before anything
// else runs), so it needs no lock of its own.
type stmtCache struct {
	dc    any // the driver connection they belong to
	stmts [stCount]driver.Stmt
	tx    batchTx
}

// on returns the batch transaction handle for driver connection dc,
// preparing the statements if dc is not the connection they were prepared on
// (the first use, or database/sql replaced a broken connection). The
// statements of a replaced connection are dropped, not closed: that
// connection is closed already.
func (c *stmtCache) on(ctx context.Context, dc any) (*batchTx, error) {
	if c.dc == dc && dc != nil {
		return &c.tx, nil
	}
	c.dc, c.stmts = nil, [stCount]driver.Stmt{}
	prep, ok := dc.(driver.ConnPrepareContext)
	if !ok {
		return nil, fmt.Errorf("journal: driver connection %T cannot prepare statements", dc)
	}
	var stmts [stCount]driver.Stmt
	for i, q := range stmtSQL {
		st, err := prep.PrepareContext(ctx, q)
		if err != nil {
			for _, s := range stmts[:i] {
				s.Close()
			}
			return nil, fmt.Errorf("prepare %q: %w", q, err)
		}
		if _, ok := st.(driver.StmtExecContext); !ok {
			return nil, fmt.Errorf("journal: driver statement %T cannot execute with a context", st)
		}
		if _, ok := st.(driver.StmtQueryContext); !ok {
			return nil, fmt.Errorf("journal: driver statement %T cannot query with a context", st)
		}
		stmts[i] = st
	}
	c.dc, c.stmts = dc, stmts
	c.tx = batchTx{ctx: context.Background(), c: c}
	return &c.tx, nil
}

// close closes the statements prepared on dc, if they are its.
func (c *stmtCache) close(dc any) error {
	if c.dc != dc || dc == nil {
		return nil
	}
	var errs []error
	for _, s := range c.stmts {
		if s != nil {
			errs = append(errs, s.Close())
		}
	}
	c.dc, c.stmts = nil, [stCount]driver.Stmt{}
	return errors.Join(errs...)
}

// batchTx runs the prepared statements of one connection, inside a batch's
// transaction (writeOp). Its context is the one the statements were prepared
// with: context.Background, since a batch once begun is answered whatever its
// callers' contexts say (and a context that can end would cost the driver a
// goroutine per statement).
type batchTx struct {
	ctx  context.Context
	c    *stmtCache
	args [16]driver.NamedValue // reused: one batch at a time
}

// prepareAcceptStmts prepares the accept path's statements on the write
// connection at open, so that a schema they do not fit fails there.
func (j *Journal) prepareAcceptStmts(ctx context.Context) error {
	conn, err := j.w.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		_, err := j.stmts.on(ctx, dc)
		return err
	})
}

// closeAcceptStmts closes them, before the write pool closes.
func (j *Journal) closeAcceptStmts() error {
	if j.stmts.dc == nil {
		return nil
	}
	conn, err := j.w.Conn(context.Background())
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(j.stmts.close)
}

// exec runs statement id with args (driver values: int64, string, []byte,
// nil, ...).
func (t *batchTx) exec(id int, args ...any) (driver.Result, error) {
	nv := t.named(args)
	return t.c.stmts[id].(driver.StmtExecContext).ExecContext(t.ctx, nv)
}

// queryString runs statement id and reads the first column of its first row
// as a string; found=false when there is no row.
func (t *batchTx) queryString(id int, args ...any) (s string, found bool, err error) {
	rows, err := t.c.stmts[id].(driver.StmtQueryContext).QueryContext(t.ctx, t.named(args))
	if err != nil {
		return "", false, err
	}
	defer rows.Close()
	dest := make([]driver.Value, len(rows.Columns()))
	switch err := rows.Next(dest); {
	case errors.Is(err, io.EOF):
		return "", false, nil
	case err != nil:
		return "", false, err
	}
	switch v := dest[0].(type) {
	case string:
		return v, true, nil
	case []byte:
		return string(v), true, nil
	default:
		return "", false, fmt.Errorf("statement %d: first column is %T, want text", id, dest[0])
	}
}

// rollback ends the transaction after a failed statement or COMMIT; an error
// (no transaction active) means there is nothing to end.
func (t *batchTx) rollback() { _, _ = t.exec(stRollback) }

func (t *batchTx) named(args []any) []driver.NamedValue {
	nv := t.args[:0]
	if len(args) > len(t.args) {
		nv = make([]driver.NamedValue, 0, len(args))
	}
	for i, a := range args {
		nv = append(nv, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	return nv
}

// insertEntry appends an audit entry in the batch (auditWriter).
func (t *batchTx) insertEntry(_ context.Context, seq, at int64, kind string, body, hash []byte) error {
	_, err := t.exec(stAuditInsert, seq, at, kind, body, hash)
	return err
}

// lockChain takes the audit chain's lock in the batch (auditWriter; only on
// PostgreSQL, on the batch's driver connection).
func (t *batchTx) lockChain(ctx context.Context) error {
	ex, ok := t.c.dc.(driver.ExecerContext)
	if !ok {
		return fmt.Errorf("journal: driver connection %T cannot execute", t.c.dc)
	}
	_, err := ex.ExecContext(t.ctx, auditLockSQL, []driver.NamedValue{{Ordinal: 1, Value: int64(auditLockKey)}})
	return err
}

// readHead reads the audit chain's head in the batch (auditWriter).
func (t *batchTx) readHead(context.Context) (auditCursor, error) {
	c := auditCursor{known: true}
	row, found, err := t.queryRow(stAuditHead)
	switch {
	case err != nil:
		return auditCursor{}, fmt.Errorf("audit: read the chain head: %w", err)
	case !found:
		return c, nil // the empty chain: sequence 0, 32 zero bytes
	}
	var hash []byte
	if err := row.Scan(&c.seq, &hash); err != nil {
		return auditCursor{}, fmt.Errorf("audit: read the chain head: %w", err)
	}
	if len(hash) != auditHashLen {
		return auditCursor{}, fmt.Errorf("audit: entry %d: hash is %d bytes, not %d", c.seq, len(hash), auditHashLen)
	}
	copy(c.hash[:], hash)
	return c, nil
}

// queryRow runs statement id and returns its first row's values (the rows
// are closed before it returns, so no read stays open on the connection);
// found=false when there is none.
func (t *batchTx) queryRow(id int, args ...any) (row driverRow, found bool, err error) {
	rows, err := t.c.stmts[id].(driver.StmtQueryContext).QueryContext(t.ctx, t.named(args))
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	dest := make([]driver.Value, len(rows.Columns()))
	switch err := rows.Next(dest); {
	case errors.Is(err, io.EOF):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return driverRow(dest), true, nil
}

// driverRow is one row of driver values, scanned as database/sql's Row.Scan
// would for the types the journal reads: int64, string, []byte and
// sql.NullInt64.
type driverRow []driver.Value

// Scan implements scanner.
func (r driverRow) Scan(dest ...any) error {
	if len(dest) != len(r) {
		return fmt.Errorf("scan: %d columns into %d values", len(r), len(dest))
	}
	for i, d := range dest {
		v := r[i]
		switch d := d.(type) {
		case *int64:
			n, ok := v.(int64)
			if !ok {
				return fmt.Errorf("scan column %d: %T is not an integer", i, v)
			}
			*d = n
		case *sql.NullInt64:
			switch v := v.(type) {
			case nil:
				*d = sql.NullInt64{}
			case int64:
				*d = sql.NullInt64{Int64: v, Valid: true}
			default:
				return fmt.Errorf("scan column %d: %T is not an integer", i, v)
			}
		case *string:
			switch v := v.(type) {
			case string:
				*d = v
			case []byte:
				*d = string(v)
			default:
				return fmt.Errorf("scan column %d: %T is not text", i, v)
			}
		case *[]byte:
			switch v := v.(type) {
			case []byte:
				*d = append([]byte(nil), v...)
			case string:
				*d = []byte(v)
			case nil:
				*d = nil
			default:
				return fmt.Errorf("scan column %d: %T is not bytes", i, v)
			}
		default:
			return fmt.Errorf("scan column %d: unsupported destination %T", i, d)
		}
	}
	return nil
}
