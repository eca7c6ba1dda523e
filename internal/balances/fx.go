package balances

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/metrics"
)

// Module provides the Book: polling starts in OnStart and stops in OnStop.
var Module = fx.Module("balances",
	fx.Provide(func(lc fx.Lifecycle, log *zap.Logger, m *metrics.Metrics, c *astra.Client) *Book {
		b := New(Options{Log: log.Named("balances"), Metrics: m, Desk: c})
		lc.Append(fx.StartStopHook(b.Start, b.Stop))
		return b
	}),
)
