//go:build pprof

package main

// Built only with -tags pprof, for profiling (the side-by-side benchmark's
// TREASURYD_SIDEBYSIDE_BIN): TREASURYD_PPROF_LISTEN=127.0.0.1:6060 serves
// net/http/pprof there. A production build has no such listener.

import (
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
)

func init() {
	if addr := os.Getenv("TREASURYD_PPROF_LISTEN"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
