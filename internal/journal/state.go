package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

const settingPaused = "paused"

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

// SetPaused persists the pause flag (flushed to disk).
func (j *Journal) SetPaused(ctx context.Context, paused bool, by string) error {
	value := "0"
	if paused {
		value = "1"
	}
	now := time.Now().UnixNano()
	kind := AuditResume
	if paused {
		kind = AuditPause
	}
	err := j.write(ctx, j.full, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value, updated_by, updated_at) VALUES (?, ?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by,
				updated_at = excluded.updated_at`, settingPaused, value, by, now); err != nil {
			return err
		}
		return j.appendAudit(ctx, tx, kind, by, auditPause{Paused: paused, UpdatedAt: auditNanos(now), UpdatedBy: by})
	})
	if err != nil {
		return fmt.Errorf("journal: set pause flag: %w", err)
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
