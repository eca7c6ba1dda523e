package journal

import (
	"context"
	"errors"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/metrics"
)

// Path is the journal file's path (state.path).
type Path string

// Module provides the daemon's journal: in OnStart it takes the hold on the
// file (a journal another running treasuryd holds fails the start with a
// *HeldError), then opens it; OnStop closes it, then lets the hold go.
var Module = fx.Module("journal",
	fx.Provide(func(lc fx.Lifecycle, path Path, log *zap.Logger, m *metrics.Metrics) *Journal {
		j := New(string(path))
		j.SetLogger(log.Named("journal"))
		j.SetAuditCounter(m.AuditEntries)
		var hold *Hold
		lc.Append(fx.Hook{
			OnStart: func(ctx context.Context) error {
				h, err := Acquire(string(path))
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
		return j
	}),
)
