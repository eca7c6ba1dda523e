package withdraw

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/balances"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
)

// Module provides the Rebalancer: open intents resolved and the schedule
// started in OnStart, stopped in OnStop, following policy reloads. Every
// withdrawal sent is held in the balance book at once (OnSend), so trading's
// reserve check counts it before the next poll shows it.
var Module = fx.Module("withdraw",
	fx.Provide(func(lc fx.Lifecycle, log *zap.Logger, m *metrics.Metrics, c *astra.Client, j *journal.Journal,
		g Gate, p Pauser, h Halter, r *config.Reloader, book *balances.Book) *Rebalancer {
		rb := New(Deps{Log: log.Named("withdraw"), Metrics: m, Desk: c, Journal: j, Gate: g, Pause: p, Halt: h, Policy: r.Current,
			OnSend: book.Withdrawing, MayAct: j.MayAct})
		r.Subscribe(func(_, next *config.Policy) { rb.Apply(next) })
		lc.Append(fx.StartStopHook(rb.Start, rb.Stop))
		return rb
	}),
)
