package strategy

import (
	"time"

	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/quotes"
)

// RecordFunc is the type of Deps.Recorder, as fx provides it (the replay
// recorder's Record method). A nil one records nothing.
type RecordFunc func(program string, frame []byte, at time.Time, env Env, outcome string)

// moduleDeps are the engine's fx inputs; the recorder is optional (absent or
// nil: nothing recorded).
type moduleDeps struct {
	fx.In
	Lifecycle fx.Lifecycle
	Log       *zap.Logger
	Metrics   *metrics.Metrics
	Journal   *journal.Journal
	Client    *astra.Client
	Gate      Gate
	Pause     Pauser
	Reloader  *config.Reloader
	Recorder  RecordFunc `optional:"true"`
}

// Module provides the Engine: state restored from the journal and streams
// opened in OnStart; decisions stopped and in-flight accepts finished (or
// journaled unknown) in OnStop. Reloads restart only changed programs.
var Module = fx.Module("strategy",
	fx.Provide(func(in moduleDeps) *Engine {
		e := New(Deps{Log: in.Log.Named("strategy"), Metrics: in.Metrics, Journal: in.Journal, Desk: in.Client,
			Gate: in.Gate, Pause: in.Pause, Policy: in.Reloader.Current(), Recorder: in.Recorder,
			StreamOptions: quotes.Options{StaleAfter: in.Reloader.Current().Astra.StreamStaleAfter}})
		in.Reloader.Subscribe(func(_, next *config.Policy) { e.Apply(next) })
		in.Lifecycle.Append(fx.StartStopHook(e.Start, e.Stop))
		return e
	}),
)
