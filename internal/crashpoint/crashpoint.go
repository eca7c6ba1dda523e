// Package crashpoint kills the process at a named point, so that tests can
// prove what survives a real kill -9 between two steps of moving money
// (journal → POST → record the result).
//
// It exists for crash tests only and is inert unless the environment variable
// TREASURYD_CRASHPOINT is set when the process starts: then the one Hit whose
// name equals its value sends SIGKILL to the process itself. Nothing is
// flushed, no deferred function runs, no shutdown hook fires, exactly as when
// an operator or the kernel kills the daemon. Unset (always, in production),
// Hit costs one comparison with a cached string and never allocates.
package crashpoint

import "os"

// EnvVar names the environment variable that arms a crash point.
const EnvVar = "TREASURYD_CRASHPOINT"

// armed is read once: Hit sits on the accept and withdrawal paths and must not
// look the environment up each time.
var armed = os.Getenv(EnvVar)

// Hit kills the process with SIGKILL if TREASURYD_CRASHPOINT equals name, and
// otherwise returns at once.
func Hit(name string) {
	if name != armed || armed == "" {
		return
	}
	kill()
}
