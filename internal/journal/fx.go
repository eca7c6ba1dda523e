package journal

import (
	"go.uber.org/fx"
)

// Path is the journal file's path (state.path).
type Path string

// Module provides the journal, opened in OnStart and closed in OnStop.
var Module = fx.Module("journal",
	fx.Provide(func(lc fx.Lifecycle, path Path) *Journal {
		j := New(string(path))
		lc.Append(fx.StartStopHook(j.Start, j.Stop))
		return j
	}),
)
