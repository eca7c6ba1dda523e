package main

// TestSideBySideWithBareClient is SPEC 8's side-by-side benchmark: treasuryd
// and a bare client (cmd/bareclient: decode, check the limit, POST the accept,
// nothing else) run at the same time on this machine, each against its own
// astra-sim, 50 streams at 25 quotes/s each, every quote within the limit.
// Both desks send at the same instants (astra-sim -quote-phase): by default
// "spread", the n-th stream of each desk at its own fixed offset within the
// 40 ms interval, so both sides see a steady flow of quotes and the two
// flows interleave the same way in every run. With streams timed from
// their connects (the desk's default) each side gets bursts of 50 quotes at
// once whose timing against the other side's bursts changes from run to
// run, and the ratio with it (0.5–8× over one session of such runs); with
// "aligned" every quote of both desks comes in one burst.
// Each desk measures, per accept, the time from writing the quote's frame to
// receiving the accept (internal/sim's accept latency); the test prints both
// p50/p99, their ratios and each process's CPU time per accept, and fails when treasuryd's p50 or p99 is more than
// 1.2× the bare client's. Journaling before sending is the only work
// treasuryd adds to that path.
//
//	TREASURYD_SIDEBYSIDE=1 go test -v -count=1 -run SideBySide ./cmd/treasuryd/
//
// Knobs (environment):
//
//	TREASURYD_SIDEBYSIDE_FOR=30s       measured window (after a 5 s warm-up)
//	TREASURYD_SIDEBYSIDE_MAX_RATIO=1.2 the bound on both ratios
//	TREASURYD_SIDEBYSIDE_PHASE=spread  the desks' -quote-phase: spread, aligned or connect
//	TREASURYD_SIDEBYSIDE_DIR=/tmp/x    keep logs, policy and journal there
//	TREASURYD_SIDEBYSIDE_BIN=/tmp/td   run this treasuryd binary (e.g. one built
//	                                   with profiling) instead of this package's
//
// To profile treasuryd in the run: go build -tags pprof -o /tmp/td
// ./cmd/treasuryd, run with TREASURYD_SIDEBYSIDE_BIN=/tmp/td and
// TREASURYD_PPROF_LISTEN=127.0.0.1:6060, and fetch
// http://127.0.0.1:6060/debug/pprof/profile?seconds=20 during the window.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"treasuryd/internal/sim"
)

const (
	sideStreams   = 50
	sideInterval  = 40 * time.Millisecond // 25 quotes/s per stream
	sideWarmUp    = 5 * time.Second
	sideSize      = "0.0001"
	sideLimit     = "1" // every quote (BTC at 65,000 USD) is within it
	sideBareKey   = "ASTRA_API_KEY"
	sideMinShare  = 0.25 // of the quotes sent, the least share each side must accept for a valid run
	sideStopAfter = 10 * time.Second
)

func TestSideBySideWithBareClient(t *testing.T) {
	if os.Getenv("TREASURYD_SIDEBYSIDE") != "1" {
		t.Skip("side-by-side benchmark: set TREASURYD_SIDEBYSIDE=1 to run it")
	}
	window := 30 * time.Second
	if v := os.Getenv("TREASURYD_SIDEBYSIDE_FOR"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("TREASURYD_SIDEBYSIDE_FOR=%q: want a positive Go duration", v)
		}
		window = d
	}
	sidePhase := "spread"
	if v := os.Getenv("TREASURYD_SIDEBYSIDE_PHASE"); v != "" {
		sidePhase = v
	}
	maxRatio := 1.2
	if v := os.Getenv("TREASURYD_SIDEBYSIDE_MAX_RATIO"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			t.Fatalf("TREASURYD_SIDEBYSIDE_MAX_RATIO=%q: want a positive number", v)
		}
		maxRatio = f
	}
	dir := t.TempDir()
	if v := os.Getenv("TREASURYD_SIDEBYSIDE_DIR"); v != "" {
		dir = filepath.Join(v, time.Now().Format("sidebyside-20060102-150405"))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("logs, policy and journal in %s", dir)
	}
	bareBin := filepath.Join(dir, "bareclient")
	if out, err := exec.Command("go", "build", "-o", bareBin, "../bareclient").CombinedOutput(); err != nil {
		t.Fatalf("go build bareclient: %v\n%s", err, out)
	}

	deskArgs := []string{"-seed", "8", "-balances", "BTC=1000000,USD=1000000", "-prices", "BTC-USD=65000",
		"-volatility-bps", "0", "-quote-interval", sideInterval.String(), "-quote-phase", sidePhase, "-quote-ttl", "5s", "-measure-accept-latency"}
	desks := map[string]*astraSim{}
	for _, side := range []string{"treasuryd", "bare"} {
		d := filepath.Join(dir, "desk-"+side)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		desks[side] = startAstraSim(t, d, deskArgs...)
	}

	httpAddr := freePort(t)
	// As in production, the journal is not in the policy's directory, whose
	// every change wakes the policy watcher.
	policy := filepath.Join(dir, "policy", "policy.yaml")
	for _, d := range []string{filepath.Dir(policy), filepath.Join(dir, "state")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "account_id: %q\n", soakAccount)
	fmt.Fprintf(&b, "astra: { base_url: %q, ws_url: %q, api_key_env: ASTRA_API_KEY, request_timeout: 2s }\n",
		"http://"+desks["treasuryd"].desk+"/v2", "ws://"+desks["treasuryd"].desk+"/v2")
	fmt.Fprintf(&b, "state: { path: %q }\nhttp: { listen: %q, admin_token_env: TREASURYD_ADMIN_TOKEN }\nshutdown_timeout: 5s\n",
		filepath.Join(dir, "state", "journal.db"), httpAddr)
	b.WriteString("compliance: { enabled: false }\nprograms:\n")
	for i := range sideStreams {
		fmt.Fprintf(&b, "  - { name: \"p%02d\", base: BTC, quote: USD, side: sell, size: %q, limit_price: %q, cooldown: 0s, min_validity: 100ms, reserve: \"0\" }\n",
			i, sideSize, sideLimit)
	}
	if err := os.WriteFile(policy, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	env := []string{"ASTRA_API_KEY=" + soakAPIKey, "TREASURYD_ADMIN_TOKEN=" + soakAdminToken}
	tbin := binary
	if v := os.Getenv("TREASURYD_SIDEBYSIDE_BIN"); v != "" {
		tbin = v
	}
	tlog := startProcess(t, filepath.Join(dir, "treasuryd.log"), env, tbin, "run", "-config", policy)
	blog := startProcess(t, filepath.Join(dir, "bareclient.log"), env, bareBin,
		"-base-url", "http://"+desks["bare"].desk+"/v2", "-ws-url", "ws://"+desks["bare"].desk+"/v2",
		"-account", soakAccount, "-api-key-env", sideBareKey, "-streams", strconv.Itoa(sideStreams),
		"-side", "sell", "-base", "BTC", "-quote", "USD", "-size", sideSize, "-limit", sideLimit)
	cl := &http.Client{Timeout: 5 * time.Second}
	if !poll(45*time.Second, func() bool {
		resp, err := cl.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}) {
		t.Fatalf("treasuryd: /readyz not 200 within 45s; log:\n%s", readTail(tlog.path, 30))
	}

	time.Sleep(sideWarmUp)
	for side, d := range desks {
		resp, err := cl.Post("http://"+d.desk+"/_sim/accept-latency/reset", "application/json", nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s desk: reset accept latency: %v", side, err)
		}
		resp.Body.Close()
	}
	procs := map[string]int{"treasuryd": tlog.pid, "bare": blog.pid}
	cpu0 := map[string]time.Duration{}
	for side, pid := range procs {
		cpu0[side] = processCPU(pid)
	}
	start := time.Now()
	time.Sleep(window)
	cpuPerAccept := map[string]time.Duration{}
	got := map[string]sim.AcceptLatency{}
	for side, d := range desks {
		resp, err := cl.Get("http://" + d.desk + "/_sim/accept-latency")
		if err != nil {
			t.Fatalf("%s desk: accept latency: %v", side, err)
		}
		var r sim.AcceptLatency
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s desk: accept latency: %v", side, err)
		}
		got[side] = r
		if r.Accepts > 0 {
			cpuPerAccept[side] = (processCPU(procs[side]) - cpu0[side]) / time.Duration(r.Accepts)
		}
	}
	elapsed := time.Since(start)
	for _, p := range []*process{tlog, blog} {
		if p.exited() {
			t.Fatalf("%s exited during the run; log:\n%s", p.path, readTail(p.path, 30))
		}
	}

	bare, tr := got["bare"], got["treasuryd"]
	ratio := func(a, b time.Duration) float64 { return float64(a) / float64(b) }
	report := fmt.Sprintf("side by side, %d streams at %.0f quotes/s each, %s measured at the desk (frame written → accept received):\n"+
		"  %-11s %8s %9s %9s %9s %9s %14s\n"+
		"  %-11s %8d %9s %9s %9s %9s %14s\n"+
		"  %-11s %8d %9s %9s %9s %9s %14s\n"+
		"  treasuryd / bare client: p50 %.2f×, p99 %.2f× (target ≤ %.2f×)",
		sideStreams, float64(time.Second)/float64(sideInterval), elapsed.Round(time.Second),
		"", "accepts", "p50", "p90", "p99", "max", "CPU/accept",
		"bare client", bare.Accepts, us(bare.P50), us(bare.P90), us(bare.P99), us(bare.Max), us(cpuPerAccept["bare"]),
		"treasuryd", tr.Accepts, us(tr.P50), us(tr.P90), us(tr.P99), us(tr.Max), us(cpuPerAccept["treasuryd"]),
		ratio(tr.P50, bare.P50), ratio(tr.P99, bare.P99), maxRatio)
	t.Log(report)
	fmt.Println(report)

	sent := elapsed.Seconds() * sideStreams * float64(time.Second) / float64(sideInterval)
	for side, r := range got {
		if float64(r.Accepts) < sideMinShare*sent {
			t.Fatalf("%s: %d accepts measured of about %.0f quotes sent: not a valid run; logs in %s", side, r.Accepts, sent, dir)
		}
	}
	if ratio(tr.P50, bare.P50) > maxRatio || ratio(tr.P99, bare.P99) > maxRatio {
		t.Errorf("treasuryd's accept latency is more than %.2f× the bare client's (p50 %.2f×, p99 %.2f×)",
			maxRatio, ratio(tr.P50, bare.P50), ratio(tr.P99, bare.P99))
	}
}

func us(d time.Duration) string { return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond)) }

// process is a child process whose output goes to a log file; it gets
// SIGTERM (then SIGKILL) when the test ends.
type process struct {
	path string
	pid  int
	done chan struct{}
}

// processCPU is the CPU time (user and system) process pid has used, from
// /proc; 0 where there is none.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command, which is in parentheses and may hold spaces:
	// state is field 3, utime 14, stime 15, in clock ticks (USER_HZ, 100 on
	// Linux).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(ut+st) * (time.Second / 100)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func startProcess(t *testing.T, logPath string, env []string, bin string, args ...string) *process {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{path: logPath, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { cmd.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(sideStopAfter):
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}
