package journal

import (
	"context"
	"errors"
	"time"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/metrics"
)

// Path is the journal file's path (state.path).
type Path string

// DSN is a PostgreSQL journal's DSN (the value of state.postgres_dsn_env);
// when supplied and not empty, the journal is PostgreSQL and Path is unused.
type DSN string

// Leadership is what the journal's OnStart begins its leadership term with
// on PostgreSQL (SPEC 11): the process's name for the record and the
// elector's Confident, asked before every fenced write.
type Leadership struct {
	Holder    string
	Confident func() bool
	// Lease is ha.lease: the server ends a transaction of this journal
	// left idle this long (a paused process's), see SetLease.
	Lease time.Duration
}

type moduleIn struct {
	fx.In
	LC         fx.Lifecycle
	Path       Path
	DSN        DSN         `optional:"true"`
	Leadership *Leadership `optional:"true"`
	Log        *zap.Logger
	Metrics    *metrics.Metrics
}

// Module provides the daemon's journal. On SQLite, OnStart takes the hold on
// the file (a journal another running treasuryd holds fails the start with a
// *HeldError), then opens it; OnStop closes it, then lets the hold go. On
// PostgreSQL, OnStart opens (and migrates) it and begins a new leadership
// term — before any other part starts, so every write that precedes a POST
// is fenced by this term; the leadership itself is held outside the app
// (internal/leader), which builds one app per term.
var Module = fx.Module("journal",
	fx.Provide(func(in moduleIn) (*Journal, error) {
		if in.DSN != "" {
			if in.Leadership == nil {
				return nil, errors.New("journal: a PostgreSQL journal needs a leadership (internal/leader) to begin a term")
			}
			j := NewPostgres(string(in.DSN))
			j.SetLease(in.Leadership.Lease)
			j.SetLogger(in.Log.Named("journal"))
			j.SetAuditCounter(in.Metrics.AuditEntries)
			in.LC.Append(fx.Hook{
				OnStart: func(ctx context.Context) error {
					if err := j.Start(ctx); err != nil {
						return err
					}
					term, err := j.BeginTerm(ctx, in.Leadership.Holder, in.Leadership.Confident)
					if err != nil {
						j.Stop(ctx)
						return err
					}
					in.Log.Info("leadership term begun", zap.Int64("term", term), zap.String("holder", in.Leadership.Holder))
					return nil
				},
				OnStop: j.Stop,
			})
			return j, nil
		}
		j := New(string(in.Path))
		j.SetLogger(in.Log.Named("journal"))
		j.SetAuditCounter(in.Metrics.AuditEntries)
		var hold *Hold
		in.LC.Append(fx.Hook{
			OnStart: func(ctx context.Context) error {
				h, err := Acquire(string(in.Path))
				if err != nil {
					return err
				}
				if err := j.Start(ctx); err != nil {
					h.Release()
					return err
				}
				hold = h
				return nil
			},
			OnStop: func(ctx context.Context) error {
				err := j.Stop(ctx)
				return errors.Join(err, hold.Release())
			},
		})
		return j, nil
	}),
)
