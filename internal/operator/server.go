// Package operator is treasuryd's HTTP surface (SPEC 4): Prometheus metrics,
// liveness and readiness, the JSON status page, and the authenticated kill
// switch.
package operator

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"treasuryd/internal/metrics"
)

// Sources feed /status and /readyz; any may be nil.
type Sources struct {
	Programs    func() any
	Compliance  func() any
	Withdrawals func() any
	Reconcile   func() any
	// Authority: the authority hold and the widening changes it holds.
	Authority func() any
	// Audit is the audit chain's head (SPEC 13): sequence and hash.
	Audit func() any
	// Ready lists the readiness conditions by name.
	Ready map[string]func() bool
	// Alive reports whether the process's loops are running.
	Alive func() bool
	// ResolveWithdrawal is an operator's answer for an unresolved
	// withdrawal: the desk id they found, or "" for never executed.
	ResolveWithdrawal func(ctx context.Context, id int64, deskID, by string) error
	// Term is the fencing term this process leads under (SPEC 11; 1 on
	// SQLite). A Server serves a leader: a standby serves Standby.
	Term func() int64
}

// Config is the server's slice of the policy.
type Config struct {
	Listen string
	// AdminListen, when set, is the only address serving the admin routes;
	// Listen then serves none of them.
	AdminListen string
	AdminToken  string // "" disables the admin routes
}

// Timeouts of both listeners. Every request treasuryd serves is small and
// answered from memory, so anything slower is a stuck or hostile client
// holding a connection (and a goroutine) open.
const (
	// readHeaderTimeout: request headers fit in one packet; a client still
	// sending them after this is a slowloris.
	readHeaderTimeout = 5 * time.Second
	// readTimeout: headers plus a body of at most a few KiB (the admin
	// routes read 4 KiB at most).
	readTimeout = 10 * time.Second
	// writeTimeout: /metrics and /status are built in milliseconds; this
	// leaves a slow scraper on a bad link room to read them.
	writeTimeout = 30 * time.Second
	// idleTimeout: above a Prometheus scrape interval (15s to 30s), so a
	// scraper's keep-alive connection is reused rather than re-dialled.
	idleTimeout = 90 * time.Second
)

// Refused admin attempts are logged at most authLogBurst at once and then
// one per authLogEvery: an attacker hammering the admin port must not flood
// the logs (the counter still counts every one).
const (
	authLogEvery = 10 * time.Second
	authLogBurst = 5
)

// Server serves the operator routes.
type Server struct {
	cfg     Config
	log     *zap.Logger
	metrics *metrics.Metrics
	pause   *Switch
	src     Sources

	authLog        *rate.Limiter
	authSuppressed atomic.Int64 // refused attempts not logged since the last one logged

	mu        sync.Mutex
	srvs      []*http.Server
	addr      string
	adminAddr string
	done      []chan struct{}
}

// New builds the server; no I/O.
func New(cfg Config, log *zap.Logger, m *metrics.Metrics, pause *Switch, src Sources) *Server {
	return &Server{cfg: cfg, log: log, metrics: m, pause: pause, src: src,
		authLog: rate.NewLimiter(rate.Every(authLogEvery), authLogBurst)}
}

// Handler is the route table of http.listen (also used by tests without a
// listener): with http.admin_listen set it holds no admin route.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.Registry, promhttp.HandlerOpts{Registry: s.metrics.Registry}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("GET /{$}", s.console)
	if s.cfg.AdminListen == "" {
		s.adminRoutes(mux)
	}
	return mux
}

// AdminHandler is the route table of http.admin_listen: the admin routes
// only.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	s.adminRoutes(mux)
	return mux
}

func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /pause", s.admin(true))
	mux.HandleFunc("POST /resume", s.admin(false))
	mux.HandleFunc("POST /withdrawals/{id}/resolve", s.resolve)
}

// newHTTPServer is an http.Server with the timeouts above.
func newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout}
}

// Start listens on http.listen (and http.admin_listen when set) and serves
// in the background.
func (s *Server) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return err
	}
	var adminLn net.Listener
	if s.cfg.AdminListen != "" {
		if adminLn, err = net.Listen("tcp", s.cfg.AdminListen); err != nil {
			ln.Close()
			return fmt.Errorf("admin listener: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addr = ln.Addr().String()
	s.serve(newHTTPServer(s.Handler()), ln)
	s.log.Info("http listening", zap.String("addr", s.addr), zap.Bool("admin_routes", adminLn == nil))
	if adminLn != nil {
		s.adminAddr = adminLn.Addr().String()
		s.serve(newHTTPServer(s.AdminHandler()), adminLn)
		s.log.Info("admin http listening", zap.String("addr", s.adminAddr))
	}
	return nil
}

// serve runs srv on ln in the background. Called with s.mu held.
func (s *Server) serve(srv *http.Server, ln net.Listener) {
	done := make(chan struct{})
	s.srvs = append(s.srvs, srv)
	s.done = append(s.done, done)
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", zap.String("addr", ln.Addr().String()), zap.Error(err))
		}
	}()
}

// Addr is the bound address of http.listen once started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// AdminAddr is the bound address of http.admin_listen once started ("" when
// not set).
func (s *Server) AdminAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.adminAddr
}

// Stop shuts the servers down; safe twice.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	srvs, done := s.srvs, s.done
	s.srvs, s.done = nil, nil
	s.mu.Unlock()
	var errs []error
	for _, srv := range srvs {
		errs = append(errs, srv.Shutdown(ctx))
	}
	for _, d := range done {
		<-d
	}
	return errors.Join(errs...)
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
		"pause_reason":   s.pause.Reason(),
		"programs":       call(s.src.Programs),
		"compliance":     call(s.src.Compliance),
		"withdrawals":    call(s.src.Withdrawals),
		"reconciliation": call(s.src.Reconcile),
		"authority":      call(s.src.Authority),
		"audit":          call(s.src.Audit),
		"role":           "leader",
	}
	if s.src.Term != nil {
		body["term"] = s.src.Term()
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
		s.refused(r, "no admin token is configured")
		http.Error(w, "admin endpoints are disabled: no admin token is configured", http.StatusForbidden)
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	// Compared as SHA-256 digests in constant time: the time taken depends
	// neither on where the two differ nor on their lengths.
	gotSum, wantSum := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(s.cfg.AdminToken))
	if !ok || subtle.ConstantTimeCompare(gotSum[:], wantSum[:]) != 1 {
		why := "wrong bearer token"
		if !ok {
			why = "no bearer token"
		}
		s.refused(r, why)
		w.Header().Set("WWW-Authenticate", `Bearer realm="treasuryd"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return false
	}
	return true
}

// refused counts a refused admin attempt and logs it at a limited rate,
// with what it tried and from where; never the header it sent.
func (s *Server) refused(r *http.Request, why string) {
	s.metrics.AdminAuthFailures.Inc()
	if !s.authLog.Allow() {
		s.authSuppressed.Add(1)
		return
	}
	s.log.Warn("admin request refused", zap.String("reason", why), zap.String("remote", r.RemoteAddr),
		zap.String("route", r.Pattern), zap.Int64("suppressed_since_last", s.authSuppressed.Swap(0)))
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
		note, err := adminNote(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := s.pause.SetWithNote(r.Context(), pause, "http "+r.RemoteAddr, note); err != nil {
			s.log.Error("kill switch not changed", zap.Bool("pause", pause), zap.Error(err))
			http.Error(w, "could not persist the pause flag", http.StatusInternalServerError)
			return
		}
		s.log.Warn("kill switch changed", zap.Bool("paused", pause), zap.String("remote", r.RemoteAddr),
			zap.String("note", note))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]bool{"paused": pause})
	}
}

// maxNoteLen bounds the operator's note on /pause and /resume: a sentence,
// not a document (it is persisted and shown in /status and the console).
const maxNoteLen = 200

// adminNote reads the optional body {"reason": "..."} of /pause and /resume.
// An empty body is no note.
func adminNote(r *http.Request) (string, error) {
	var body struct {
		Reason string `json:"reason"`
	}
	// Other fields are ignored: the note is the only thing read from it.
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<10))
	if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf(`body must be empty or {"reason": "..."}: %v`, err)
	}
	note := strings.TrimSpace(body.Reason)
	if len(note) > maxNoteLen {
		return "", fmt.Errorf("reason is %d bytes; at most %d", len(note), maxNoteLen)
	}
	for _, c := range note {
		if c < 0x20 || c == 0x7f {
			return "", errors.New("reason must be one line of printable text")
		}
	}
	return note, nil
}
