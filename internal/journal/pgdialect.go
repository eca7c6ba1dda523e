package journal

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/stdlib"
)

// The PostgreSQL dialect layer. The journal's statements are written once,
// in SQLite's dialect (? placeholders, LastInsertId, INSERT OR IGNORE), and
// run unchanged on both backends: on PostgreSQL they go through this
// database/sql driver, pgx's own with each statement translated on its way
// in. It is the one place that knows the differences, so the accept path,
// the withdrawals, the authority tables and the audit chain need no second
// copy of their SQL. What it translates:
//
//   - BEGIN IMMEDIATE becomes BEGIN;
//   - ? placeholders (outside quotes and comments) become $1, $2, ...;
//   - INSERT OR IGNORE INTO ... becomes INSERT INTO ... ON CONFLICT DO NOTHING;
//   - an INSERT into a table with an id column (idTables) run with Exec gets
//     RETURNING id, so Result.LastInsertId works as on SQLite;
//   - a Go bool argument is sent as 0 or 1 (the flag columns are INTEGER on
//     both backends).
//
// What it does not: PRAGMAs, the WAL checkpoints and the file hold are
// SQLite's alone and never run on PostgreSQL (journal.go, postgres.go); the
// schemas are separate migrations (migrations/ and migrations_pg/).

const pgDriverName = "treasuryd-pgx"

var registerPG sync.Once

func registerPGDriver() {
	registerPG.Do(func() { sql.Register(pgDriverName, pgDriver{}) })
}

func unregisterPG(names []string) {
	for _, n := range names {
		stdlib.UnregisterConnConfig(n)
	}
}

// idTables are the tables whose INSERTs report the new row's id.
var idTables = map[string]bool{
	"accepts": true, "withdrawals": true, "reports": true, "frames": true, "authority_changes": true,
}

type pgDriver struct{}

func (pgDriver) Open(name string) (driver.Conn, error) {
	c, err := stdlib.GetDefaultDriver().Open(name)
	if err != nil {
		return nil, err
	}
	sc, ok := c.(*stdlib.Conn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("journal: pgx driver returned %T", c)
	}
	return &pgConn{Conn: sc}, nil
}

// pgConn is a pgx connection whose statements are translated first. Every
// other driver interface (transactions, ping, session reset, validity) is
// pgx's own, promoted from the embedded *stdlib.Conn.
type pgConn struct {
	*stdlib.Conn
}

var insertInto = regexp.MustCompile(`(?is)^\s*INSERT\s+(OR\s+IGNORE\s+)?INTO\s+([a-z_]+)`)

// translate rewrites one statement; returning reports that it should be run
// as a query for its RETURNING id.
func translate(q string) (out string, returning bool) {
	if strings.EqualFold(strings.TrimSpace(q), "BEGIN IMMEDIATE") {
		return "BEGIN", false // SQLite's write lock at BEGIN; PostgreSQL locks rows
	}
	m := insertInto.FindStringSubmatchIndex(q)
	if m != nil {
		table := strings.ToLower(q[m[4]:m[5]])
		ignore := m[2] >= 0
		if ignore {
			q = q[:m[0]] + "INSERT INTO " + q[m[4]:]
		}
		q = strings.TrimRight(strings.TrimSpace(q), ";")
		if ignore {
			q += " ON CONFLICT DO NOTHING"
		}
		if idTables[table] && !strings.Contains(strings.ToUpper(q), "RETURNING") {
			q += " RETURNING id"
			returning = true
		}
	}
	return rebind(q), returning
}

// rebind turns ? placeholders into $n, leaving quoted text and comments
// alone.
func rebind(q string) string {
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(q) && q[j] != c {
				j++
			}
			if j >= len(q) {
				j = len(q) - 1
			}
			b.WriteString(q[i : j+1])
			i = j
		case c == '-' && i+1 < len(q) && q[i+1] == '-':
			j := strings.IndexByte(q[i:], '\n')
			if j < 0 {
				j = len(q) - i
			}
			b.WriteString(q[i : i+j])
			i += j - 1
		case c == '?':
			n++
			fmt.Fprintf(&b, "$%d", n)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// CheckNamedValue sends a bool as 0 or 1, then lets pgx check the rest.
func (c *pgConn) CheckNamedValue(v *driver.NamedValue) error {
	if b, ok := v.Value.(bool); ok {
		if b {
			v.Value = int64(1)
		} else {
			v.Value = int64(0)
		}
		return nil
	}
	return c.Conn.CheckNamedValue(v)
}

func (c *pgConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	q, returning := translate(query)
	if !returning {
		return c.Conn.ExecContext(ctx, q, args)
	}
	rows, err := c.Conn.QueryContext(ctx, q, args)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	vals := make([]driver.Value, len(rows.Columns()))
	var res pgResult
	for {
		if err := rows.Next(vals); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
		res.n++
		id, ok := vals[0].(int64)
		if !ok {
			return nil, fmt.Errorf("journal: RETURNING id gave %T", vals[0])
		}
		res.id = id
	}
	return res, nil
}

func (c *pgConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, _ := translate(query)
	return c.Conn.QueryContext(ctx, q, args)
}

// PrepareContext returns a statement that runs through ExecContext and
// QueryContext (translated each time); pgx caches the server-side prepared
// statement by its text itself.
func (c *pgConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	return &pgStmt{c: c, q: query}, nil
}

func (c *pgConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

type pgStmt struct {
	c *pgConn
	q string
}

func (s *pgStmt) Close() error  { return nil }
func (s *pgStmt) NumInput() int { return -1 }
func (s *pgStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), named(args))
}
func (s *pgStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), named(args))
}
func (s *pgStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.c.ExecContext(ctx, s.q, args)
}
func (s *pgStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.c.QueryContext(ctx, s.q, args)
}
func (s *pgStmt) CheckNamedValue(v *driver.NamedValue) error { return s.c.CheckNamedValue(v) }

func named(args []driver.Value) []driver.NamedValue {
	out := make([]driver.NamedValue, len(args))
	for i, a := range args {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return out
}

type pgResult struct{ id, n int64 }

func (r pgResult) LastInsertId() (int64, error) { return r.id, nil }
func (r pgResult) RowsAffected() (int64, error) { return r.n, nil }
