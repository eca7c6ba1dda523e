// Package journal is treasuryd's durable state: accepts with their raw quotes
// and results, withdrawal intents and their statuses, the pause flag,
// reconciliation reports and recorded quote frames, in one SQLite file (WAL),
// with an audit hash chain over every money-state record (audit.go).
//
// It promises that a write has been committed when a method returns nil, that
// a committed write survives kill -9 of the process, and that withdrawal
// intents, their updates and the pause flag are also flushed to disk
// (synchronous=FULL) before the method returns, so they survive a power loss.
package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Errors callers branch on with errors.Is.
var (
	// ErrNotFound: no row with that id.
	ErrNotFound = errors.New("journal: not found")
	// ErrTransition: the requested state change is not allowed from the
	// record's current state (e.g. settling an accept that is already ok).
	ErrTransition = errors.New("journal: state transition not allowed")
	// ErrReadOnly: a write on a journal opened with OpenReadOnly.
	ErrReadOnly = errors.New("journal: opened read-only")
	// ErrNewerSchema: the file was written by a newer treasuryd.
	ErrNewerSchema = errors.New("journal: schema is newer than this binary")
	// ErrClosed: the journal was closed.
	ErrClosed = errors.New("journal: closed")
)

const (
	// busyTimeoutMillis bounds how long a statement waits on another
	// process's lock (a replay reading beside the daemon, a checkpoint)
	// before failing with SQLITE_BUSY. Writes inside this process never wait
	// on each other in SQLite: they are serialised by Journal.wsem first.
	busyTimeoutMillis = 5000
	// readConns bounds the read pool: a few concurrent readers (admin API,
	// reconciliation, a Frames stream) without one connection per caller.
	readConns = 4
)

// Journal is an open journal file. Safe for concurrent use.
//
// Four pools over the same file, each with its pragmas in the DSN so that
// they apply to every connection the pool ever opens (database/sql may
// reconnect; a PRAGMA run once on "the pool" would only reach one
// connection):
//   - w: one connection, synchronous=NORMAL, for accepts, reports, frames;
//   - full: one connection, synchronous=FULL, for withdrawals and the pause
//     flag, so their commit fsyncs the WAL before returning;
//   - ck: one connection for the background WAL checkpoints (checkpoint.go);
//     w and full never checkpoint (wal_autocheckpoint=0);
//   - r: the read pool (query_only), or for OpenReadOnly a mode=ro pool.
//
// wsem (capacity 1) makes this process a single writer across w and full,
// so the two write connections never contend for SQLite's write lock; a
// channel rather than a mutex so that waiting for it honours ctx. The accept
// path's writes (InsertAccept, SetAcceptResult) take it in the caller's own
// goroutine, batching concurrent callers into one transaction (group.go),
// with statements prepared once (stmts).
type Journal struct {
	path     string
	dsn      string // PostgreSQL (postgres.go) when not empty
	idleTx   time.Duration
	pgNames  []string // the pools' registered pgx configs, released at Close
	readOnly bool
	fence    fencing
	w        *sql.DB
	full     *sql.DB
	ck       *sql.DB
	r        *sql.DB
	wsem     chan struct{}
	group    group     // the accept path's group commit (group.go)
	stmts    stmtCache // the accept path's statements, prepared on w (stmts.go)
	log      *zap.Logger

	// bg owns the checkpointer goroutine, which stops when closed is
	// closed.
	bg sync.WaitGroup
	// The checkpointer's timing and limit (checkpoint.go), from its
	// constants; tests change them before Start.
	ckEvery, ckRetry time.Duration
	ckLimit          int64
	// Counts of the background work, which tests wait on.
	stats struct {
		enqueued, taken, batches, continued, lingered, checkpoints, truncates atomic.Int64
	}
	// The audit chain (audit.go). Guarded by wsem, like the transaction
	// they describe: auditPending counts the entries of the transaction
	// under way and auditTx is the head within it; auditHead is the head
	// as of this process's last commit (a cache: another process may have
	// appended since). auditAppended counts the entries committed.
	auditPending  int
	auditTx       auditCursor
	auditHead     auditCursor
	auditAppended atomic.Int64
	auditCounter  Counter
	auditInsert   *sql.Stmt // auditInsertSQL, prepared in the transaction under way
	// pendingAccepts holds the audit data of the accepts this process
	// inserted that have no result yet, by id, for their result's entry
	// (auditBatchAcceptResult); stagedAccepts those of the batch under way,
	// until it commits. Guarded by wsem.
	pendingAccepts map[int64]auditAccept
	stagedAccepts  []auditAccept

	opened    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

// fileURI turns a path into an absolute SQLite file: URI with params.
func fileURI(path string, params ...string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	u := url.URL{Scheme: "file", Path: abs}
	s := u.String()
	for i, p := range params {
		if i == 0 {
			s += "?"
		} else {
			s += "&"
		}
		s += p
	}
	return s, nil
}

func openPool(path string, conns int, params ...string) (*sql.DB, error) {
	dsn, err := fileURI(path, params...)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// ErrNotOpen: the journal was built with New and not started yet.
var ErrNotOpen = errors.New("journal: not open yet")

// New returns a journal for path that opens on Start: for the fx app, whose
// constructors do no I/O. Every method before Start returns ErrNotOpen.
func New(path string) *Journal {
	return &Journal{path: path, wsem: make(chan struct{}, 1), group: newGroup(),
		ckEvery: checkpointEvery, ckRetry: truncateRetry, ckLimit: walLimitBytes,
		log: zap.NewNop(), closed: make(chan struct{})}
}

// SetLogger sets where the journal logs what goes wrong in the background
// (WAL checkpoints). Call it before Start; by default it logs nothing.
func (j *Journal) SetLogger(log *zap.Logger) {
	if log != nil {
		j.log = log
	}
}

// Start opens and migrates the journal built with New.
func (j *Journal) Start(ctx context.Context) error {
	j.opened.Store(true) // open() migrates through the write path
	if j.dsn != "" {
		return j.openPostgres()
	}
	return j.open()
}

// Stop closes it; safe twice.
func (j *Journal) Stop(ctx context.Context) error { return j.Close() }

// Open opens (creating if needed) and migrates the journal at path.
func Open(path string) (*Journal, error) {
	j := New(path)
	if err := j.Start(context.Background()); err != nil {
		return nil, err
	}
	return j, nil
}

func (j *Journal) open() error {
	path := j.path
	common := []string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeoutMillis),
		"_pragma=foreign_keys(1)",
		"_pragma=journal_mode(WAL)",
		// BEGIN IMMEDIATE: take the write lock at BEGIN, so a transaction
		// never fails half way when upgrading a read lock to a write lock.
		"_txlock=immediate",
		// Checkpoints run in the background (checkpoint.go), not in the
		// commit that crosses SQLite's default 1,000-page threshold.
		"_pragma=wal_autocheckpoint(0)",
	}
	var err error
	if j.full, err = openPool(path, 1, append(common, "_pragma=synchronous(FULL)")...); err != nil {
		return fmt.Errorf("journal: open %s: %w", path, err)
	}
	if j.w, err = openPool(path, 1, append(common, "_pragma=synchronous(NORMAL)")...); err != nil {
		j.Close()
		return fmt.Errorf("journal: open %s: %w", path, err)
	}
	if j.ck, err = openPool(path, 1,
		// PASSIVE never waits; only the TRUNCATE fallback does, for
		// readers, while it holds the writer slot, so briefly.
		fmt.Sprintf("_pragma=busy_timeout(%d)", truncateBusyMillis),
		// A checkpoint fsyncs the WAL before copying it and the database
		// file after (so a WAL restart cannot lose a synced commit).
		"_pragma=synchronous(NORMAL)",
		"_pragma=wal_autocheckpoint(0)",
	); err != nil {
		j.Close()
		return fmt.Errorf("journal: open %s: %w", path, err)
	}
	if j.r, err = openPool(path, readConns,
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeoutMillis),
		"_pragma=query_only(1)",
	); err != nil {
		j.Close()
		return fmt.Errorf("journal: open %s: %w", path, err)
	}

	ctx := context.Background()
	var mode string
	if err := j.full.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		j.Close()
		return fmt.Errorf("journal: open %s: %w", path, err)
	}
	if mode != "wal" {
		j.Close()
		return fmt.Errorf("journal: open %s: journal_mode is %q, want wal (filesystem without shared memory?)", path, mode)
	}
	if err := j.migrate(ctx); err != nil {
		j.Close()
		return fmt.Errorf("journal: open %s: %w", path, err)
	}
	if err := j.markCreated(ctx); err != nil {
		j.Close()
		return fmt.Errorf("journal: open %s: %w", path, err)
	}
	if err := j.prepareAcceptStmts(ctx); err != nil {
		j.Close()
		return fmt.Errorf("journal: open %s: %w", path, err)
	}
	j.bg.Add(1)
	go j.checkpointLoop()
	return nil
}

// OpenReadOnly opens an existing journal without writing to it (replay beside
// a running daemon). It reads through a mode=ro, query_only connection pool;
// WAL lets it read committed data while another process writes. Every write
// method returns ErrReadOnly.
func OpenReadOnly(path string) (*Journal, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("journal: open read-only %s: %w", path, err)
	}
	j := &Journal{path: path, readOnly: true, log: zap.NewNop(), closed: make(chan struct{})}
	j.opened.Store(true)
	var err error
	if j.r, err = openPool(path, readConns,
		"mode=ro",
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeoutMillis),
		"_pragma=query_only(1)",
	); err != nil {
		return nil, fmt.Errorf("journal: open read-only %s: %w", path, err)
	}
	if err := j.checkSchemaReadOnly(context.Background()); err != nil {
		j.Close()
		return nil, fmt.Errorf("journal: open read-only %s: %w", path, err)
	}
	return j, nil
}

// Path returns the path the journal was opened with.
func (j *Journal) Path() string { return j.path }

// Close closes the file. Safe to call twice. Accept writes already taken
// into a transaction commit and are answered first; those still queued fail
// with ErrClosed, unwritten.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		close(j.closed)
		j.bg.Wait()
		if j.wsem != nil {
			// Wait for the write under way (an accept batch's leader sees
			// closed once it has the slot and starts none after this).
			j.wsem <- struct{}{}
			defer func() { <-j.wsem }()
		}
		var errs []error
		if j.w != nil {
			errs = append(errs, j.closeAcceptStmts())
		}
		for _, db := range []*sql.DB{j.r, j.ck, j.w, j.full} {
			if db != nil {
				errs = append(errs, db.Close())
			}
		}
		j.closeErr = errors.Join(errs...)
		unregisterPG(j.pgNames)
	})
	return j.closeErr
}

func (j *Journal) isClosed() bool {
	if !j.opened.Load() {
		return true
	}
	select {
	case <-j.closed:
		return true
	default:
		return false
	}
}

// write runs fn in one BEGIN IMMEDIATE transaction on db (j.w or j.full),
// holding the process-wide writer slot.
func (j *Journal) write(ctx context.Context, db *sql.DB, fn func(tx *sql.Tx) error) error {
	if j.readOnly {
		return ErrReadOnly
	}
	if j.isClosed() {
		return ErrClosed
	}
	select {
	case j.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-j.wsem }()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		j.auditSettle(false)
		return err
	}
	err = tx.Commit()
	j.auditSettle(err == nil)
	return err
}

// reader returns the read pool, or ErrClosed.
func (j *Journal) reader() (*sql.DB, error) {
	if j.isClosed() {
		return nil, ErrClosed
	}
	return j.r, nil
}
