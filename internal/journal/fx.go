package journal

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/metrics"
)

// Path is the journal file's path (state.path).
type Path string

// Module provides the journal, opened in OnStart and closed in OnStop.
var Module = fx.Module("journal",
	fx.Provide(func(lc fx.Lifecycle, path Path, log *zap.Logger, m *metrics.Metrics) *Journal {
		j := New(string(path))
		j.SetLogger(log.Named("journal"))
		j.SetAuditCounter(m.AuditEntries)
		lc.Append(fx.StartStopHook(j.Start, j.Stop))
		return j
	}),
)
