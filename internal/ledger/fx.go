package ledger

import (
	"context"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
)

// Floor raises the reconciliation epoch: desk and journal records older than
// it are not compared. The sandbox supplies its start time, because its
// simulated desk is new on every start while its journal persists.
type Floor time.Time

// In is what the module takes from the app.
type In struct {
	fx.In
	Lifecycle fx.Lifecycle
	Log       *zap.Logger
	Metrics   *metrics.Metrics
	Desk      *astra.Client
	Journal   *journal.Journal
	Reloader  *config.Reloader
	Floor     *Floor          `optional:"true"`
	Mismatch  MismatchHandler `optional:"true"`
}

// Module provides the Reconciler, scheduled on reconcile.schedule between
// OnStart and OnStop.
var Module = fx.Module("ledger",
	fx.Provide(func(in In) *Reconciler {
		lc, log, m, c, j, r := in.Lifecycle, in.Log, in.Metrics, in.Desk, in.Journal, in.Reloader
		epoch := j.Epoch
		if in.Floor != nil {
			floor := time.Time(*in.Floor)
			epoch = func(ctx context.Context) (time.Time, error) {
				e, err := j.Epoch(ctx)
				if err == nil && e.Before(floor) {
					e = floor
				}
				return e, err
			}
		}
		rec := New(Deps{
			Log: log.Named("ledger"), Metrics: m, Desk: c, Journal: j, Epoch: epoch,
			Tolerance: func() decimal.Decimal { return r.Current().Reconcile.Tolerance },
			Schedule:  r.Current().Reconcile.Schedule,
			Mismatch:  in.Mismatch,
			AuditHead: j.AuditHead,
		})
		lc.Append(fx.StartStopHook(rec.Start, rec.Stop))
		return rec
	}),
)
