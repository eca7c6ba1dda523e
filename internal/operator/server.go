// Package operator is treasuryd's HTTP surface (SPEC 4): Prometheus metrics,
// liveness and readiness, the JSON status page, and the authenticated kill
// switch.
package operator

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"treasuryd/internal/metrics"
)

// Sources feed /status and /readyz; any may be nil.
type Sources struct {
	Programs    func() any
	Compliance  func() any
	Withdrawals func() any
	Reconcile   func() any
	// Audit is the audit chain's head (SPEC 13): sequence and hash.
	Audit func() any
	// Ready lists the readiness conditions by name.
	Ready map[string]func() bool
	// Alive reports whether the process's loops are running.
	Alive func() bool
	// ResolveWithdrawal is an operator's answer for an unresolved
	// withdrawal: the desk id they found, or "" for never executed.
	ResolveWithdrawal func(ctx context.Context, id int64, deskID, by string) error
}

// Config is the server's slice of the policy.
type Config struct {
	Listen     string
	AdminToken string // "" disables /pause and /resume
}

// Server serves the operator routes.
type Server struct {
	cfg     Config
	log     *zap.Logger
	metrics *metrics.Metrics
	pause   *Switch
	src     Sources

	mu   sync.Mutex
	srv  *http.Server
	addr string
	done chan struct{}
}

// New builds the server; no I/O.
func New(cfg Config, log *zap.Logger, m *metrics.Metrics, pause *Switch, src Sources) *Server {
	return &Server{cfg: cfg, log: log, metrics: m, pause: pause, src: src}
}

// Handler is the route table (also used by tests without a listener).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{Registry: s.metrics.Registry}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("POST /pause", s.admin(true))
	mux.HandleFunc("POST /resume", s.admin(false))
	mux.HandleFunc("POST /withdrawals/{id}/resolve", s.resolve)
	return mux
}

// Start listens and serves in the background.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	s.addr = ln.Addr().String()
	s.done = make(chan struct{})
	srv, done := s.srv, s.done
	s.mu.Unlock()
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", zap.Error(err))
		}
	}()
	s.log.Info("http listening", zap.String("addr", s.addr))
	return nil
}

// Addr is the bound address once started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stop shuts the server down; safe twice.
func (s *Server) Stop(ctx context.Context) error {
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

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if s.src.Alive != nil && !s.src.Alive() {
		http.Error(w, "not alive", http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	var missing []string
	for name, ok := range s.src.Ready {
		if !ok() {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		http.Error(w, "not ready: "+strings.Join(missing, ", "), http.StatusServiceUnavailable)
		return
	}
	w.Write([]byte("ok\n"))
}

func call(f func() any) any {
	if f == nil {
		return nil
	}
	return f()
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	body := map[string]any{
		"time":           time.Now().UTC().Format(time.RFC3339Nano),
		"paused":         s.pause.Paused(),
		"programs":       call(s.src.Programs),
		"compliance":     call(s.src.Compliance),
		"withdrawals":    call(s.src.Withdrawals),
		"reconciliation": call(s.src.Reconcile),
		"audit":          call(s.src.Audit),
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(body); err != nil {
		s.log.Warn("write /status", zap.Error(err))
	}
}

// authorized checks the bearer admin token, answering the request when it
// fails. The token is compared in constant time and never logged.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.AdminToken == "" {
		http.Error(w, "admin endpoints are disabled: no admin token is configured", http.StatusForbidden)
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.AdminToken)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="treasuryd"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return false
	}
	return true
}

// resolve serves POST /withdrawals/{id}/resolve: {"desk_id": "..."} when the
// operator found the request at the desk, {"never_executed": true} when they
// know it never ran. Either lets the rule run again.
func (s *Server) resolve(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	if s.src.ResolveWithdrawal == nil {
		http.Error(w, "no withdrawals in this daemon", http.StatusNotFound)
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		http.Error(w, "withdrawal id must be a positive integer", http.StatusBadRequest)
		return
	}
	var body struct {
		DeskID        string `json:"desk_id"`
		NeverExecuted bool   `json:"never_executed"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || (body.DeskID == "") == !body.NeverExecuted {
		http.Error(w, `body must be {"desk_id": "..."} or {"never_executed": true}`, http.StatusBadRequest)
		return
	}
	if err := s.src.ResolveWithdrawal(r.Context(), id, body.DeskID, "http "+r.RemoteAddr); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"id": id, "resolved": true})
}

// admin serves /pause and /resume behind the bearer token.
func (s *Server) admin(pause bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.authorized(w, r) {
			return
		}
		if err := s.pause.Set(r.Context(), pause, "http "+r.RemoteAddr); err != nil {
			s.log.Error("kill switch not changed", zap.Bool("pause", pause), zap.Error(err))
			http.Error(w, "could not persist the pause flag", http.StatusInternalServerError)
			return
		}
		s.log.Warn("kill switch changed", zap.Bool("paused", pause), zap.String("remote", r.RemoteAddr))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]bool{"paused": pause})
	}
}
