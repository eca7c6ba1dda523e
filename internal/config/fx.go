package config

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/metrics"
)

// Path is the policy file's path, supplied by cmd/treasuryd.
type Path string

// Module provides the running policy's Reloader; the initial *Policy is
// supplied by the caller, who loaded it before building the app.
var Module = fx.Module("config",
	fx.Provide(func(lc fx.Lifecycle, path Path, p *Policy, log *zap.Logger, m *metrics.Metrics) *Reloader {
		r := NewReloader(string(path), p, log.Named("config"), func(ok bool) {
			result := "ok"
			if !ok {
				result = "error"
			}
			m.ConfigReloads.WithLabelValues(result).Inc()
		})
		lc.Append(fx.StartStopHook(r.Start, r.Stop))
		return r
	}),
)
