package astra

import (
	"time"

	"go.uber.org/fx"
)

// Module provides the desk client built from Options (supplied by the app).
// The client has no lifecycle: it opens connections on demand.
var Module = fx.Module("astra",
	fx.Provide(func(o Options) (*Client, error) { return New(o) }),
)

// ObserveFunc adapts a metrics hook with an api label to Options.Observe.
func ObserveFunc(f func(api, endpoint, code string, seconds float64)) func(endpoint, code string, d time.Duration) {
	return func(endpoint, code string, d time.Duration) { f("astra", endpoint, code, d.Seconds()) }
}
