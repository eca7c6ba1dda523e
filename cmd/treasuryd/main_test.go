package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the treasuryd binary built once for the tests that run it as a
// user would.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "treasuryd-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "treasuryd")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback address nothing listens on, for a process the
// test starts to bind later. Its port is drawn from below the kernel's
// ephemeral range, so a listener on port 0 (the sandbox's simulators, the
// tests' own fakes) or an outgoing connection can never take it between this
// call and the child's bind; and no port is handed out twice in one run.
func freePort(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	lo, hi := staticPortRange()
	for tries := 0; tries < 1000; tries++ {
		p := lo + rand.IntN(hi-lo)
		if portsGiven[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		portsGiven[p] = true
		return fmt.Sprintf("127.0.0.1:%d", p)
	}
	t.Fatalf("no free port in [%d, %d) after 1000 tries", lo, hi)
	return ""
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// staticPortRange is the range freePort draws from: the 12,000 ports below
// the kernel's ephemeral range (Linux's default starts it at 32768).
func staticPortRange() (lo, hi int) {
	hi = 32768
	if raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(raw)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 2048 {
				hi = n
			}
		}
	}
	lo = hi - 12000
	if lo < 1024 {
		lo = 1024
	}
	return lo, hi
}

// sandboxPolicy writes configs/sandbox.yaml with its listener and journal
// moved to a free port and a temp dir, after edits.
func sandboxPolicy(t *testing.T, dir string, edits ...func(string) string) (path, addr string) {
	t.Helper()
	raw, err := os.ReadFile("../../configs/sandbox.yaml")
	if err != nil {
		t.Fatal(err)
	}
	addr = freePort(t)
	s := string(raw)
	s = strings.Replace(s, `listen: "127.0.0.1:8080"`, fmt.Sprintf("listen: %q", addr), 1)
	s = strings.Replace(s, `path: "treasuryd-sandbox.db"`, fmt.Sprintf("path: %q", filepath.Join(dir, "journal.db")), 1)
	s = strings.Replace(s, "shutdown_timeout: 15s", "shutdown_timeout: 5s", 1)
	for _, e := range edits {
		s = e(s)
	}
	path = filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, addr
}

// daemon is a running treasuryd process.
type daemon struct {
	cmd  *exec.Cmd
	addr string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{}
	err  error
}

func (d *daemon) Logs() string { d.mu.Lock(); defer d.mu.Unlock(); return d.logs.String() }

func startDaemon(t *testing.T, policy, addr string, env ...string) *daemon {
	t.Helper()
	cmd := exec.Command(binary, "run", "-config", policy)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, addr: addr, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			d.mu.Lock()
			d.logs.Write(sc.Bytes())
			d.logs.WriteByte('\n')
			d.mu.Unlock()
		}
		d.err = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("daemon logs:\n%s", tail(d.Logs(), 60))
		}
	})
	return d
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

func (d *daemon) get(path string) (int, string) {
	resp, err := http.Get("http://" + d.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (d *daemon) post(path, token string) int {
	req, _ := http.NewRequest(http.MethodPost, "http://"+d.addr+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metric returns the sum of the samples of a metric whose line contains all
// of the given label fragments.
func (d *daemon) metric(name string, labels ...string) float64 {
	_, body := d.get("/metrics")
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

func (d *daemon) stop(t *testing.T, sig syscall.Signal, within time.Duration) (exitCode int, took time.Duration) {
	t.Helper()
	start := time.Now()
	d.cmd.Process.Signal(sig)
	select {
	case <-d.done:
	case <-time.After(within):
		t.Fatalf("daemon did not exit within %s of %s", within, sig)
	}
	return d.cmd.ProcessState.ExitCode(), time.Since(start)
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

func TestValidateExitCodes(t *testing.T) {
	bad, err := filepath.Glob("../../internal/config/testdata/*.yaml")
	if err != nil || len(bad) < 20 {
		t.Fatalf("bad-policy fixtures: %d, %v", len(bad), err)
	}
	for _, good := range []string{"../../configs/sandbox.yaml", "../../configs/production.example.yaml", "../../deploy/k8s/base/policy.yaml", "../../deploy/k8s/overlays/ha/policy.yaml"} {
		t.Run(filepath.Base(good), func(t *testing.T) {
			code, out, errs := runCLI(t, "validate", "-config", good)
			if code != 0 || strings.TrimSpace(out) != "ok" {
				t.Fatalf("validate %s: exit %d, stdout %q, stderr %q", good, code, out, errs)
			}
		})
	}
	for _, b := range bad {
		t.Run(filepath.Base(b), func(t *testing.T) {
			code, out, _ := runCLI(t, "validate", "-config", b)
			if code != 2 {
				t.Fatalf("validate %s: exit %d; want 2", b, code)
			}
			if !strings.Contains(out, filepath.Base(b)+":") {
				t.Errorf("validate output does not name the file and line:\n%s", out)
			}
		})
	}
	if code, _, _ := runCLI(t, "validate"); code != 2 {
		t.Errorf("validate without -config: exit %d; want 2", code)
	}
	if code, _, _ := runCLI(t, "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d; want 2", code)
	}
	if code, out, _ := runCLI(t, "version"); code != 0 || !strings.HasPrefix(out, "treasuryd ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestRunRefusesABadPolicy(t *testing.T) {
	code, _, errs := runCLI(t, "run", "-config", "../../internal/config/testdata/many_problems.yaml")
	if code != 2 || !strings.Contains(errs, "many_problems.yaml:") {
		t.Fatalf("run on a bad policy: exit %d, stderr %q; want 2 and the problems", code, errs)
	}
}

func TestSandboxPauseSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	policy, addr := sandboxPolicy(t, dir)
	const token = "test-admin-token-5e1f-9a7c"
	env := "TREASURYD_ADMIN_TOKEN=" + token

	d := startDaemon(t, policy, addr, env)
	waitFor(t, 20*time.Second, "/readyz", func() bool { c, _ := d.get("/readyz"); return c == 200 })
	if c, _ := d.get("/healthz"); c != 200 {
		t.Fatalf("/healthz: %d", c)
	}
	// On SQLite the one process always leads, under term 1 (SPEC 11).
	if d.metric("treasuryd_leader") != 1 || d.metric("treasuryd_leader_term") != 1 || d.role() != "leader" {
		t.Fatalf("SQLite daemon: treasuryd_leader %v, treasuryd_leader_term %v, role %q; want 1, 1, leader",
			d.metric("treasuryd_leader"), d.metric("treasuryd_leader_term"), d.role())
	}
	if c := d.post("/pause", ""); c != http.StatusUnauthorized {
		t.Fatalf("pause without a token: %d; want 401", c)
	}
	if c := d.post("/pause", "wrong-token"); c != http.StatusUnauthorized {
		t.Fatalf("pause with a wrong token: %d; want 401", c)
	}
	if d.metric("treasuryd_paused") != 0 {
		t.Fatal("paused before anyone paused it")
	}
	if c := d.post("/pause", token); c != 200 {
		t.Fatalf("pause with the token: %d", c)
	}
	if d.metric("treasuryd_paused") != 1 {
		t.Fatal("treasuryd_paused is not 1 after /pause")
	}
	if code, _ := d.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}

	d2 := startDaemon(t, policy, addr, env)
	waitFor(t, 20*time.Second, "/readyz after restart", func() bool { c, _ := d2.get("/readyz"); return c == 200 })
	_, status := d2.get("/status")
	if !strings.Contains(status, `"paused": true`) || d2.metric("treasuryd_paused") != 1 {
		t.Fatalf("not paused after restart; /status:\n%s", status)
	}
	accepts := d2.metric("treasuryd_accepts_total")
	waitFor(t, 10*time.Second, "paused decisions", func() bool {
		return d2.metric("treasuryd_quote_decisions_total", `outcome="paused"`) >= 2
	})
	if got := d2.metric("treasuryd_accepts_total"); got != accepts {
		t.Fatalf("accepts went from %v to %v while paused", accepts, got)
	}
	if c := d2.post("/resume", token); c != 200 {
		t.Fatalf("resume: %d", c)
	}
	if d2.metric("treasuryd_paused") != 0 {
		t.Fatal("still paused after /resume")
	}
	// The sandbox desk is new on every start while the journal is not: the
	// first run's trades must not read as breaks against the second desk.
	waitFor(t, 30*time.Second, "a reconciliation after the restart", func() bool {
		return d2.metric("treasuryd_reconcile_runs_total") > 0
	})
	if n := d2.metric("treasuryd_reconcile_runs_total", `result="breaks"`); n != 0 {
		_, st := d2.get("/status")
		t.Fatalf("reconciliation after a sandbox restart found breaks:\n%s", st)
	}
	if strings.Contains(d2.Logs(), token) || strings.Contains(d.Logs(), token) {
		t.Fatal("the admin token appears in the logs")
	}

	// The audit chain (SPEC 13): the resume was appended and counted, the
	// head is in /status and in the reconciliation's log line, and the
	// chain verifies beside the running daemon.
	if d2.metric("treasuryd_audit_entries_total") < 1 {
		t.Fatal("treasuryd_audit_entries_total did not count the resume")
	}
	_, status = d2.get("/status")
	var st struct {
		Audit struct {
			Sequence int64  `json:"sequence"`
			Hash     string `json:"hash"`
		} `json:"audit"`
	}
	if err := json.Unmarshal([]byte(status), &st); err != nil || st.Audit.Sequence < 2 || len(st.Audit.Hash) != 64 {
		t.Fatalf("/status audit head %+v (%v); want a sequence past the pause and the resume, and a hash:\n%s", st.Audit, err, status)
	}
	if !strings.Contains(d2.Logs(), `"audit_sequence":`) {
		t.Fatal("no reconciliation log line carries the audit chain head")
	}
	code, out, errs := runCLI(t, "audit", "verify", "-journal", filepath.Join(dir, "journal.db"))
	if code != 0 || !strings.Contains(out, "audit chain intact") {
		t.Fatalf("audit verify beside the daemon: exit %d\n%s%s", code, out, errs)
	}
}

func TestAdminEndpointsDisabledWithoutToken(t *testing.T) {
	dir := t.TempDir()
	policy, addr := sandboxPolicy(t, dir)
	d := startDaemon(t, policy, addr, "TREASURYD_ADMIN_TOKEN=")
	waitFor(t, 20*time.Second, "/readyz", func() bool { c, _ := d.get("/readyz"); return c == 200 })
	if c := d.post("/pause", "anything"); c != http.StatusForbidden {
		t.Fatalf("pause with no admin token configured: %d; want 403", c)
	}
}

func TestSIGTERMExitsZeroWithinTheShutdownTimeout(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			policy, addr := sandboxPolicy(t, dir)
			d := startDaemon(t, policy, addr)
			waitFor(t, 20*time.Second, "/readyz", func() bool { c, _ := d.get("/readyz"); return c == 200 })
			waitFor(t, 20*time.Second, "first decisions", func() bool { return d.metric("treasuryd_quote_decisions_total") > 0 })
			code, took := d.stop(t, sig, 8*time.Second) // shutdown_timeout is 5s
			if code != 0 {
				t.Fatalf("exit %d after %s", code, sig)
			}
			t.Logf("stopped in %s", took)
		})
	}
}

// TestSandboxTradesSweepsAndReconciles is the README's promise: within a
// minute of `treasuryd run -config configs/sandbox.yaml`, it streams,
// decides, trades, sweeps, reconciles and the gate is open.
func TestSandboxTradesSweepsAndReconciles(t *testing.T) {
	dir := t.TempDir()
	policy, addr := sandboxPolicy(t, dir)
	d := startDaemon(t, policy, addr)
	waitFor(t, 20*time.Second, "/readyz", func() bool { c, _ := d.get("/readyz"); return c == 200 })
	checks := []struct {
		what   string
		metric string
		labels []string
	}{
		{"streams up", "treasuryd_stream_up", nil},
		{"quotes received", "treasuryd_quotes_received_total", nil},
		{"the compliance gate open", "treasuryd_compliance_gate_open", nil},
		{"an accepted trade", "treasuryd_accepts_total", []string{`result="ok"`}},
		{"a sweep", "treasuryd_withdrawals_total", nil},
		{"a reconciliation", "treasuryd_reconcile_runs_total", nil},
	}
	for _, c := range checks {
		waitFor(t, 60*time.Second, c.what, func() bool { return d.metric(c.metric, c.labels...) > 0 })
	}
	if n := d.metric("treasuryd_reconcile_runs_total", `result="breaks"`); n != 0 {
		_, st := d.get("/status")
		t.Errorf("reconciliation found breaks on an honest sandbox run:\n%s", st)
	}
	_, status := d.get("/status")
	for _, want := range []string{`"sell-btc"`, `"buy-eth"`, `"compliance"`, `"withdrawals"`, `"reconciliation"`} {
		if !strings.Contains(status, want) {
			t.Errorf("/status lacks %s:\n%s", want, status)
		}
	}
	if strings.Contains(d.Logs(), "sandbox-key") {
		t.Error("the API key appears in the logs")
	}
}
