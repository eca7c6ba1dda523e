package journal

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// RecordFrames appends recorded quote frames in one transaction
// (synchronous=NORMAL: a recording lost to a power cut costs replay
// fidelity, not money). A zero ReceivedAt is refused: replay orders by it.
func (j *Journal) RecordFrames(ctx context.Context, frames []Frame) error {
	if len(frames) == 0 {
		return nil
	}
	err := j.write(ctx, j.w, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO frames
			(program, received_at, raw, paused, gate_open, gate_reason, balance, balance_known, in_flight, outcome)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i, f := range frames {
			if f.ReceivedAt.IsZero() {
				return fmt.Errorf("frame %d of %s: received_at is zero", i, f.Program)
			}
			at, err := nanos(f.ReceivedAt, "received_at")
			if err != nil {
				return fmt.Errorf("frame %d of %s: %w", i, f.Program, err)
			}
			if _, err := stmt.ExecContext(ctx, f.Program, at, nonNil(f.Raw), boolInt(f.Paused), boolInt(f.GateOpen),
				f.GateReason, f.Balance.String(), boolInt(f.BalanceKnown), boolInt(f.InFlight), f.Outcome); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("journal: record %d frames: %w", len(frames), err)
	}
	return nil
}

// Frames calls fn for each recorded frame received at or after since (and of
// program, when not ""), in receive order. Memory does not grow with the count:
// rows are streamed from one read transaction, which sees a consistent
// snapshot however long fn takes. An error from fn stops the walk and is
// returned as is.
func (j *Journal) Frames(ctx context.Context, since time.Time, program string, fn func(Frame) error) error {
	db, err := j.reader()
	if err != nil {
		return err
	}
	q := `SELECT id, program, received_at, raw, paused, gate_open, gate_reason, balance, balance_known, in_flight, outcome
		FROM frames WHERE received_at >= ?`
	args := []any{sinceNanos(since)} // the zero time clamps to the earliest
	if program != "" {
		q += " AND program = ?"
		args = append(args, program)
	}
	q += " ORDER BY received_at, id"
	return eachRow(ctx, db, "read frames", q, args, scanFrame, fn)
}

// scanFrame decodes a frames row as Frames selects it.
func scanFrame(s scanner) (Frame, error) {
	var (
		f       Frame
		id      int64
		at      sql.NullInt64
		balance string
		err     error
	)
	if err = s.Scan(&id, &f.Program, &at, &f.Raw, &f.Paused, &f.GateOpen, &f.GateReason, &balance,
		&f.BalanceKnown, &f.InFlight, &f.Outcome); err != nil {
		return Frame{}, err
	}
	if f.Balance, err = parseDecimal(balance, "frames", id, "balance"); err != nil {
		return Frame{}, err
	}
	f.ReceivedAt = fromNanos(at)
	return f, nil
}

// PruneFrames deletes frames received before before and returns how many.
func (j *Journal) PruneFrames(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := j.write(ctx, j.w, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM frames WHERE received_at < ?`, sinceNanos(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("journal: prune frames: %w", err)
	}
	return n, nil
}
