package operator

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"treasuryd/internal/metrics"
)

func TestStandbyIsAliveNotReadyAndSaysSo(t *testing.T) {
	m := metrics.New("test")
	m.Leader.Set(1)
	s := NewStandby("127.0.0.1:0", 10*time.Second, m, zap.NewNop())
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop(context.Background())
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "standby") {
		t.Errorf("/readyz %d %q", code, body)
	}
	code, body := get("/status")
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || st["role"] != "standby" {
		t.Errorf("/status %d %q", code, body)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "treasuryd_leader 0") {
		t.Errorf("/metrics %d lacks treasuryd_leader 0", code)
	}
	if testutil.ToFloat64(m.Leader) != 0 {
		t.Error("treasuryd_leader is not 0 on a standby")
	}
	for _, p := range []string{"/pause", "/resume"} {
		resp, err := http.Post("http://"+s.Addr()+p, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("POST %s on a standby: %d", p, resp.StatusCode)
		}
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal("second Stop:", err)
	}
}

// A leader's /status says so and names its fencing term.
func TestLeaderStatusNamesRoleAndTerm(t *testing.T) {
	m := metrics.New("test")
	sw := NewSwitch(nil, m)
	src := Sources{Term: func() int64 { return 7 }}
	h := New(Config{}, zap.NewNop(), m, sw, src).Handler()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/status", nil))
	rec := w.Body.Bytes()
	var st struct {
		Role string `json:"role"`
		Term int64  `json:"term"`
	}
	if err := json.Unmarshal(rec, &st); err != nil || st.Role != "leader" || st.Term != 7 {
		t.Fatalf("/status role %q term %d (%v): %s", st.Role, st.Term, err, rec)
	}
}
