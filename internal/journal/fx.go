package journal

import (
	"go.uber.org/fx"
	"go.uber.org/zap"
)

// Path is the journal file's path (state.path).
type Path string

// Module provides the journal, opened in OnStart and closed in OnStop.
var Module = fx.Module("journal",
	fx.Provide(func(lc fx.Lifecycle, path Path, log *zap.Logger) *Journal {
		j := New(string(path))
		j.SetLogger(log.Named("journal"))
		lc.Append(fx.StartStopHook(j.Start, j.Stop))
		return j
	}),
)
