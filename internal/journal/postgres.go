package journal

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/zap"
)

// The PostgreSQL journal (SPEC 11): the same Journal and API on a server
// that two treasuryd processes share, one leading. Statements run through
// the dialect layer (pgdialect.go); the schema is migrations_pg/.

// ErrFenced: a write that precedes a POST (an accept, a withdrawal intent)
// was refused because this process no longer holds the journal's current
// leadership term, or cannot confirm its leadership. Nothing was written;
// the caller must not send.
var ErrFenced = errors.New("journal: fenced: this process is not the current leader")

// pgOpenTimeout bounds the first connection and the migrations at open.
const pgOpenTimeout = 30 * time.Second

//go:embed migrations_pg/*.sql
var migrationPGFS embed.FS

// NewPostgres returns a journal on the PostgreSQL at dsn that opens on
// Start. The DSN may hold a password: it never appears in an error or log.
func NewPostgres(dsn string) *Journal {
	j := New("")
	j.dsn = dsn
	return j
}

// OpenPostgres opens (migrating if needed) the journal at dsn.
func OpenPostgres(dsn string) (*Journal, error) {
	j := NewPostgres(dsn)
	if err := j.Start(context.Background()); err != nil {
		return nil, err
	}
	return j, nil
}

// Postgres reports whether the journal is on PostgreSQL.
func (j *Journal) Postgres() bool { return j.dsn != "" }

// DefaultIdleTxTimeout is the PostgreSQL journal's
// idle_in_transaction_session_timeout unless SetLease sets the lease: a
// transaction of a paused or partitioned process (one holding the
// leadership row FOR SHARE) is ended by the server after this, so it cannot
// hold up the next leader's BeginTerm for longer.
const DefaultIdleTxTimeout = 10 * time.Second

// SetLease sets how long the server lets a transaction of this journal sit
// idle before ending it (see DefaultIdleTxTimeout): the leadership lease.
// Call it before Start.
func (j *Journal) SetLease(d time.Duration) {
	if d > 0 {
		j.idleTx = d
	}
}

func (j *Journal) pgPool(conns int) (*sql.DB, error) {
	registerPGDriver()
	cfg, err := pgx.ParseConfig(j.dsn)
	if err != nil {
		return nil, errors.New("the PostgreSQL DSN does not parse") // never echo it
	}
	idle := j.idleTx
	if idle <= 0 {
		idle = DefaultIdleTxTimeout
	}
	cfg.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(idle.Milliseconds(), 10)
	if j.readOnly {
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
	}
	name := stdlib.RegisterConnConfig(cfg)
	j.pgNames = append(j.pgNames, name)
	db, err := sql.Open(pgDriverName, name)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

func (j *Journal) openPostgres() error {
	var err error
	for _, p := range []struct {
		db    **sql.DB
		conns int
	}{{&j.full, 1}, {&j.w, 1}, {&j.r, readConns}} {
		if *p.db, err = j.pgPool(p.conns); err != nil {
			j.Close()
			return fmt.Errorf("journal: open PostgreSQL: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgOpenTimeout)
	defer cancel()
	if err := j.migratePG(ctx); err != nil {
		j.Close()
		return fmt.Errorf("journal: open PostgreSQL: %w", err)
	}
	if err := j.markCreated(ctx); err != nil {
		j.Close()
		return fmt.Errorf("journal: open PostgreSQL: %w", err)
	}
	if err := j.prepareAcceptStmts(ctx); err != nil {
		j.Close()
		return fmt.Errorf("journal: open PostgreSQL: %w", err)
	}
	return nil
}

// OpenPostgresReadOnly opens the journal at dsn for reading (audit verify,
// replay beside the daemons): every write method returns ErrReadOnly and its
// connections are read-only transactions.
func OpenPostgresReadOnly(dsn string) (*Journal, error) {
	j := &Journal{dsn: dsn, readOnly: true, log: zap.NewNop(), closed: make(chan struct{})}
	j.opened.Store(true)
	var err error
	if j.r, err = j.pgPool(readConns); err != nil {
		return nil, fmt.Errorf("journal: open PostgreSQL read-only: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pgOpenTimeout)
	defer cancel()
	cur, err := pgSchemaVersion(ctx, j.r)
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("journal: open PostgreSQL read-only: %w", err)
	}
	want := len(mustPGMigrations())
	if cur != want {
		j.Close()
		if cur > want {
			return nil, fmt.Errorf("journal: open PostgreSQL read-only: %w: schema version %d, this binary knows up to %d", ErrNewerSchema, cur, want)
		}
		return nil, fmt.Errorf("journal: open PostgreSQL read-only: schema version %d, this binary needs %d; start the daemon once to migrate it", cur, want)
	}
	return j, nil
}

// pgMigrations are the PostgreSQL migrations, numbered like SQLite's.
func pgMigrations() ([]migration, error) { return loadMigrations(migrationPGFS, "migrations_pg") }

func mustPGMigrations() []migration {
	ms, err := pgMigrations()
	if err != nil {
		panic(err) // fixed at build time; TestPostgresMigrationsAreNumbered covers this
	}
	return ms
}

// pgMigrateLock serialises two processes migrating one new database (a
// transaction-level advisory lock, released at commit).
const pgMigrateLock = 0x74726d67 // "trmg"

// migratePG applies every migration newer than the schema_version row, all
// in one transaction; a database from a newer schema is refused.
func (j *Journal) migratePG(ctx context.Context) error {
	ms, err := pgMigrations()
	if err != nil {
		return err
	}
	return j.write(ctx, j.full, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(?)", pgMigrateLock); err != nil {
			return fmt.Errorf("lock for migration: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
			id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("schema_version: %w", err)
		}
		var cur int
		err := tx.QueryRowContext(ctx, "SELECT version FROM schema_version WHERE id = 1").Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			cur = 0
		} else if err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if cur > len(ms) {
			return fmt.Errorf("%w: database has schema version %d, this binary knows up to %d; use a newer treasuryd",
				ErrNewerSchema, cur, len(ms))
		}
		for _, m := range ms[cur:] {
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.name, err)
			}
		}
		if cur < len(ms) {
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (id, version) VALUES (1, ?)
				ON CONFLICT (id) DO UPDATE SET version = excluded.version`, len(ms)); err != nil {
				return fmt.Errorf("set schema version: %w", err)
			}
		}
		return nil
	})
}

func pgSchemaVersion(ctx context.Context, db *sql.DB) (int, error) {
	var cur int
	err := db.QueryRowContext(ctx, "SELECT version FROM schema_version WHERE id = 1").Scan(&cur)
	if err != nil {
		return 0, fmt.Errorf("read schema version (not a treasuryd journal, or never migrated?): %w", err)
	}
	return cur, nil
}

// fencing is the journal's view of the leadership it writes under.
type fencing struct {
	mu        sync.Mutex
	term      int64
	confident func() bool
	fenced    chan struct{}
	fenceOnce sync.Once
}

// Term is the fencing term this journal writes under: on SQLite always 1
// (one process holds the file), on PostgreSQL the term BeginTerm took (0
// before).
func (j *Journal) Term() int64 {
	if !j.Postgres() {
		return 1
	}
	j.fence.mu.Lock()
	defer j.fence.mu.Unlock()
	return j.fence.term
}

// Fenced is closed once a write was refused with ErrFenced: this process is
// deposed and must step down.
func (j *Journal) Fenced() <-chan struct{} { return j.fencedCh() }

func (j *Journal) fencedCh() chan struct{} {
	j.fence.mu.Lock()
	defer j.fence.mu.Unlock()
	if j.fence.fenced == nil {
		j.fence.fenced = make(chan struct{})
	}
	return j.fence.fenced
}

func (j *Journal) markFenced() {
	ch := j.fencedCh()
	j.fence.fenceOnce.Do(func() { close(ch) })
}

// BeginTerm starts a new leadership term on a PostgreSQL journal: it
// increments the journal's term in one transaction and makes it this
// journal's, so that from here on every fenced write of an earlier leader
// fails. confident, when not nil, is asked before every fenced write: a
// leader that cannot confirm its lock must not write either. holder names
// the process (host and pid) for the record. On SQLite it does nothing and
// returns 1.
func (j *Journal) BeginTerm(ctx context.Context, holder string, confident func() bool) (int64, error) {
	if !j.Postgres() {
		return 1, nil
	}
	var term int64
	now := time.Now().UnixNano()
	err := j.write(ctx, j.full, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, "SELECT term FROM leadership WHERE id = 1 FOR UPDATE").Scan(&term); err != nil {
			return err
		}
		term++
		_, err := tx.ExecContext(ctx, "UPDATE leadership SET term = ?, holder = ?, started_at = ? WHERE id = 1", term, holder, now)
		if err != nil {
			return err
		}
		return j.auditTerm(ctx, tx, term, holder, now)
	})
	if err != nil {
		return 0, fmt.Errorf("journal: begin leadership term: %w", err)
	}
	j.fence.mu.Lock()
	j.fence.term, j.fence.confident = term, confident
	j.fence.mu.Unlock()
	return term, nil
}

// auditTerm appends the term's start to the audit chain (SPEC 13), once the
// audit chain exists.
func (j *Journal) auditTerm(ctx context.Context, tx *sql.Tx, term int64, holder string, at int64) error {
	return j.appendAudit(ctx, tx, AuditLeadershipTerm, "", auditLeadership{Holder: holder, StartedAt: auditNanos(at), Term: term})
}

// auditLeadership is a leadership term's entry data. Fields in the order of
// their JSON names.
type auditLeadership struct {
	Holder    string `json:"holder"`
	StartedAt string `json:"started_at"`
	Term      int64  `json:"term"`
}

// checkFence is run inside the transaction of every write that precedes a
// POST: on PostgreSQL it reads the journal's term (FOR SHARE, so a new
// leader's BeginTerm waits for this transaction, and this one sees a term
// committed before it) and refuses the write with ErrFenced unless it is
// this journal's and the leader is confident of its lock. On SQLite (one
// process holds the file) it does nothing.
func (j *Journal) checkFence(ctx context.Context, tx *sql.Tx) error {
	if !j.Postgres() {
		return nil
	}
	mine, err := j.fenceTerm()
	if err != nil {
		return err
	}
	var cur int64
	if err := tx.QueryRowContext(ctx, fenceSQL).Scan(&cur); err != nil {
		return fmt.Errorf("read leadership term: %w", err)
	}
	if cur != mine {
		j.markFenced()
		return fmt.Errorf("%w (this process's term %d, the journal's %d)", ErrFenced, mine, cur)
	}
	return nil
}

// fenceBatch checks the fence for a batch of accept-path ops on its driver
// connection dc: nil unless the journal is PostgreSQL and the batch holds an
// accept insert. It returns the ErrFenced for the inserts (fenced), or
// another error that fails the batch.
func (j *Journal) fenceBatch(ctx context.Context, dc any, batch []*op) (fenced, err error) {
	if !j.Postgres() {
		return nil, nil
	}
	inserts := false
	for _, o := range batch {
		inserts = inserts || o.kind == opInsert
	}
	if !inserts {
		return nil, nil
	}
	mine, err := j.fenceTerm()
	if err != nil {
		return err, nil
	}
	q, ok := dc.(driver.QueryerContext)
	if !ok {
		return nil, fmt.Errorf("journal: driver connection %T cannot query", dc)
	}
	rows, err := q.QueryContext(ctx, fenceSQL, nil)
	if err != nil {
		return nil, fmt.Errorf("read leadership term: %w", err)
	}
	defer rows.Close()
	v := make([]driver.Value, 1)
	if err := rows.Next(v); err != nil {
		return nil, fmt.Errorf("read leadership term: %w", err)
	}
	cur, _ := v[0].(int64)
	if cur != mine {
		j.markFenced()
		return fmt.Errorf("%w (this process's term %d, the journal's %d)", ErrFenced, mine, cur), nil
	}
	return nil, nil
}

// fenceSQL reads the journal's term so that a new leader's BeginTerm (FOR
// UPDATE) waits for this transaction, and this one sees a term committed
// before it.
const fenceSQL = "SELECT term FROM leadership WHERE id = 1 FOR SHARE"

// fenceTerm is this journal's term, or ErrFenced when it has none or its
// leader cannot confirm its lock.
func (j *Journal) fenceTerm() (int64, error) {
	j.fence.mu.Lock()
	mine, confident := j.fence.term, j.fence.confident
	j.fence.mu.Unlock()
	if mine == 0 || (confident != nil && !confident()) {
		j.markFenced()
		return 0, fmt.Errorf("%w (term %d, leadership not confirmed)", ErrFenced, mine)
	}
	return mine, nil
}

// MayAct reports whether this process may send a POST now. On SQLite (one
// process holds the file) always. On PostgreSQL only under a term BeginTerm
// took, not fenced, and with the leadership lock confirmed within the lease.
// The accept path and the rebalancer ask it right before each POST, after
// the fenced journal write: a leader that froze between the two (SIGSTOP, a
// long GC or VM pause) and lost its lease meanwhile does not send when it
// wakes.
func (j *Journal) MayAct() bool {
	if !j.Postgres() {
		return true
	}
	select {
	case <-j.fencedCh():
		return false
	default:
	}
	j.fence.mu.Lock()
	mine, confident := j.fence.term, j.fence.confident
	j.fence.mu.Unlock()
	return mine != 0 && (confident == nil || confident())
}

// HolderName names this process for the leadership record: host and pid.
func HolderName() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", h, os.Getpid())
}
