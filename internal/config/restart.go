package config

import "reflect"

// restartOnly names the parts of a policy that a running daemon built its
// connections, files and listeners from. A reload that changes one is
// refused (the running policy stays): applying half of it, say a new account
// on streams while withdrawals still use the old one, would be worse than
// applying none. They take effect on restart.
func restartOnly(old, new *Policy) []string {
	var changed []string
	check := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			changed = append(changed, name)
		}
	}
	check("account_id", old.AccountID, new.AccountID)
	check("astra", old.Astra, new.Astra)
	check("astral", old.Astral, new.Astral)
	check("state.path", old.State.Path, new.State.Path)
	check("state.postgres_dsn_env", old.State.PostgresDSNEnv, new.State.PostgresDSNEnv)
	check("ha", old.HA, new.HA)
	// Recording is wired at start: a new retention applies at once, but
	// turning it on or off takes a restart.
	check("state.quote_retention (recording on or off)", old.State.QuoteRetention == 0, new.State.QuoteRetention == 0)
	check("http", old.HTTP, new.HTTP)
	check("shutdown_timeout", old.ShutdownTimeout, new.ShutdownTimeout)
	check("sandbox", old.Sandbox, new.Sandbox)
	check("reconcile.schedule", old.Reconcile.Schedule, new.Reconcile.Schedule)
	return changed
}
