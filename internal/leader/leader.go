// Package leader decides which of two treasuryd processes on one PostgreSQL
// journal acts (SPEC 11): the one holding a session-level advisory lock on a
// dedicated connection.
//
// Why PostgreSQL's lock and not a Kubernetes Lease: the journal is already
// the one thing both processes must reach to act, so a lock in the same
// server adds no second system that could disagree with it (a Lease held
// through the API server while the database is unreachable, or the other way
// round), works outside Kubernetes, and needs no RBAC. Its weakness is that a
// session outlives a paused process: a leader stopped by SIGSTOP keeps its
// TCP connection and so its lock. The elector closes that hole with the
// server's own clock: the lock connection sets idle_session_timeout to the
// lease, so the server ends the session (and frees the lock) once the leader
// has been silent for a lease; the leader pings every lease/5 and gives up
// by itself after four fifths of a lease without a confirmed ping, always
// before the server can free the lock. A deposed leader that wakes late is
// then stopped by the fencing term in the journal (journal.ErrFenced).
package leader

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"go.uber.org/zap"
)

// The advisory lock's key: the two-int form, so pg_locks shows it exactly
// (classid, objid, objsubid = 2). "trea" "sury" in ASCII.
const (
	lockClass int32 = 0x74726561
	lockObj   int32 = 0x73757279
)

// Elector campaigns for and holds leadership. Campaign, then Watch; Close
// lets the lock go (the session ends).
type Elector struct {
	dsn   string
	lease time.Duration
	log   *zap.Logger

	mu   sync.Mutex
	db   *sql.DB
	conn *sql.Conn

	// confirmed is the monotonic start time (ns since start) of the last ping
	// that confirmed the lock; 0 before the lock is held.
	start     time.Time
	confirmed atomic.Int64
}

// New returns an elector for the PostgreSQL at dsn. It does no I/O.
func New(dsn string, lease time.Duration, log *zap.Logger) *Elector {
	if log == nil {
		log = zap.NewNop()
	}
	return &Elector{dsn: dsn, lease: lease, log: log, start: time.Now()}
}

// Lease is the lease this elector holds leadership under.
func (e *Elector) Lease() time.Duration { return e.lease }

// pingEvery and giveUpAfter: the leader confirms its lock five times per
// lease and stops counting itself leader after four fifths of a lease
// without a confirmation, a fifth before the server may free the lock.
func (e *Elector) pingEvery() time.Duration   { return e.lease / 5 }
func (e *Elector) giveUpAfter() time.Duration { return e.lease * 4 / 5 }

// Campaign blocks until this process holds the lock (nil), or ctx ends. It
// retries every lease/5 while another process holds it or the server is
// unreachable.
func (e *Elector) Campaign(ctx context.Context) error {
	t := time.NewTicker(e.pingEvery())
	defer t.Stop()
	for {
		ok, err := e.try(ctx)
		if ok {
			return nil
		}
		if err != nil {
			e.log.Warn("leadership: cannot reach PostgreSQL", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (e *Elector) try(ctx context.Context) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.db == nil {
		db, err := sql.Open("pgx", e.dsn)
		if err != nil {
			return false, errors.New("leadership: the PostgreSQL DSN does not parse") // never echo the DSN
		}
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		e.db = db
	}
	cctx, cancel := context.WithTimeout(ctx, e.pingEvery())
	defer cancel()
	if e.conn == nil {
		c, err := e.db.Conn(cctx)
		if err != nil {
			e.db.Close()
			e.db = nil
			return false, err
		}
		// The server ends this session once it has been silent for a
		// lease, freeing the lock of a paused or partitioned leader.
		// PostgreSQL 14 or later; an older server refuses and so does
		// treasuryd (fail closed).
		q := fmt.Sprintf("SET idle_session_timeout = %d", e.lease.Milliseconds())
		if _, err := c.ExecContext(cctx, q); err != nil {
			c.Close()
			return false, fmt.Errorf("leadership: set idle_session_timeout (PostgreSQL 14 or later is needed): %w", err)
		}
		e.conn = c
	}
	began := time.Now()
	var got bool
	if err := e.conn.QueryRowContext(cctx, "SELECT pg_try_advisory_lock($1, $2)", lockClass, lockObj).Scan(&got); err != nil {
		e.conn.Close()
		e.conn = nil
		e.db.Close()
		e.db = nil
		return false, err
	}
	if got {
		e.confirmed.Store(int64(began.Sub(e.start)) + 1)
	}
	return got, nil
}

// Confident reports whether this process may act as leader now: it holds
// the lock and confirmed it less than four fifths of a lease ago.
func (e *Elector) Confident() bool {
	c := e.confirmed.Load()
	if c == 0 {
		return false
	}
	return time.Since(e.start)-time.Duration(c-1) < e.giveUpAfter()
}

// confirm checks on the lock connection that the session still holds the
// lock.
func (e *Elector) confirm(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return errors.New("leadership: no lock connection")
	}
	cctx, cancel := context.WithTimeout(ctx, e.pingEvery())
	defer cancel()
	began := time.Now()
	var held bool
	err := e.conn.QueryRowContext(cctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
		WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
		  AND classid = $1::int4::oid AND objid = $2::int4::oid AND objsubid = 2)`,
		lockClass, lockObj).Scan(&held)
	if err != nil {
		return fmt.Errorf("leadership: confirm the lock: %w", err)
	}
	if !held {
		return errNotHeld
	}
	e.confirmed.Store(int64(began.Sub(e.start)) + 1)
	return nil
}

// Watch confirms the lock every lease/5 until ctx ends (nil) or leadership
// is lost: a failed confirmation, or none within four fifths of a lease
// (also after this process was paused). It returns the reason it was lost.
// After a loss Confident is false at once.
func (e *Elector) Watch(ctx context.Context) error {
	t := time.NewTicker(e.pingEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !e.Confident() {
			e.lose()
			return fmt.Errorf("leadership: not confirmed for %s (lease %s)", e.giveUpAfter(), e.lease)
		}
		if err := e.confirm(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// A slow answer is not yet a loss while the last
			// confirmation is recent; anything else (a broken session, a
			// restarted server, the lock gone) is.
			if !e.Confident() || !errors.Is(err, context.DeadlineExceeded) {
				e.lose()
				return err
			}
			e.log.Warn("leadership: ping failed, retrying within the lease", zap.Error(err))
		}
	}
}

var errNotHeld = errors.New("leadership: the lock is no longer held by this session")

// lose forgets the lock: Confident is false from here on and the session is
// closed (if the server has not closed it already), so the lock is free.
func (e *Elector) lose() {
	e.confirmed.Store(0)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn != nil {
		e.conn.Close() // back to the pool, which the Close below ends
		e.conn = nil
	}
	if e.db != nil {
		e.db.Close() // ends the session and with it the lock
		e.db = nil
	}
}

// Close lets the lock go and closes the connection; safe twice.
func (e *Elector) Close() error {
	e.lose()
	return nil
}
