package astral

import (
	"time"

	"go.uber.org/fx"
)

// Module provides the Astral client built from Options (supplied by the app).
var Module = fx.Module("astral",
	fx.Provide(func(o Options) *Client { return New(o) }),
)

// ObserveFunc adapts a metrics hook with an api label to Options.Observe.
func ObserveFunc(f func(api, endpoint, code string, seconds float64)) func(endpoint, code string, d time.Duration) {
	return func(endpoint, code string, d time.Duration) { f("astral", endpoint, code, d.Seconds()) }
}
