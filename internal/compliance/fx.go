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

// Module provides the gate (*Gate, refreshed between OnStart and OnStop) and
// the Opener the accept and withdrawal paths consult: the gate itself when
// compliance is enabled, AlwaysOpen when the policy disables it.
var Module = fx.Module("compliance",
	fx.Provide(func(lc fx.Lifecycle, log *zap.Logger, m *metrics.Metrics, c *astral.Client, r *config.Reloader) *Gate {
		g := New(Deps{Log: log.Named("compliance"), Metrics: m, Client: c, Config: func() config.Compliance { return r.Current().Compliance }})
		if r.Current().Compliance.Enabled {
			lc.Append(fx.StartStopHook(g.Start, g.Stop))
		}
		return g
	}),
	fx.Provide(func(g *Gate, r *config.Reloader, m *metrics.Metrics) Opener {
		if r.Current().Compliance.Enabled {
			return g
		}
		m.ComplianceGateOpen.Set(1)
		return AlwaysOpen{}
	}),
)
