package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// withdrawalNext is the withdrawal state machine: the states each state may
// move to through UpdateWithdrawal. completed, failed and rejected are
// terminal; unresolved waits for an operator. Every withdrawal write is flushed to disk
// (synchronous=FULL): the intent is what stops a second withdrawal.
//
//	intent    → submitted (desk id) | unknown (no answer) | rejected (4xx)
//	          | unresolved | completed | failed
//	unknown   → submitted | completed | failed (matched in the desk's list)
//	          | unresolved (no match: operator) | unknown (new error text)
//	submitted → submitted (desk status moved) | completed | failed | unresolved
//	unresolved → submitted | failed (an operator's resolution)
var withdrawalNext = map[string]map[string]bool{
	WithdrawalIntent: {WithdrawalSubmitted: true, WithdrawalUnknown: true, WithdrawalRejected: true,
		WithdrawalUnresolved: true, WithdrawalCompleted: true, WithdrawalFailed: true},
	WithdrawalUnknown: {WithdrawalSubmitted: true, WithdrawalCompleted: true, WithdrawalFailed: true,
		WithdrawalUnresolved: true, WithdrawalUnknown: true},
	WithdrawalSubmitted: {WithdrawalSubmitted: true, WithdrawalCompleted: true, WithdrawalFailed: true,
		WithdrawalUnresolved: true},
	// Only an operator moves an unresolved withdrawal on: to submitted with
	// the desk id they found, or to failed when they know it never ran.
	WithdrawalUnresolved: {WithdrawalSubmitted: true, WithdrawalFailed: true},
}

const withdrawalCols = `id, rule, asset, network, address, amount, created_at, state, desk_id, desk_status, error, updated_at`

// InsertWithdrawalIntent journals a withdrawal as WithdrawalIntent, flushed to
// disk (synchronous=FULL) before it returns, and returns its id. w.ID,
// w.State, w.DeskID, w.DeskStatus, w.Error and w.UpdatedAt are ignored; a
// zero w.CreatedAt means now.
func (j *Journal) InsertWithdrawalIntent(ctx context.Context, w Withdrawal) (int64, error) {
	created, _, err := requiredNanos(w.CreatedAt, "created_at")
	if err != nil {
		return 0, fmt.Errorf("journal: insert withdrawal intent of rule %s: %w", w.Rule, err)
	}
	var id int64
	err = j.write(ctx, j.full, func(tx *sql.Tx) error {
		// Fenced: on PostgreSQL the intent commits only under this
		// leader's term (postgres.go).
		if err := j.checkFence(ctx, tx); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO withdrawals
			(rule, asset, network, address, amount, created_at, state, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			w.Rule, w.Asset, w.Network, w.Address, w.Amount.String(), created, WithdrawalIntent, created)
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		return j.appendAudit(ctx, tx, AuditWithdrawalIntent, "", auditWithdrawal{Address: w.Address,
			Amount: w.Amount.String(), Asset: w.Asset, CreatedAt: auditNanos(created), ID: id, Network: w.Network,
			Rule: w.Rule, State: WithdrawalIntent, UpdatedAt: auditNanos(created)})
	})
	if err != nil {
		return 0, fmt.Errorf("journal: insert withdrawal intent of rule %s: %w", w.Rule, err)
	}
	return id, nil
}

// UpdateWithdrawal records a new state (and desk id, desk status, error) for
// a withdrawal; flushed to disk. An empty deskID or deskStatus keeps the
// stored one (a desk id, once known, is never erased); errMsg replaces the
// stored error. A move the state machine does not allow (see withdrawalNext),
// including any move out of a terminal state, is ErrTransition.
func (j *Journal) UpdateWithdrawal(ctx context.Context, id int64, state, deskID, deskStatus, errMsg string) error {
	if err := j.updateWithdrawal(ctx, id, state, deskID, deskStatus, errMsg, ""); err != nil {
		return fmt.Errorf("journal: update withdrawal %d: %w", id, err)
	}
	return nil
}

// ResolveWithdrawal is an operator's answer for an unresolved withdrawal:
// UpdateWithdrawal to submitted (with the desk id they found) or failed,
// journaled in the audit chain as an AuditOperatorResolution by by. A
// withdrawal that is not unresolved is ErrTransition.
func (j *Journal) ResolveWithdrawal(ctx context.Context, id int64, state, deskID, errMsg, by string) error {
	if by == "" {
		by = "operator"
	}
	if err := j.updateWithdrawal(ctx, id, state, deskID, "", errMsg, by); err != nil {
		return fmt.Errorf("journal: resolve withdrawal %d: %w", id, err)
	}
	return nil
}

// updateWithdrawal moves a withdrawal on; by != "" makes it an operator's
// resolution, allowed only from unresolved.
func (j *Journal) updateWithdrawal(ctx context.Context, id int64, state, deskID, deskStatus, errMsg, by string) error {
	now := time.Now().UnixNano()
	return j.write(ctx, j.full, func(tx *sql.Tx) error {
		var cur string
		err := tx.QueryRowContext(ctx, `SELECT state FROM withdrawals WHERE id = ?`, id).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if !withdrawalNext[cur][state] {
			return fmt.Errorf("%w: %s → %s", ErrTransition, cur, state)
		}
		kind := AuditWithdrawalUpdate
		if by != "" {
			if cur != WithdrawalUnresolved {
				return fmt.Errorf("%w: %s → %s (an operator resolves only an unresolved withdrawal)", ErrTransition, cur, state)
			}
			kind = AuditOperatorResolution
		}
		if _, err = tx.ExecContext(ctx, `UPDATE withdrawals SET state = ?,
			desk_id = CASE WHEN ? = '' THEN desk_id ELSE ? END,
			desk_status = CASE WHEN ? = '' THEN desk_status ELSE ? END,
			error = ?, updated_at = ?
			WHERE id = ?`, state, deskID, deskID, deskStatus, deskStatus, errMsg, now, id); err != nil {
			return err
		}
		return j.auditWithdrawalRow(ctx, tx, kind, by, id)
	})
}

// Withdrawals lists withdrawals matching f, oldest first (by CreatedAt, then id).
func (j *Journal) Withdrawals(ctx context.Context, f WithdrawalFilter) ([]Withdrawal, error) {
	var w where
	w.equal("rule", f.Rule)
	w.equal("asset", f.Asset)
	w.since("created_at", f.Since)
	w.in("state", f.States)
	return readAll(ctx, j, "list withdrawals", w.query(withdrawalCols, "withdrawals", "created_at, id"), w.args, scanWithdrawal)
}

// OpenWithdrawals lists the withdrawals that still block their rule (intent,
// unknown, submitted), oldest first: what start-up loads before any schedule
// runs.
func (j *Journal) OpenWithdrawals(ctx context.Context) ([]Withdrawal, error) {
	return j.Withdrawals(ctx, WithdrawalFilter{States: []string{WithdrawalIntent, WithdrawalUnknown, WithdrawalSubmitted}})
}

// WithdrawalByID returns one withdrawal, or an error wrapping ErrNotFound.
func (j *Journal) WithdrawalByID(ctx context.Context, id int64) (Withdrawal, error) {
	return readByID(ctx, j, "withdrawal", id, withdrawalCols, "withdrawals", scanWithdrawal)
}

// scanWithdrawal decodes a withdrawals row (withdrawalCols).
func scanWithdrawal(s scanner) (Withdrawal, error) {
	var (
		w                  Withdrawal
		amount             string
		created, updatedAt sql.NullInt64
		err                error
	)
	if err = s.Scan(&w.ID, &w.Rule, &w.Asset, &w.Network, &w.Address, &amount, &created, &w.State,
		&w.DeskID, &w.DeskStatus, &w.Error, &updatedAt); err != nil {
		return Withdrawal{}, err
	}
	if w.Amount, err = parseDecimal(amount, "withdrawals", w.ID, "amount"); err != nil {
		return Withdrawal{}, err
	}
	w.CreatedAt = fromNanos(created)
	w.UpdatedAt = fromNanos(updatedAt)
	return w, nil
}
