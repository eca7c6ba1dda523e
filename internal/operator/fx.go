package operator

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
)

// Module provides the kill switch (loaded from the journal in OnStart, before
// anything that consults it starts) and the HTTP server (listening between
// OnStart and OnStop). Config and Sources are supplied by the app.
var Module = fx.Module("operator",
	fx.Provide(func(lc fx.Lifecycle, j *journal.Journal, m *metrics.Metrics, log *zap.Logger) *Switch {
		s := NewSwitch(j, m)
		s.SetLogger(log.Named("pause"))
		lc.Append(fx.Hook{OnStart: s.Load})
		return s
	}),
	fx.Provide(func(lc fx.Lifecycle, cfg Config, log *zap.Logger, m *metrics.Metrics, s *Switch, src Sources) *Server {
		srv := New(cfg, log.Named("http"), m, s, src)
		lc.Append(fx.StartStopHook(srv.Start, srv.Stop))
		return srv
	}),
)
