package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The accept state machine:
//
//	InsertAccept                 → pending
//	SetAcceptResult   pending    → ok | rejected | error | unknown
//	MarkPendingAcceptsUnknown    pending → unknown   (start-up, after a crash)
//	SettleAccept      pending|unknown → ok (with convert id) | missing
//
// Everything else is ErrTransition: in particular an accept that has a result
// never gets another one from the accept path, and an unknown one is only
// ever settled by reconciliation, never re-sent.

var acceptResultFrom = map[string]bool{AcceptOK: true, AcceptRejected: true, AcceptError: true, AcceptUnknown: true}

const acceptCols = `id, program, quote_id, raw_quote, base_asset, quote_asset, side, base_qty, quote_qty,
	expiry_micros, sent_at, result, message, result_at, convert_id`

// InsertAccept journals an accept as AcceptPending before it is sent and
// returns its id. Committed with synchronous=NORMAL before it returns, by
// the caller itself or in one transaction with the other accept writes
// queued meanwhile (group.go). a.ID, a.Result,
// a.Message, a.ResultAt and a.ConvertID are ignored; a zero a.SentAt means
// now.
func (j *Journal) InsertAccept(ctx context.Context, a Accept) (int64, error) {
	sentAt, _, err := requiredNanos(a.SentAt, "sent_at")
	if err != nil {
		return 0, fmt.Errorf("journal: insert accept of quote %s: %w", a.QuoteID, err)
	}
	o := &op{kind: opInsert, a: a, sentAt: sentAt}
	if err := j.submit(ctx, o); err != nil {
		return 0, fmt.Errorf("journal: insert accept of quote %s: %w", a.QuoteID, err)
	}
	return o.outID, nil
}

// SetAcceptResult records the result of a sent accept: AcceptOK,
// AcceptRejected, AcceptError or AcceptUnknown, once, on a pending accept.
// A zero at means now.
func (j *Journal) SetAcceptResult(ctx context.Context, id int64, result, message string, at time.Time) error {
	if !acceptResultFrom[result] {
		return fmt.Errorf("journal: set result of accept %d: %w: %q is not a send result", id, ErrTransition, result)
	}
	atN, _, err := requiredNanos(at, "result_at")
	if err != nil {
		return fmt.Errorf("journal: set result of accept %d: %w", id, err)
	}
	if err := j.submit(ctx, &op{kind: opResult, id: id, result: result, message: message, at: atN}); err != nil {
		return fmt.Errorf("journal: set result of accept %d: %w", id, err)
	}
	return nil
}

// SettleAccept settles an unknown (or pending) accept as AcceptOK with the
// matching convert id, or as AcceptMissing. Settling an accept in any other
// state is ErrTransition. The result time is kept if it was set.
func (j *Journal) SettleAccept(ctx context.Context, id int64, result, convertID string) error {
	switch {
	case result == AcceptOK && convertID == "":
		return fmt.Errorf("journal: settle accept %d: %w: ok needs the convert id", id, ErrTransition)
	case result != AcceptOK && result != AcceptMissing:
		return fmt.Errorf("journal: settle accept %d: %w: %q is not a settlement (ok or missing)", id, ErrTransition, result)
	}
	now := time.Now().UnixNano()
	err := j.write(ctx, j.w, func(tx *sql.Tx) error {
		cur, err := acceptResultTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if cur != AcceptUnknown && cur != AcceptPending {
			return fmt.Errorf("%w: %s → %s (only an unknown or pending accept is settled)", ErrTransition, cur, result)
		}
		if _, err = tx.ExecContext(ctx, `UPDATE accepts SET result = ?, convert_id = ?, result_at = COALESCE(result_at, ?)
			WHERE id = ?`, result, convertID, now, id); err != nil {
			return err
		}
		return j.auditAcceptRow(ctx, tx, AuditAcceptSettled, id)
	})
	if err != nil {
		return fmt.Errorf("journal: settle accept %d: %w", id, err)
	}
	return nil
}

func acceptResultTx(ctx context.Context, tx *sql.Tx, id int64) (string, error) {
	var cur string
	err := tx.QueryRowContext(ctx, `SELECT result FROM accepts WHERE id = ?`, id).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return cur, err
}

// MarkPendingAcceptsUnknown turns every AcceptPending accept (a crash between
// journal and result) into AcceptUnknown; called at start before any stream.
// It returns how many it changed.
func (j *Journal) MarkPendingAcceptsUnknown(ctx context.Context) (int, error) {
	var n int64
	now := time.Now().UnixNano()
	err := j.write(ctx, j.w, func(tx *sql.Tx) error {
		// The ids first: each one changed gets its own audit entry.
		ids, err := collectRows(ctx, tx, "read pending accepts", `SELECT id FROM accepts WHERE result = ? ORDER BY id`,
			[]any{AcceptPending}, scanID)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE accepts
			SET result = ?, message = CASE WHEN message = '' THEN 'pending at start: outcome unknown' ELSE message END,
			    result_at = ?
			WHERE result = ?`, AcceptUnknown, now, AcceptPending)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		for _, id := range ids {
			if err := j.auditAcceptRow(ctx, tx, AuditAcceptMarkedUnknown, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("journal: mark pending accepts unknown: %w", err)
	}
	return int(n), nil
}

// Accepts lists accepts matching f, oldest first (by SentAt, then id).
func (j *Journal) Accepts(ctx context.Context, f AcceptFilter) ([]Accept, error) {
	var w where
	w.equal("program", f.Program)
	w.since("sent_at", f.Since)
	w.in("result", f.Results)
	return readAll(ctx, j, "list accepts", w.query(acceptCols, "accepts", "sent_at, id"), w.args, scanAccept)
}

// LastAccept returns the newest accept of program by SentAt, whatever its
// result, or ok=false when the program has none.
func (j *Journal) LastAccept(ctx context.Context, program string) (Accept, bool, error) {
	as, err := readAll(ctx, j, "last accept of "+program, "SELECT "+acceptCols+
		" FROM accepts WHERE program = ? ORDER BY sent_at DESC, id DESC LIMIT 1", []any{program}, scanAccept)
	if err != nil {
		return Accept{}, false, err
	}
	if len(as) == 0 {
		return Accept{}, false, nil
	}
	return as[0], true, nil
}

// AcceptByID returns one accept, or an error wrapping ErrNotFound.
func (j *Journal) AcceptByID(ctx context.Context, id int64) (Accept, error) {
	return readByID(ctx, j, "accept", id, acceptCols, "accepts", scanAccept)
}

// scanAccept decodes an accepts row (acceptCols).
func scanAccept(s scanner) (Accept, error) {
	var (
		a                 Accept
		baseQty, quoteQty string
		sentAt, resultAt  sql.NullInt64
		err               error
	)
	if err = s.Scan(&a.ID, &a.Program, &a.QuoteID, &a.RawQuote, &a.BaseAsset, &a.QuoteAsset, &a.Side,
		&baseQty, &quoteQty, &a.ExpiryMicros, &sentAt, &a.Result, &a.Message, &resultAt, &a.ConvertID); err != nil {
		return Accept{}, err
	}
	if a.BaseQty, err = parseDecimal(baseQty, "accepts", a.ID, "base_qty"); err != nil {
		return Accept{}, err
	}
	if a.QuoteQty, err = parseDecimal(quoteQty, "accepts", a.ID, "quote_qty"); err != nil {
		return Accept{}, err
	}
	a.SentAt = fromNanos(sentAt)
	a.ResultAt = fromNanos(resultAt)
	return a, nil
}
