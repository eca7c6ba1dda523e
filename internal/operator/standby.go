package operator

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"treasuryd/internal/metrics"
)

// Standby serves a process that does not lead (SPEC 11): /healthz (it is
// alive), /metrics (treasuryd_leader 0), /status with "role": "standby", and
// /readyz answering 503, so a Service routes the console to the leader. It
// serves no admin route and no console: nothing a standby could act on.
type Standby struct {
	listen string
	lease  time.Duration
	log    *zap.Logger
	m      *metrics.Metrics
	since  time.Time

	mu   sync.Mutex
	srv  *http.Server
	addr string
	done chan struct{}
}

// NewStandby returns the standby's server for http.listen; it does no I/O.
func NewStandby(listen string, lease time.Duration, m *metrics.Metrics, log *zap.Logger) *Standby {
	return &Standby{listen: listen, lease: lease, m: m, log: log, since: time.Now()}
}

// Handler is the standby's routes.
func (s *Standby) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.m.Registry, promhttp.HandlerOpts{Registry: s.m.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not ready: standby (another process leads)", http.StatusServiceUnavailable)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{
			"time":          time.Now().UTC().Format(time.RFC3339Nano),
			"role":          "standby",
			"standby_since": s.since.UTC().Format(time.RFC3339Nano),
			"lease":         s.lease.String(),
		})
	})
	return mux
}

// Start listens and serves in the background.
func (s *Standby) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.listen)
	if err != nil {
		return err
	}
	s.m.Leader.Set(0)
	s.m.LeaderTerm.Set(0)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addr = ln.Addr().String()
	s.srv = newHTTPServer(s.Handler())
	s.done = make(chan struct{})
	srv, done := s.srv, s.done
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("standby http server stopped", zap.Error(err))
		}
	}()
	s.log.Info("standby: http listening", zap.String("addr", s.addr))
	return nil
}

// Addr is the bound address once started.
func (s *Standby) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop closes the listener and waits for the server; safe twice.
func (s *Standby) Stop(ctx context.Context) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	<-done
	return err
}
