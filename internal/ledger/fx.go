package ledger

import (
	"github.com/shopspring/decimal"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
)

// Module provides the Reconciler, scheduled on reconcile.schedule between
// OnStart and OnStop.
var Module = fx.Module("ledger",
	fx.Provide(func(lc fx.Lifecycle, log *zap.Logger, m *metrics.Metrics, c *astra.Client, j *journal.Journal, r *config.Reloader) *Reconciler {
		rec := New(Deps{
			Log: log.Named("ledger"), Metrics: m, Desk: c, Journal: j, Epoch: j.Epoch,
			Tolerance: func() decimal.Decimal { return r.Current().Reconcile.Tolerance },
			Schedule:  r.Current().Reconcile.Schedule,
		})
		lc.Append(fx.StartStopHook(rec.Start, rec.Stop))
		return rec
	}),
)
