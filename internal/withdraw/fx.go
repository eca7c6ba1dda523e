package withdraw

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/strategy"
)

// Module provides the Rebalancer: open intents resolved and the schedule
// started in OnStart, stopped in OnStop, following policy reloads.
var Module = fx.Module("withdraw",
	fx.Provide(func(lc fx.Lifecycle, log *zap.Logger, m *metrics.Metrics, c *astra.Client, j *journal.Journal,
		g Gate, p Pauser, h Halter, r *config.Reloader, e *strategy.Engine) *Rebalancer {
		rb := New(Deps{Log: log.Named("withdraw"), Metrics: m, Desk: c, Journal: j, Gate: g, Pause: p, Halt: h, Policy: r.Current,
			OnSend: e.Withdrawing})
		r.Subscribe(func(_, next *config.Policy) { rb.Apply(next) })
		lc.Append(fx.StartStopHook(rb.Start, rb.Stop))
		return rb
	}),
)
