package compliance

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/astral"
	"treasuryd/internal/config"
	"treasuryd/internal/metrics"
)

// Opener is the gate as its consumers see it: open, or closed with a reason.
type Opener interface {
	Open() (bool, string)
}

// Module provides the gate, refreshed between OnStart and OnStop, as *Gate
// and as the Opener the accept and withdrawal paths consult. It is the gate
// even when the policy disables compliance: it reads the current policy at
// every decision and refresh (and does no I/O while disabled), so a reload
// that enables compliance closes it until a proof passes. The app supplies
// Endpoints (empty outside the sandbox).
var Module = fx.Module("compliance",
	fx.Provide(func(lc fx.Lifecycle, log *zap.Logger, m *metrics.Metrics, c *astral.Client, r *config.Reloader, ep Endpoints) *Gate {
		g := New(Deps{Log: log.Named("compliance"), Metrics: m, Client: c, Endpoints: ep,
			Config: func() config.Compliance { return r.Current().Compliance }})
		lc.Append(fx.StartStopHook(g.Start, g.Stop))
		return g
	}),
	fx.Provide(func(g *Gate) Opener { return g }),
)
