package operator

import (
	"net/http"
	"testing"
	"time"
)

// TestServersHaveEveryTimeout: a server without one of them lets a client
// hold a connection and its goroutine open forever.
func TestServersHaveEveryTimeout(t *testing.T) {
	srv := newHTTPServer(http.NotFoundHandler())
	for name, d := range map[string]time.Duration{
		"ReadHeaderTimeout": srv.ReadHeaderTimeout, "ReadTimeout": srv.ReadTimeout,
		"WriteTimeout": srv.WriteTimeout, "IdleTimeout": srv.IdleTimeout,
	} {
		if d <= 0 {
			t.Errorf("%s is not set", name)
		}
	}
}
