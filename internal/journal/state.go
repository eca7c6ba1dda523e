package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

const (
	settingPaused = "paused"
	// settingPauseReason holds why the pause flag was last set: "operator",
	// or the reason treasuryd paused itself (e.g. "withdrawal_mismatch").
	settingPauseReason = "pause_reason"
	// mismatchPrefix keys the settings rows that record a withdrawal whose
	// details at the desk differed from its intent: "withdrawal_mismatch:<id>".
	mismatchPrefix = "withdrawal_mismatch:"
)

// Paused reads the persisted pause flag (false when never set).
func (j *Journal) Paused(ctx context.Context) (bool, error) {
	p, _, _, err := j.PauseState(ctx)
	return p, err
}

// PauseState reads the persisted pause flag with who set it and when (zero
// values when it was never set).
func (j *Journal) PauseState(ctx context.Context) (paused bool, by string, at time.Time, err error) {
	db, err := j.reader()
	if err != nil {
		return false, "", time.Time{}, err
	}
	var (
		value string
		atN   sql.NullInt64
	)
	err = db.QueryRowContext(ctx, `SELECT value, updated_by, updated_at FROM settings WHERE key = ?`, settingPaused).
		Scan(&value, &by, &atN)
	if errors.Is(err, sql.ErrNoRows) {
		return false, "", time.Time{}, nil
	}
	if err != nil {
		return false, "", time.Time{}, fmt.Errorf("journal: read pause flag: %w", err)
	}
	switch value {
	case "1":
		paused = true
	case "0":
	default:
		return false, "", time.Time{}, fmt.Errorf("journal: settings row %q: value %q is not 0 or 1", settingPaused, value)
	}
	return paused, by, fromNanos(atN), nil
}

// SetPaused persists the pause flag (flushed to disk) with no reason.
func (j *Journal) SetPaused(ctx context.Context, paused bool, by string) error {
	return j.SetPause(ctx, paused, by, "")
}

// SetPause persists the pause flag with who set it and why, in one
// transaction flushed to disk.
func (j *Journal) SetPause(ctx context.Context, paused bool, by, reason string) error {
	value := "0"
	if paused {
		value = "1"
	}
	now := time.Now().UnixNano()
	kind := AuditResume
	if paused {
		kind = AuditPause
	}
	const upsert = `INSERT INTO settings (key, value, updated_by, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by,
				updated_at = excluded.updated_at`
	err := j.write(ctx, j.full, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, upsert, settingPaused, value, by, now); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, upsert, settingPauseReason, reason, by, now); err != nil {
			return err
		}
		return j.appendAudit(ctx, tx, kind, by, auditPause{Paused: paused, Reason: reason, UpdatedAt: auditNanos(now), UpdatedBy: by})
	})
	if err != nil {
		return fmt.Errorf("journal: set pause flag: %w", err)
	}
	return nil
}

// PauseReason reads why the pause flag was last set ("" when never set or
// set without a reason).
func (j *Journal) PauseReason(ctx context.Context) (string, error) {
	db, err := j.reader()
	if err != nil {
		return "", err
	}
	var reason string
	err = db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, settingPauseReason).Scan(&reason)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("journal: read pause reason: %w", err)
	}
	return reason, nil
}

// MismatchRecorded reports whether a withdrawal_mismatch was recorded for
// the withdrawal with journal id id.
func (j *Journal) MismatchRecorded(ctx context.Context, id int64) (bool, error) {
	db, err := j.reader()
	if err != nil {
		return false, err
	}
	var n int
	err = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM settings WHERE key = ?`, fmt.Sprint(mismatchPrefix, id)).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("journal: read withdrawal mismatch %d: %w", id, err)
	}
	return n > 0, nil
}

// RecordMismatch records (flushed to disk) that the desk reported the
// withdrawal with journal id id with details that differ from its intent;
// detail says how. Recording it again keeps the first record.
func (j *Journal) RecordMismatch(ctx context.Context, id int64, detail string) error {
	err := j.write(ctx, j.full, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value, updated_by, updated_at) VALUES (?, ?, 'treasuryd', ?)
			ON CONFLICT (key) DO NOTHING`, fmt.Sprint(mismatchPrefix, id), detail, time.Now().UnixNano())
		return err
	})
	if err != nil {
		return fmt.Errorf("journal: record withdrawal mismatch %d: %w", id, err)
	}
	return nil
}

// SaveReport journals a reconciliation report and returns its id. A zero r.At
// means now.
func (j *Journal) SaveReport(ctx context.Context, r Report) (int64, error) {
	at, _, err := requiredNanos(r.At, "at")
	if err != nil {
		return 0, fmt.Errorf("journal: save report: %w", err)
	}
	var id int64
	err = j.write(ctx, j.w, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO reports (at, clean, body) VALUES (?, ?, ?)`,
			at, boolInt(r.Clean), nonNil(r.Body))
		if err != nil {
			return err
		}
		if id, err = res.LastInsertId(); err != nil {
			return err
		}
		return j.appendAudit(ctx, tx, AuditReport, "", auditReport{At: auditNanos(at), BodySHA256: sha256Hex(nonNil(r.Body)),
			Clean: r.Clean, ID: id})
	})
	if err != nil {
		return 0, fmt.Errorf("journal: save report: %w", err)
	}
	return id, nil
}

// LastReport returns the newest report (by At, then id), or ok=false when
// there is none.
func (j *Journal) LastReport(ctx context.Context) (r Report, ok bool, err error) {
	db, err := j.reader()
	if err != nil {
		return Report{}, false, err
	}
	var at sql.NullInt64
	err = db.QueryRowContext(ctx, `SELECT id, at, clean, body FROM reports ORDER BY at DESC, id DESC LIMIT 1`).
		Scan(&r.ID, &at, &r.Clean, &r.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return Report{}, false, nil
	}
	if err != nil {
		return Report{}, false, fmt.Errorf("journal: last report: %w", err)
	}
	r.At = fromNanos(at)
	return r, true, nil
}
