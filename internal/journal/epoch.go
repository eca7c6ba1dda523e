package journal

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"
)

const settingCreated = "created"

// markCreated records, once, when this journal file was first opened for
// writing: the epoch before which desk history is not treasuryd's.
func (j *Journal) markCreated(ctx context.Context) error {
	now := time.Now().UnixNano()
	return j.write(ctx, j.full, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO settings (key, value, updated_by, updated_at) VALUES (?, ?, 'journal', ?)`,
			settingCreated, strconv.FormatInt(now, 10), now)
		return err
	})
}

// Epoch is when this journal was created. Trades and withdrawals at the desk
// older than it were not made by this treasuryd.
func (j *Journal) Epoch(ctx context.Context) (time.Time, error) {
	db, err := j.reader()
	if err != nil {
		return time.Time{}, err
	}
	var v string
	err = db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, settingCreated).Scan(&v)
	if err == sql.ErrNoRows {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("journal: read epoch: %w", err)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("journal: settings row %q: %q is not a time", settingCreated, v)
	}
	return time.Unix(0, n).UTC(), nil
}
