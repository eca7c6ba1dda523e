package strategy

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
)

// Module provides the Engine: state restored from the journal and streams
// opened in OnStart; decisions stopped and in-flight accepts finished (or
// journaled unknown) in OnStop. Reloads restart only changed programs.
var Module = fx.Module("strategy",
	fx.Provide(func(lc fx.Lifecycle, log *zap.Logger, m *metrics.Metrics, j *journal.Journal, c *astra.Client,
		g Gate, p Pauser, r *config.Reloader) *Engine {
		e := New(Deps{Log: log.Named("strategy"), Metrics: m, Journal: j, Desk: c, Gate: g, Pause: p, Policy: r.Current()})
		r.Subscribe(func(_, next *config.Policy) { e.Apply(next) })
		lc.Append(fx.StartStopHook(e.Start, e.Stop))
		return e
	}),
)
