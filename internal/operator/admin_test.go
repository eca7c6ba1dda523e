package operator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"treasuryd/internal/metrics"
	"treasuryd/internal/operator"
)

// startServer runs a real server on loopback with cfg's listeners.
func startServer(t *testing.T, cfg operator.Config, log *zap.Logger) (*operator.Server, *operator.Switch, *metrics.Metrics) {
	t.Helper()
	m := metrics.New("test")
	sw := operator.NewSwitch(&memStore{}, m)
	if err := sw.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := operator.New(cfg, log, m, sw, operator.Sources{})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	return srv, sw, m
}

func post(t *testing.T, addr, path, auth string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(`{"never_executed":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminRoutesOnlyOnAdminListen(t *testing.T) {
	srv, sw, _ := startServer(t, operator.Config{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", AdminToken: token},
		zap.NewNop())
	main, admin := srv.Addr(), srv.AdminAddr()
	if admin == "" || admin == main {
		t.Fatalf("admin listener %q beside main %q", admin, main)
	}
	for _, path := range []string{"/pause", "/resume", "/withdrawals/7/resolve"} {
		code, _ := post(t, main, path, "Bearer "+token)
		if code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s on http.listen with the right token: %d; want 404 or 405", path, code)
		}
	}
	if sw.Paused() {
		t.Fatal("paused through http.listen although http.admin_listen is set")
	}
	if code, body := post(t, admin, "/pause", "Bearer "+token); code != http.StatusOK {
		t.Fatalf("POST /pause on the admin listener: %d %s", code, body)
	}
	if !sw.Paused() || sw.Reason() != operator.ReasonOperator {
		t.Fatalf("after /pause on the admin listener: paused %v, reason %q", sw.Paused(), sw.Reason())
	}
	// The admin listener serves nothing else.
	resp, err := http.Get("http://" + admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /status on the admin listener: %d; want 404", resp.StatusCode)
	}
	// And /status on the main port shows the pause and its reason.
	resp, err = http.Get("http://" + main + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Paused      bool   `json:"paused"`
		PauseReason string `json:"pause_reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if !st.Paused || st.PauseReason != operator.ReasonOperator {
		t.Fatalf("/status: %+v", st)
	}
}

func TestAdminRoutesOnMainListenWithoutAdminListen(t *testing.T) {
	srv, sw, _ := startServer(t, operator.Config{Listen: "127.0.0.1:0", AdminToken: token}, zap.NewNop())
	if srv.AdminAddr() != "" {
		t.Fatalf("an admin listener %q without http.admin_listen", srv.AdminAddr())
	}
	if code, body := post(t, srv.Addr(), "/pause", "Bearer "+token); code != http.StatusOK || !sw.Paused() {
		t.Fatalf("POST /pause on http.listen: %d %s, paused %v", code, body, sw.Paused())
	}
}

func TestRefusedAdminAttemptsAreCountedAndLoggedAtALimitedRate(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	srv, sw, m := startServer(t, operator.Config{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", AdminToken: token},
		zap.New(core))
	const attempts = 40
	for i := range attempts {
		auth := []string{"", "Bearer wrong-" + token, "Basic " + token, "Bearer " + token[:len(token)-1]}[i%4]
		path := []string{"/pause", "/resume", "/withdrawals/3/resolve"}[i%3]
		if code, _ := post(t, srv.AdminAddr(), path, auth); code != http.StatusUnauthorized {
			t.Fatalf("attempt %d (%s): %d; want 401", i, path, code)
		}
	}
	if sw.Paused() {
		t.Fatal("a refused attempt changed the switch")
	}
	if got := testutil.ToFloat64(m.AdminAuthFailures); got != attempts {
		t.Fatalf("treasuryd_admin_auth_failures_total = %v; want %d", got, attempts)
	}
	refused := logs.FilterMessage("admin request refused").All()
	// A burst of 5, then one per 10s: a slow machine may add one more.
	if len(refused) == 0 || len(refused) > 6 {
		t.Fatalf("%d refused attempts logged %d times; want between 1 and 6", attempts, len(refused))
	}
	for _, e := range refused {
		f := e.ContextMap()
		if f["remote"] == "" || !strings.HasPrefix(fmt.Sprint(f["route"]), "POST /") {
			t.Errorf("log entry without remote or route: %v", f)
		}
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), token[:12]) {
			t.Fatalf("the admin token (or what was sent as it) is in the log: %v", e.ContextMap())
		}
	}
}

func TestNoTokenConfiguredCountsRefusals(t *testing.T) {
	srv, _, m := startServer(t, operator.Config{Listen: "127.0.0.1:0"}, zap.NewNop())
	if code, _ := post(t, srv.Addr(), "/pause", "Bearer "+token); code != http.StatusForbidden {
		t.Fatalf("POST /pause with admin routes disabled: %d; want 403", code)
	}
	if got := testutil.ToFloat64(m.AdminAuthFailures); got != 1 {
		t.Fatalf("treasuryd_admin_auth_failures_total = %v; want 1", got)
	}
}

// TestSlowHeadersAreCutOff: a slowloris client that never finishes its
// headers is disconnected by the read-header timeout, on both listeners.
func TestSlowHeadersAreCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 5s read-header timeout")
	}
	srv, _, _ := startServer(t, operator.Config{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", AdminToken: token},
		zap.NewNop())
	for _, addr := range []string{srv.Addr(), srv.AdminAddr()} {
		t.Run(addr, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, "POST /pause HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			// Never finish: the server must close the connection (possibly
			// after a 408) well before the test's own limit.
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err = io.Copy(io.Discard, bufio.NewReader(c))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("connection still open after %s of unfinished headers", time.Since(start).Round(time.Second))
			}
			if el := time.Since(start); el > 8*time.Second { // the 5s read-header timeout, with room for a slow machine
				t.Fatalf("cut off only after %s", el)
			}
		})
	}
}
