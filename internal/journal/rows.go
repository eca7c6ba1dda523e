package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// queryer is what a read runs on: the read pool (j.reader()), or the write
// transaction under way when the read must see that transaction's own
// writes. *sql.DB and *sql.Tx both are one; on either backend the query goes
// through the same driver (pgdialect.go rewrites the ? placeholders for
// PostgreSQL).
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// eachRow runs q with args on db and, for each row in order, decodes it with
// scan and hands the value to fn. It owns the rows: they are closed on every
// path. The context is checked between rows, so a long walk stops when its
// caller gives up. An error from the query, from scan, from the context or
// from the end of the result set is returned as "journal: <what>: ..."; an
// error from fn stops the walk and is returned as is.
//
// Rows are streamed, so memory does not grow with their count, but the
// connection is busy until the walk ends: on a transaction fn must not issue
// statements of its own (use collectRows, then write).
func eachRow[T any](ctx context.Context, db queryer, what, q string, args []any,
	scan func(scanner) (T, error), fn func(T) error) error {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("journal: %s: %w", what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("journal: %s: %w", what, err)
		}
		v, err := scan(rows)
		if err != nil {
			return fmt.Errorf("journal: %s: %w", what, err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return fmt.Errorf("journal: %s: %w", what, err)
	}
	return nil
}

// collectRows is eachRow gathering every decoded row, in order. The rows are
// closed when it returns, so a transaction is free for its next statement.
func collectRows[T any](ctx context.Context, db queryer, what, q string, args []any,
	scan func(scanner) (T, error)) ([]T, error) {
	var out []T
	err := eachRow(ctx, db, what, q, args, scan, func(v T) error {
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// scanID decodes a row holding just an id.
func scanID(s scanner) (int64, error) {
	var id int64
	err := s.Scan(&id)
	return id, err
}

// readAll is collectRows on the read pool.
func readAll[T any](ctx context.Context, j *Journal, what, q string, args []any,
	scan func(scanner) (T, error)) ([]T, error) {
	db, err := j.reader()
	if err != nil {
		return nil, fmt.Errorf("journal: %s: %w", what, err)
	}
	return collectRows(ctx, db, what, q, args, scan)
}

// readByID reads the row of table whose id is id (cols decoded by scan) on
// the read pool, or returns an error wrapping ErrNotFound. Errors read
// "journal: <noun> <id>: ...".
func readByID[T any](ctx context.Context, j *Journal, noun string, id int64, cols, table string,
	scan func(scanner) (T, error)) (T, error) {
	what := fmt.Sprintf("%s %d", noun, id)
	vs, err := readAll(ctx, j, what, "SELECT "+cols+" FROM "+table+" WHERE id = ?", []any{id}, scan)
	if err != nil {
		var zero T
		return zero, err
	}
	if len(vs) == 0 {
		var zero T
		return zero, fmt.Errorf("journal: %s: %w", what, ErrNotFound)
	}
	return vs[0], nil
}

// where builds the WHERE clause of a listing from its filter's fields, each
// condition only when its field is set (a zero field does not filter). Column
// names are the journal's own constants, never input; values are always bound
// as arguments.
type where struct {
	conds []string
	args  []any
}

// equal adds "col = v" unless v is "".
func (w *where) equal(col, v string) {
	if v != "" {
		w.conds = append(w.conds, col+" = ?")
		w.args = append(w.args, v)
	}
}

// since adds "col >= t" unless t is zero.
func (w *where) since(col string, t time.Time) {
	if !t.IsZero() {
		w.conds = append(w.conds, col+" >= ?")
		w.args = append(w.args, sinceNanos(t))
	}
}

// in adds "col IN (vs...)" unless vs is empty.
func (w *where) in(col string, vs []string) {
	if len(vs) > 0 {
		w.conds = append(w.conds, col+" IN ("+inList(len(vs))+")")
		for _, v := range vs {
			w.args = append(w.args, v)
		}
	}
}

// query returns "SELECT cols FROM table [WHERE ...] ORDER BY order".
func (w *where) query(cols, table, order string) string {
	q := "SELECT " + cols + " FROM " + table
	if len(w.conds) > 0 {
		q += " WHERE " + strings.Join(w.conds, " AND ")
	}
	return q + " ORDER BY " + order
}
