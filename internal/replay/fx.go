package replay

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/strategy"
)

// Module provides the recorder as the accept path's strategy.RecordFunc:
// its writer starts in OnStart and flushes what is queued in OnStop (after
// the runner, which depends on it, has stopped deciding). With
// state.quote_retention 0 it provides nil: nothing is recorded. A reload
// changes the retention; one to 0 stops recording.
var Module = fx.Module("replay",
	fx.Provide(func(lc fx.Lifecycle, p *config.Policy, rl *config.Reloader, j *journal.Journal,
		m *metrics.Metrics, log *zap.Logger) strategy.RecordFunc {
		if p.State.QuoteRetention <= 0 {
			return nil
		}
		r := NewRecorder(RecorderOptions{Store: j, Retention: p.State.QuoteRetention, Dropped: m.RecorderDropped,
			Log: log.Named("recorder")})
		rl.Subscribe(func(_, next *config.Policy) { r.SetRetention(next.State.QuoteRetention) })
		lc.Append(fx.StartStopHook(r.Start, r.Stop))
		return r.Record
	}),
)
