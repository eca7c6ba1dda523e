package authority

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
)

// Module provides the Keeper, installed as the Reloader's admission hook
// when built. Its OnStart admits the file's policy, so the app must build it
// right after the journal (whose OnStart opens the file) and before any part
// that acts on the policy: cmd/treasuryd invokes it first.
var Module = fx.Module("authority",
	fx.Provide(func(lc fx.Lifecycle, j *journal.Journal, r *config.Reloader, log *zap.Logger, m *metrics.Metrics) *Keeper {
		k := New(Deps{Log: log.Named("authority"), Metrics: m, Journal: j, Reloader: r})
		lc.Append(fx.StartStopHook(k.Start, k.Stop))
		return k
	}),
)
