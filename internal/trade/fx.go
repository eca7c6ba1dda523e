package trade

import (
	"go.uber.org/fx"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/balances"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/quotes"
	"treasuryd/internal/strategy"
)

// moduleDeps are the runner's fx inputs; the recorder is optional (absent or
// nil: nothing recorded).
type moduleDeps struct {
	fx.In
	Lifecycle fx.Lifecycle
	Log       *zap.Logger
	Metrics   *metrics.Metrics
	Journal   *journal.Journal
	Client    *astra.Client
	Book      *balances.Book
	Gate      Gate
	Pause     Pauser
	Reloader  *config.Reloader
	Recorder  strategy.RecordFunc `optional:"true"`
}

// Module provides the Runner: state restored from the journal and streams
// opened in OnStart; decisions stopped and in-flight accepts finished (or
// journaled unknown) in OnStop. A reload builds the programs it adds before
// the new policy becomes current, and restarts only changed programs.
var Module = fx.Module("trade",
	fx.Provide(func(in moduleDeps) *Runner {
		e := New(Deps{Log: in.Log.Named("trade"), Metrics: in.Metrics, Journal: in.Journal, Desk: in.Client,
			Book: in.Book, Gate: in.Gate, Pause: in.Pause, Policy: in.Reloader.Current(), Recorder: in.Recorder,
			MayAct:        in.Journal.MayAct,
			StreamOptions: quotes.Options{StaleAfter: in.Reloader.Current().Astra.StreamStaleAfter}})
		in.Reloader.Prepare(func(_, next *config.Policy) (func(), error) { return e.Prepare(next) })
		in.Lifecycle.Append(fx.StartStopHook(e.Start, e.Stop))
		return e
	}),
)
