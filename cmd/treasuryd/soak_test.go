package main

// TestSoak is the chaos soak of SPEC 7: treasuryd runs against a standalone
// astra-sim with every fault switched on, while the test kills it (-9),
// stops it (SIGTERM, also during start-up), hot-reloads its policy (good and
// bad, and an allowlist removal), takes the Astral index down, revokes the
// compliance proofs, lets them age out, pauses it and plays the operator for
// unresolved withdrawals. At the end every safety invariant is checked from
// the simulator's ground truth, the journal, the daemon's logs and what the
// test saw on the wire (a recording proxy in front of the desk's REST API),
// and `treasuryd reconcile` must come out clean once the faults are off.
//
// Knobs (environment):
//
//	TREASURYD_SOAK=30m            chaos duration (default 65s, ~90s in all: the
//	                              CI variant); give go test a -timeout above it
//	TREASURYD_SOAK_SEED=N         the simulator's and the chaos schedule's seed
//	TREASURYD_SOAK_RACE=1         run a daemon built with -race
//	TREASURYD_SOAK_FAULT_SCALE=5  multiply every fault probability
//	TREASURYD_SOAK_REST_LATENCY=  the desk's REST latency (default 20ms)
//	TREASURYD_SOAK_DIR=/tmp/x     keep logs, policy and journal there
//
// The directed tests at the end of this file pin down what the soak found.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/journal"
	"treasuryd/internal/pgtest"
)

const (
	soakAccount    = "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"
	soakAPIKey     = "soak-api-key-5c4d3e2f1a0b9e8d"  // distinctive: searched for in logs, /status, /metrics
	soakAdminToken = "soak-admin-token-7f3e9c1d2b4a6" // likewise
	soakSubject    = "0x50a4000000000000000000000000000000000abc"
	soakBTCAddr    = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"
	soakETHCold    = "0x742d35Cc6634C0532925a3b8D4C9db96C4b4d8b6"
	soakETHOps     = "0x53d284357ec70cE289D6D64134DfAc8E511c8a3D" // removed from the allowlist (with its rule) and restored during the run

	// soakProver attests the soak's proofs; outside the sandbox the policy
	// must name its trusted provers.
	soakProver = "0x5a4d0000000000000000000000000000000000aa"

	soakShutdownTimeout = 5 * time.Second
	// soakStopSlack is what SIGTERM may take beyond shutdown_timeout:
	// process exit and the journal's close on a loaded 2-core machine.
	soakStopSlack = 3 * time.Second
	// soakWithdrawalStep is astra-sim's time per withdrawal status step:
	// completed 3 steps after creation, failed after 2.
	soakWithdrawalStep = 500 * time.Millisecond
	// soakGrace is how long after a policy file is written the old policy
	// may still be in force (debounce 200 ms, plus the reload itself).
	soakGrace = 3 * time.Second
	// soakWindowSlack: an action decided just before a pause or a gate
	// closing was seen may still be journaled (or reach the desk) this long
	// after; the windows are checked from start+slack.
	soakJournalSlack = 200 * time.Millisecond
	soakWireSlack    = 500 * time.Millisecond
	// soakProofMaxAge is compliance.max_proof_age: short, so that proofs
	// age out all run long and the gate must keep moving to newer ones; a
	// background refresher adds a proof every soakProofEvery.
	soakProofMaxAge = 12 * time.Second
	soakProofEvery  = 3 * time.Second
)

// --- the policy the soak runs, as data ----------------------------------

type soakProgram struct {
	Name, Base, Quote, Side string
	Size, Notional, Limit   string
	RefWindow               time.Duration // 0: no reference rule
	Target, MaxDaily        string        // "": none
	Cooldown, MinValidity   time.Duration
	Reserve                 string
}

type soakRule struct {
	Name, Asset, Network, Address         string
	HighWater, Keep, MinAmount, MaxAmount string
	MaxDaily                              string
}

type soakDest struct{ Asset, Network, Address string }

type soakPolicy struct {
	Programs  []soakProgram
	Allowlist []soakDest
	Rules     []soakRule
}

// soakPolicyFor is generation gen of the policy: every reload raises the
// caps a step (so they are reached again and again in a long run) and flips
// cooldowns and one min_validity; opsOn keeps the eth-ops rule and its
// address on the allowlist.
func soakPolicyFor(gen int, opsOn bool) soakPolicy {
	g := decimal.NewFromInt(int64(gen))
	add := func(base, step string) string {
		return decimal.RequireFromString(base).Add(decimal.RequireFromString(step).Mul(g)).String()
	}
	odd := gen%2 == 1
	pick := func(a, b time.Duration) time.Duration {
		if odd {
			return b
		}
		return a
	}
	p := soakPolicy{
		Programs: []soakProgram{
			// min_validity close to the 2 s quote TTL: a frame that arrives
			// late must be refused as expiring.
			{Name: "sell-btc", Base: "BTC", Quote: "USD", Side: "sell", Size: "0.01", Limit: "64990", RefWindow: 5 * time.Second,
				Target: add("0.15", "0.03"), MaxDaily: "100000", Cooldown: pick(200*time.Millisecond, 400*time.Millisecond),
				MinValidity: 1900 * time.Millisecond, Reserve: "4.5"},
			{Name: "buy-btc", Base: "BTC", Quote: "USD", Side: "buy", Notional: "650", Limit: "65010",
				Target: add("0.1", "0.02"), MaxDaily: add("5200", "650"), Cooldown: 500 * time.Millisecond,
				MinValidity: pick(500*time.Millisecond, 800*time.Millisecond), Reserve: "200000"},
			{Name: "sell-eth", Base: "ETH", Quote: "USD", Side: "sell", Size: "0.2", Limit: "3199",
				MaxDaily: add("4000", "640"), Cooldown: 0, MinValidity: 300 * time.Millisecond, Reserve: "38.5"},
			{Name: "buy-eth", Base: "ETH", Quote: "USD", Side: "buy", Notional: "320", Limit: "3201",
				Target: add("0.8", "0.1"), Cooldown: pick(time.Second, 700*time.Millisecond), MinValidity: time.Second, Reserve: "150000"},
			// No caps: keeps trading all run long, so the pause and gate
			// windows have something to refuse.
			{Name: "sell-btc-slow", Base: "BTC", Quote: "USD", Side: "sell", Size: "0.001", Limit: "64000",
				Cooldown: 2 * time.Second, MinValidity: time.Second, Reserve: "4"},
		},
		Allowlist: []soakDest{{"BTC", "bitcoin", soakBTCAddr}, {"ETH", "ethereum", soakETHCold}},
		Rules: []soakRule{
			{Name: "btc-cold", Asset: "BTC", Network: "bitcoin", Address: soakBTCAddr, HighWater: "4.9", Keep: "4.85",
				MinAmount: "0.001", MaxAmount: "0.02", MaxDaily: add("0.1", "0.02")},
			{Name: "eth-cold", Asset: "ETH", Network: "ethereum", Address: soakETHCold, HighWater: "39.5", Keep: "39",
				MinAmount: "0.01", MaxAmount: "0.15", MaxDaily: add("0.6", "0.1")},
		},
	}
	if opsOn {
		p.Allowlist = append(p.Allowlist, soakDest{"ETH", "ethereum", soakETHOps})
		p.Rules = append(p.Rules, soakRule{Name: "eth-ops", Asset: "ETH", Network: "ethereum", Address: soakETHOps,
			HighWater: "39.2", Keep: "39.1", MinAmount: "0.01", MaxAmount: "0.05", MaxDaily: add("0.8", "0.1")})
	}
	return p
}

func (p soakPolicy) program(name string) (soakProgram, bool) {
	for _, pr := range p.Programs {
		if pr.Name == name {
			return pr, true
		}
	}
	return soakProgram{}, false
}

func (p soakPolicy) allowed(asset, network, address string) bool {
	for _, d := range p.Allowlist {
		if d.Asset == asset && d.Network == network && d.Address == address {
			return true
		}
	}
	return false
}

func (p soakPolicy) ruleByAddress(address string) (soakRule, bool) {
	for _, r := range p.Rules {
		if r.Address == address {
			return r, true
		}
	}
	return soakRule{}, false
}

// yaml renders the policy file.
func (p soakPolicy) yaml(e *soakEnv) string {
	var b strings.Builder
	fmt.Fprintf(&b, "account_id: %q\n", soakAccount)
	fmt.Fprintf(&b, "astra:\n  base_url: %q\n  ws_url: %q\n  api_key_env: \"ASTRA_API_KEY\"\n  request_timeout: 1s\n",
		e.proxy.url+"/v2", "ws://"+e.deskAddr+"/v2")
	fmt.Fprintf(&b, "astral:\n  base_url: %q\n  request_timeout: 1s\n", "http://"+e.astralAddr)
	if e.pgDSN != "" {
		fmt.Fprintf(&b, "state:\n  postgres_dsn_env: %q\n  quote_retention: 1h\nha:\n  lease: 2s\n", soakDSNEnv)
	} else {
		fmt.Fprintf(&b, "state:\n  path: %q\n  quote_retention: 1h\n", e.journalPath)
	}
	fmt.Fprintf(&b, "http:\n  listen: %q\n  admin_token_env: \"TREASURYD_ADMIN_TOKEN\"\n", e.httpAddr)
	fmt.Fprintf(&b, "dry_run: false\nshutdown_timeout: %s\n", soakShutdownTimeout)
	fmt.Fprintf(&b, `compliance:
  enabled: true
  subject: %q
  chains: ["base"]
  trusted_provers: [%q]
  max_proof_age: %s
  refresh_interval: 1s
  allow:
    - name: "eu"
      bbox: [-10.0, 35.0, 30.0, 60.0]
  deny:
    - name: "embargoed"
      bbox: [30.0, 40.0, 50.0, 55.0]
`, soakSubject, soakProver, soakProofMaxAge)
	b.WriteString("programs:\n")
	for _, pr := range p.Programs {
		fmt.Fprintf(&b, "  - name: %q\n    base: %s\n    quote: %s\n    side: %s\n", pr.Name, pr.Base, pr.Quote, pr.Side)
		if pr.Size != "" {
			fmt.Fprintf(&b, "    size: %q\n", pr.Size)
		} else {
			fmt.Fprintf(&b, "    notional: %q\n", pr.Notional)
		}
		fmt.Fprintf(&b, "    limit_price: %q\n", pr.Limit)
		if pr.RefWindow > 0 {
			fmt.Fprintf(&b, "    reference: { window: %s, min_improvement_bps: 0 }\n", pr.RefWindow)
		}
		if pr.Target != "" {
			fmt.Fprintf(&b, "    target: %q\n", pr.Target)
		}
		if pr.MaxDaily != "" {
			fmt.Fprintf(&b, "    max_daily_notional: %q\n", pr.MaxDaily)
		}
		fmt.Fprintf(&b, "    cooldown: %s\n    min_validity: %s\n    reserve: %q\n", pr.Cooldown, pr.MinValidity, pr.Reserve)
	}
	b.WriteString("withdraw:\n  allowlist:\n")
	for _, d := range p.Allowlist {
		fmt.Fprintf(&b, "    - { asset: %s, network: %s, address: %q }\n", d.Asset, d.Network, d.Address)
	}
	b.WriteString("rebalance:\n  schedule: \"@every 1s\"\n  rules:\n")
	for _, r := range p.Rules {
		fmt.Fprintf(&b, "    - name: %q\n      asset: %s\n      network: %s\n      address: %q\n", r.Name, r.Asset, r.Network, r.Address)
		fmt.Fprintf(&b, "      high_water: %q\n      keep: %q\n      min_amount: %q\n      max_amount: %q\n      max_daily: %q\n",
			r.HighWater, r.Keep, r.MinAmount, r.MaxAmount, r.MaxDaily)
	}
	b.WriteString("reconcile:\n  schedule: \"@every 5s\"\n  tolerance: \"0\"\n")
	return b.String()
}

// policyVersion is a policy file that was in place from `from` on.
type policyVersion struct {
	from time.Time
	p    soakPolicy
}

// --- the recording proxy in front of the desk's REST API -----------------

// wirePost is one value-moving POST as it reached the desk.
type wirePost struct {
	kind     string // "accept" or "withdraw"
	at       time.Time
	body     []byte
	status   int  // 0: no answer (blackholed, or the client gave up)
	answered bool // the desk answered (status set)
}

// deskProxy forwards the daemon's REST calls to astra-sim and keeps what the
// desk itself does not expose on its test API: the raw bytes and arrival
// time of every accept and withdrawal POST, and the faults it answered with.
// The quote stream goes to the desk directly.
type deskProxy struct {
	srv *httptest.Server
	url string
	rp  *httputil.ReverseProxy

	mu       sync.Mutex
	posts    []*wirePost
	statuses map[int]int // REST answers by status
	unanswer int         // requests the desk never answered
	badKey   int         // requests without the right API key
}

func newDeskProxy(deskAddr string) *deskProxy {
	target, _ := url.Parse("http://" + deskAddr)
	p := &deskProxy{statuses: map[int]int{}}
	p.rp = httputil.NewSingleHostReverseProxy(target)
	p.rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}
	p.rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		// The desk dropped the connection (a blackhole ends that way) or the
		// client went away: do the same rather than invent a 502.
		p.mu.Lock()
		p.unanswer++
		p.mu.Unlock()
		panic(http.ErrAbortHandler)
	}
	p.srv = httptest.NewServer(p)
	p.url = p.srv.URL
	return p
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (p *deskProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("x-astra-api-key") != soakAPIKey {
		p.mu.Lock()
		p.badKey++
		p.mu.Unlock()
	}
	var rec *wirePost
	if r.Method == http.MethodPost {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		kind := ""
		switch {
		case strings.Contains(r.URL.Path, "/otc/accept-quote/"):
			kind = "accept"
		case strings.Contains(r.URL.Path, "/withdrawal-request/"):
			kind = "withdraw"
		}
		if kind != "" {
			rec = &wirePost{kind: kind, at: time.Now(), body: body}
			p.mu.Lock()
			p.posts = append(p.posts, rec)
			p.mu.Unlock()
		}
	}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		p.mu.Lock()
		if sw.status != 0 {
			p.statuses[sw.status]++
			if rec != nil {
				rec.status, rec.answered = sw.status, true
			}
		}
		p.mu.Unlock()
	}()
	p.rp.ServeHTTP(sw, r)
}

func (p *deskProxy) snapshot() (posts []wirePost, statuses map[int]int, unanswered, badKey int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, x := range p.posts {
		posts = append(posts, *x)
	}
	statuses = map[int]int{}
	for k, v := range p.statuses {
		statuses[k] = v
	}
	return posts, statuses, p.unanswer, p.badKey
}

// --- simulator ground truth --------------------------------------------

type simConvert struct {
	DisplayID  string `json:"displayId"`
	QuoteID    string `json:"quoteId"`
	BuySymbol  string `json:"buySymbol"`
	BuyQty     string `json:"buyQty"`
	SellSymbol string `json:"sellSymbol"`
	SellQty    string `json:"sellQty"`
	CreatedAt  string `json:"createdAt"`
}

type simWithdrawal struct {
	ID        string `json:"id"`
	Symbol    string `json:"symbol"`
	Amount    string `json:"amount"`
	Network   string `json:"network"`
	Address   string `json:"address"`
	Status    string `json:"status"`
	Error     string `json:"error"`
	CreatedAt string `json:"createdAt"`
}

type simState struct {
	Balances         map[string]string `json:"balances"`
	Prices           map[string]string `json:"prices"`
	Converts         []simConvert      `json:"converts"`
	Withdrawals      []simWithdrawal   `json:"withdrawals"`
	OpenStreams      int               `json:"openStreams"`
	QuotesSent       int               `json:"quotesSent"`
	Accepts          int               `json:"accepts"`
	TransactionCount int64             `json:"transactionCount"`
}

// --- one daemon process --------------------------------------------------

type soakRun struct {
	n        int
	cmd      *exec.Cmd
	logPath  string
	start    time.Time
	end      time.Time // when it was signalled (kill -9, SIGTERM) or found dead
	done     chan struct{}
	exitCode int
	how      string
	last     map[string]float64 // the newest /metrics scrape
}

// window is a span in which nothing may move money.
type window struct {
	what       string
	start, end time.Time
}

// removal is a destination taken off the allowlist: from `applied` (the
// reload was seen in force) until `until` (the file that restores it was
// written; zero: still removed).
type removal struct {
	address        string
	written        time.Time
	applied, until time.Time
}

type soakCounters struct {
	kill9, sigterm, reloadsOK, reloadsBad, allowlistRemovals, allowlistRestores int
	astralDown, revokes, pauses, pausesAcrossKill, deposits, ageOuts, resolved  int
	sigtermTook                                                                 []time.Duration
	sigtermEarly, sigtermFailed                                                 int
	gateHeldDuringAstralDown                                                    int
}

type soakEnv struct {
	t           *testing.T
	dir         string
	bin         string
	deskAddr    string
	astralAddr  string
	proxy       *deskProxy
	policyPath  string
	journalPath string
	// pgDSN, with TREASURYD_SOAK_POSTGRES=1 (or 2), is a fresh PostgreSQL
	// database holding the journal instead of journalPath (the daemon
	// or its standby leads it, under a new term after every restart).
	pgDSN    string
	httpAddr string
	// ha, with TREASURYD_SOAK_POSTGRES=2, is the second replica: httpAddr
	// and policyPath are then the leader's (soak_ha_test.go).
	ha       *soakHA
	launched int
	rng      *rand.Rand

	gen       int
	opsOn     bool
	versions  []policyVersion
	pmu       sync.Mutex // guards the proof fields below
	proofs    []string   // uids not revoked
	newest    time.Time  // event time of the newest proof
	proofHold bool       // the refresher adds nothing while set
	proofErr  error

	mu       sync.Mutex // guards cur, runs' last scrape and secretHits
	cur      *soakRun
	runs     []*soakRun
	leaks    []string
	scrapes  int
	windows  []window
	removals []*removal
	astral   []window
	n        soakCounters
	client   *http.Client
}

func (e *soakEnv) logf(format string, args ...any) {
	e.t.Helper()
	e.t.Logf("%s "+format, append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// post sends a JSON body (or none) and returns the status and answer.
func (e *soakEnv) post(rawURL string, body any, header ...string) (int, []byte) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(http.MethodPost, rawURL, rd)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *soakEnv) get(rawURL string) (int, []byte) {
	resp, err := e.client.Get(rawURL)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *soakEnv) simState() simState {
	e.t.Helper()
	code, b := e.get("http://" + e.deskAddr + "/_sim/state")
	if code != http.StatusOK {
		e.t.Fatalf("GET /_sim/state: %d %s", code, b)
	}
	var st simState
	if err := json.Unmarshal(b, &st); err != nil {
		e.t.Fatalf("decode /_sim/state: %v", err)
	}
	return st
}

// astraSim is a running astra-sim process.
type astraSim struct {
	desk, astral string // listen addresses
	cmd          *exec.Cmd
	done         chan struct{}
	logPath      string
}

// startAstraSim builds astra-sim (once per test binary) and starts it on
// two free loopback ports with the soak's account and key; args are added.
func startAstraSim(t *testing.T, dir string, args ...string) *astraSim {
	t.Helper()
	bin := filepath.Join(dir, "astra-sim")
	if out, err := exec.Command("go", "build", "-o", bin, "../astra-sim").CombinedOutput(); err != nil {
		t.Fatalf("go build astra-sim: %v\n%s", err, out)
	}
	s := &astraSim{desk: freePort(t), astral: freePort(t), done: make(chan struct{}), logPath: filepath.Join(dir, "astra-sim.log")}
	s.cmd = exec.Command(bin, append([]string{"-listen", s.desk, "-astral-listen", s.astral,
		"-account", soakAccount, "-api-key", soakAPIKey}, args...)...)
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); logf.Close(); close(s.done) }()
	t.Cleanup(func() {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			s.cmd.Process.Kill()
			<-s.done
		}
	})
	cl := &http.Client{Timeout: 2 * time.Second}
	up := func(u string) bool {
		resp, err := cl.Get(u)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	if !poll(15*time.Second, func() bool { return up("http://"+s.desk+"/_sim/state") && up("http://"+s.astral+"/health") }) {
		t.Fatalf("astra-sim did not come up; log:\n%s", readTail(s.logPath, 30))
	}
	return s
}

// startSim starts astra-sim with every fault on at realistic rates, each
// probability multiplied by scale (TREASURYD_SOAK_FAULT_SCALE, default 1).
func (e *soakEnv) startSim(seed int64, scale float64, latency string) {
	p := func(x float64) string { return strconv.FormatFloat(min(1, x*scale), 'f', -1, 64) }
	s := startAstraSim(e.t, e.dir, "-seed", strconv.FormatInt(seed, 10),
		"-balances", "BTC=5,USD=250000,ETH=40", "-prices", "BTC-USD=65000,ETH-USD=3200",
		"-volatility-bps", "10", "-quote-interval", "150ms", "-quote-ttl", "2s",
		"-withdrawal-step", soakWithdrawalStep.String(),
		"-stream-drop", p(0.01), "-stream-stall", p(0.005), "-stall-for", "3s", "-malformed-frame", p(0.02),
		"-rest-latency", latency, "-rest-5xx", p(0.03), "-rest-429", p(0.02), "-retry-after", "1s",
		"-accept-blackhole", p(0.02), "-withdraw-blackhole", p(0.1), "-withdraw-fail", p(0.1),
	)
	e.deskAddr, e.astralAddr = s.desk, s.astral
}

func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readTail(path string, n int) string {
	b, _ := os.ReadFile(path)
	return tail(string(b), n)
}

// addProof gives the subject a fresh proof in Berlin (inside "eu").
func (e *soakEnv) addProof() error {
	at := time.Now()
	code, b := e.post("http://"+e.astralAddr+"/_sim/astral/proofs", map[string]any{
		"subject": soakSubject, "chain": "base", "prover": soakProver, "event_time": at.UTC().Format(time.RFC3339Nano),
		"lng": 13.4, "lat": 52.5,
	})
	var ans struct {
		UID string `json:"uid"`
	}
	if code != http.StatusCreated || json.Unmarshal(b, &ans) != nil || ans.UID == "" {
		return fmt.Errorf("add proof: %d %s", code, b)
	}
	e.pmu.Lock()
	e.proofs = append(e.proofs, ans.UID)
	e.newest = at
	e.pmu.Unlock()
	return nil
}

// refreshProofs adds a proof every soakProofEvery unless held, until stop.
func (e *soakEnv) refreshProofs(stop <-chan struct{}) {
	tk := time.NewTicker(soakProofEvery)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		e.pmu.Lock()
		hold := e.proofHold
		e.pmu.Unlock()
		if hold {
			continue
		}
		if err := e.addProof(); err != nil {
			e.pmu.Lock()
			e.proofErr = err
			e.pmu.Unlock()
		}
	}
}

// holdProofs stops (true) or resumes (false) the refresher; resuming adds a
// proof at once.
func (e *soakEnv) holdProofs(hold bool) {
	e.t.Helper()
	e.pmu.Lock()
	e.proofHold = hold
	err := e.proofErr
	e.pmu.Unlock()
	if err != nil {
		e.t.Fatal(err)
	}
	if !hold {
		if err := e.addProof(); err != nil {
			e.t.Fatal(err)
		}
	}
}

// writePolicy installs the current generation atomically (write + rename,
// as an editor or a ConfigMap does) and records it in the timeline.
func (e *soakEnv) writePolicy() time.Time {
	e.t.Helper()
	p := soakPolicyFor(e.gen, e.opsOn)
	at := time.Now()
	e.writeFile(p.yaml(e))
	e.versions = append(e.versions, policyVersion{from: at, p: p})
	return at
}

func (e *soakEnv) writeFile(content string) {
	e.t.Helper()
	tmp := filepath.Join(e.dir, ".policy.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.policyPath); err != nil {
		e.t.Fatal(err)
	}
	if e.ha != nil {
		e.ha.writeOther(e, content)
	}
}

// candidates are the policies that may have been in force at t: the one
// written last before t, and any replaced less than soakGrace before t.
func (e *soakEnv) candidates(t time.Time) []soakPolicy {
	var out []soakPolicy
	for i, v := range e.versions {
		if v.from.After(t) {
			break
		}
		next := i + 1
		if next < len(e.versions) && !e.versions[next].from.After(t.Add(-soakGrace)) {
			continue // replaced well before t
		}
		out = append(out, v.p)
	}
	if len(out) == 0 && len(e.versions) > 0 {
		out = append(out, e.versions[0].p)
	}
	return out
}

// soakDSNEnv names the variable the PostgreSQL variant passes its DSN in.
const soakDSNEnv = "TREASURYD_SOAK_PG_DSN"

// openJournal opens the soak's journal read-only: the file, or the
// PostgreSQL database of the TREASURYD_SOAK_POSTGRES=1 variant.
func (e *soakEnv) openJournal() (*journal.Journal, error) {
	if e.pgDSN != "" {
		return journal.OpenPostgresReadOnly(e.pgDSN)
	}
	return journal.OpenReadOnly(e.journalPath)
}

// --- daemon lifecycle ----------------------------------------------------

// spawn starts a daemon process without waiting for it.
func (e *soakEnv) spawn() *soakRun {
	r := e.launch(e.policyPath)
	e.mu.Lock()
	e.runs = append(e.runs, r)
	e.cur = r
	e.mu.Unlock()
	return r
}

// launch starts a daemon process on a policy file.
func (e *soakEnv) launch(policyPath string) *soakRun {
	t := e.t
	t.Helper()
	e.launched++
	r := &soakRun{n: e.launched, done: make(chan struct{})}
	r.logPath = filepath.Join(e.dir, fmt.Sprintf("treasuryd-%03d.log", r.n))
	logf, err := os.Create(r.logPath)
	if err != nil {
		t.Fatal(err)
	}
	r.cmd = exec.Command(e.bin, "run", "-config", policyPath)
	r.cmd.Env = append(os.Environ(), "ASTRA_API_KEY="+soakAPIKey, "TREASURYD_ADMIN_TOKEN="+soakAdminToken, soakDSNEnv+"="+e.pgDSN)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.start = time.Now()
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		r.cmd.Wait()
		logf.Close()
		r.exitCode = r.cmd.ProcessState.ExitCode()
		close(r.done)
	}()
	return r
}

// startDaemon starts a daemon and waits for /readyz.
func (e *soakEnv) startDaemon() *soakRun {
	t := e.t
	t.Helper()
	if e.ha != nil {
		defer e.ha.ensureStandby(e)
		if r := e.cur; r != nil && !r.exited() {
			return r // the standby took over: only a new standby is started
		}
	}
	r := e.spawn()
	if !poll(45*time.Second, func() bool {
		select {
		case <-r.done:
			return true
		default:
		}
		c, _ := e.get("http://" + e.httpAddr + "/readyz")
		return c == http.StatusOK
	}) {
		t.Fatalf("run %d: /readyz not 200 within 45s; log:\n%s", r.n, readTail(r.logPath, 40))
	}
	select {
	case <-r.done:
		t.Fatalf("run %d exited with %d during start-up; log:\n%s", r.n, r.exitCode, readTail(r.logPath, 40))
	default:
	}
	return r
}

// alive fails the test if the daemon died on its own.
func (e *soakEnv) alive() {
	e.t.Helper()
	r := e.cur
	select {
	case <-r.done:
		e.t.Fatalf("run %d died on its own with exit code %d; log:\n%s", r.n, r.exitCode, readTail(r.logPath, 60))
	default:
	}
	if e.ha != nil {
		e.ha.alive(e)
	}
}

func (r *soakRun) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (e *soakEnv) kill9() {
	e.alive()
	e.scrape()
	r := e.cur
	r.end, r.how = time.Now(), "kill -9"
	r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
	e.n.kill9++
	if e.ha != nil {
		e.ha.failover(e, r.end)
	}
}

// sigterm stops the daemon and checks invariant 10: exit 0 within the
// shutdown timeout, nothing left pending or as a bare intent in the journal.
func (e *soakEnv) sigterm(what string) {
	t := e.t
	t.Helper()
	e.alive()
	e.scrape()
	if e.ha != nil {
		e.ha.beforeLeaderStop(e, what)
		defer e.ha.afterLeaderStop(e, what)
	}
	r := e.cur
	r.end, r.how = time.Now(), "SIGTERM"
	r.cmd.Process.Signal(syscall.SIGTERM)
	limit := soakShutdownTimeout + soakStopSlack
	select {
	case <-r.done:
	case <-time.After(limit):
		r.cmd.Process.Kill()
		<-r.done
		e.n.sigtermFailed++
		t.Errorf("invariant 10: run %d (%s) did not exit within %s of SIGTERM; log:\n%s", r.n, what, limit, readTail(r.logPath, 40))
		return
	}
	took := time.Since(r.end)
	e.n.sigterm++
	e.n.sigtermTook = append(e.n.sigtermTook, took)
	if r.exitCode != 0 {
		// Not fatal: the soak goes on and reports everything it finds.
		e.n.sigtermFailed++
		t.Errorf("invariant 10: run %d (%s) exited %d after SIGTERM (took %s, %s after start); log:\n%s",
			r.n, what, r.exitCode, took, r.end.Sub(r.start).Round(time.Millisecond), readTail(r.logPath, 15))
		return
	}
	// SPEC 7.10: in-flight POSTs finished or were journaled unknown; an
	// intent without a result would mean a POST whose fate nobody wrote down.
	j, err := e.openJournal()
	if err != nil {
		t.Fatalf("open journal after SIGTERM: %v", err)
	}
	defer j.Close()
	ctx := context.Background()
	pend, err := j.Accepts(ctx, journal.AcceptFilter{Results: []string{journal.AcceptPending}})
	if err != nil {
		t.Fatal(err)
	}
	intents, err := j.Withdrawals(ctx, journal.WithdrawalFilter{States: []string{journal.WithdrawalIntent}})
	if err != nil {
		t.Fatal(err)
	}
	if len(pend) > 0 || len(intents) > 0 {
		t.Errorf("invariant 10: after a clean SIGTERM of run %d the journal holds %d pending accepts and %d bare withdrawal intents: %+v %+v",
			r.n, len(pend), len(intents), pend, intents)
	}
}

// scrape reads /metrics and /status of the running daemon, keeps the
// metrics as the run's newest, and looks for the secrets in both.
func (e *soakEnv) scrape() {
	e.mu.Lock()
	r, addr := e.cur, e.httpAddr
	e.mu.Unlock()
	if r == nil {
		return
	}
	c1, m := e.get("http://" + addr + "/metrics")
	c2, s := e.get("http://" + addr + "/status")
	e.mu.Lock()
	defer e.mu.Unlock()
	e.scrapes++
	for _, sec := range []string{soakAPIKey, soakAdminToken} {
		if c1 == 200 && bytes.Contains(m, []byte(sec)) {
			e.leaks = append(e.leaks, fmt.Sprintf("run %d /metrics holds a secret", r.n))
		}
		if c2 == 200 && bytes.Contains(s, []byte(sec)) {
			e.leaks = append(e.leaks, fmt.Sprintf("run %d /status holds a secret", r.n))
		}
	}
	if c1 == 200 && e.cur == r {
		r.last = parseMetrics(string(m))
	}
}

// parseMetrics maps each sample ("name{labels}") to its value.
func parseMetrics(body string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sum adds the samples of name whose labels contain every fragment.
func sum(m map[string]float64, name string, labels ...string) float64 {
	var s float64
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(k, l)
		}
		if ok {
			s += v
		}
	}
	return s
}

// metric reads one metric of the running daemon now.
func (e *soakEnv) metric(name string, labels ...string) float64 {
	c, b := e.get("http://" + e.httpAddr + "/metrics")
	if c != 200 {
		return -1
	}
	return sum(parseMetrics(string(b)), name, labels...)
}

// --- chaos steps ---------------------------------------------------------

func (e *soakEnv) recenterPrices() {
	for pair, px := range map[string]string{"BTC-USD": "65000", "ETH-USD": "3200"} {
		if c, b := e.post("http://"+e.deskAddr+"/_sim/price", map[string]string{"pair": pair, "price": px}); c != 200 {
			e.t.Fatalf("set price %s: %d %s", pair, c, b)
		}
	}
}

func (e *soakEnv) stepKill9() {
	e.kill9()
	e.startDaemon()
}

func (e *soakEnv) stepSigterm() {
	e.sigterm("chaos")
	e.startDaemon()
}

// stepSigtermEarly kills -9 (often leaving a withdrawal or an accept open,
// which start-up then resolves against the faulty desk) and sends SIGTERM
// to the next process 50-400 ms after it started, while it may still be
// starting: SPEC 7.10 holds whenever SIGTERM comes.
func (e *soakEnv) stepSigtermEarly() {
	e.kill9()
	r := e.spawn()
	time.Sleep(50*time.Millisecond + time.Duration(e.rng.Int64N(int64(350*time.Millisecond))))
	select {
	case <-r.done:
		e.t.Fatalf("run %d exited with %d on its own during start-up; log:\n%s", r.n, r.exitCode, readTail(r.logPath, 40))
	default:
	}
	e.sigterm("during start-up")
	e.n.sigtermEarly++
	e.startDaemon()
}

// waitReload waits for treasuryd_config_reloads_total{result} to pass from.
func (e *soakEnv) waitReload(result string, from float64) bool {
	return poll(10*time.Second, func() bool { return e.metric("treasuryd_config_reloads_total", `result="`+result+`"`) > from })
}

// stepReload changes caps, cooldowns and a min_validity.
func (e *soakEnv) stepReload() {
	e.alive()
	before := e.metric("treasuryd_config_reloads_total", `result="ok"`)
	e.gen++
	e.writePolicy()
	if !e.waitReload("ok", before) {
		e.t.Fatalf("reload of generation %d not applied within 10s; log:\n%s", e.gen, readTail(e.cur.logPath, 30))
	}
	e.n.reloadsOK++
}

// stepAllowlist removes the eth-ops address with its rule, or restores them.
func (e *soakEnv) stepAllowlist() {
	e.alive()
	before := e.metric("treasuryd_config_reloads_total", `result="ok"`)
	e.opsOn = !e.opsOn
	at := e.writePolicy()
	if !e.opsOn {
		rm := &removal{address: soakETHOps, written: at}
		e.removals = append(e.removals, rm)
		if !e.waitReload("ok", before) {
			e.t.Fatalf("allowlist removal not applied within 10s")
		}
		rm.applied = time.Now()
		e.n.allowlistRemovals++
		return
	}
	e.removals[len(e.removals)-1].until = at
	if !e.waitReload("ok", before) {
		e.t.Fatalf("allowlist restore not applied within 10s")
	}
	e.n.allowlistRestores++
}

// stepBadReload checks invariant 11: an invalid file is refused, counted,
// and the daemon keeps deciding on the old policy.
func (e *soakEnv) stepBadReload() {
	t := e.t
	e.alive()
	errs := e.metric("treasuryd_config_reloads_total", `result="error"`)
	good := soakPolicyFor(e.gen, e.opsOn).yaml(e)
	bad := strings.Replace(good, "cooldown: ", "cooldown: soon # ", 1)
	bad = strings.Replace(bad, `keep: "4.85"`, `keep: "-1"`, 1) + "surprise_key: true\n"
	e.writeFile(bad)
	if !e.waitReload("error", errs) {
		e.writeFile(good)
		t.Fatalf("invariant 11: a bad policy file was not counted as a failed reload within 10s; log:\n%s", readTail(e.cur.logPath, 30))
	}
	decisions := e.metric("treasuryd_quote_decisions_total")
	if !poll(10*time.Second, func() bool { return e.metric("treasuryd_quote_decisions_total") > decisions+5 }) {
		e.writeFile(good)
		t.Fatalf("invariant 11: no decisions after a bad reload; log:\n%s", readTail(e.cur.logPath, 30))
	}
	_, st := e.get("http://" + e.httpAddr + "/status")
	for _, p := range soakPolicyFor(e.gen, e.opsOn).Programs {
		if !bytes.Contains(st, []byte(`"`+p.Name+`"`)) {
			t.Errorf("invariant 11: /status lacks program %s after a bad reload", p.Name)
		}
	}
	e.alive()
	e.writeFile(good) // identical to the running policy: no reload counted
	e.n.reloadsBad++
}

func (e *soakEnv) gateOpen() bool { return e.metric("treasuryd_compliance_gate_open") == 1 }

// stepAstralDown takes the index down for 3s: the last good proof keeps the
// gate open (SPEC 5.5) while it is fresh.
func (e *soakEnv) stepAstralDown() {
	t := e.t
	e.alive()
	if !poll(15*time.Second, e.gateOpen) {
		t.Fatalf("compliance gate not open before taking Astral down; log:\n%s", readTail(e.cur.logPath, 30))
	}
	w := window{what: "astral down", start: time.Now()}
	if c, b := e.post("http://"+e.astralAddr+"/_sim/astral/down?on=1", nil); c != 200 {
		t.Fatalf("astral down: %d %s", c, b)
	}
	held := true
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		if !e.gateOpen() {
			held = false
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c, b := e.post("http://"+e.astralAddr+"/_sim/astral/down?on=0", nil); c != 200 {
		t.Fatalf("astral up: %d %s", c, b)
	}
	w.end = time.Now()
	e.astral = append(e.astral, w)
	if !held {
		t.Errorf("SPEC 5.5: the gate closed while Astral was down although the last proof is fresh (window %s..%s)",
			w.start.Format("15:04:05.000"), w.end.Format("15:04:05.000"))
	} else {
		e.n.gateHeldDuringAstralDown++
	}
	e.n.astralDown++
}

// stepRevoke revokes the proof in use: the gate must close within a
// refresh; it stays closed for 2s (a window for invariant 5), then a new
// proof opens it again.
func (e *soakEnv) stepRevoke() {
	t := e.t
	e.alive()
	if !poll(15*time.Second, e.gateOpen) {
		t.Fatalf("compliance gate not open before the revocation; log:\n%s", readTail(e.cur.logPath, 30))
	}
	e.holdProofs(true)
	e.pmu.Lock()
	uids := e.proofs
	e.proofs = nil
	e.pmu.Unlock()
	for _, uid := range uids { // every proof still valid, not only the newest
		if c, b := e.post("http://"+e.astralAddr+"/_sim/astral/revoke?uid="+url.QueryEscape(uid), nil); c != 200 {
			t.Fatalf("revoke: %d %s", c, b)
		}
	}
	revoked := time.Now()
	if !poll(8*time.Second, func() bool { return !e.gateOpen() }) {
		t.Fatalf("SPEC 5.5: the gate did not close within 8s of revoking the proof in use (refresh_interval 1s); log:\n%s",
			readTail(e.cur.logPath, 30))
	}
	w := window{what: "gate closed", start: time.Now()}
	e.logf("gate closed %s after the revocation", w.start.Sub(revoked).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	e.alive()
	if e.gateOpen() {
		t.Fatalf("the gate reopened without a new proof")
	}
	w.end = time.Now()
	e.windows = append(e.windows, w)
	e.holdProofs(false)
	if !poll(10*time.Second, e.gateOpen) {
		t.Fatalf("the gate did not reopen within 10s of a new proof; log:\n%s", readTail(e.cur.logPath, 30))
	}
	e.n.revokes++
}

// stepAgeOut takes Astral down and stops adding proofs: the last good proof
// keeps the gate open only until it is max_proof_age old (SPEC 5.5, fail
// closed), then nothing may move until Astral is back with a new proof.
func (e *soakEnv) stepAgeOut() {
	t := e.t
	e.alive()
	if !poll(15*time.Second, e.gateOpen) {
		t.Fatalf("compliance gate not open before the age-out; log:\n%s", readTail(e.cur.logPath, 30))
	}
	e.holdProofs(true)
	if c, b := e.post("http://"+e.astralAddr+"/_sim/astral/down?on=1", nil); c != 200 {
		t.Fatalf("astral down: %d %s", c, b)
	}
	e.pmu.Lock()
	agedOut := e.newest.Add(soakProofMaxAge)
	e.pmu.Unlock()
	time.Sleep(time.Until(agedOut.Add(500 * time.Millisecond)))
	if !poll(2*time.Second, func() bool { return !e.gateOpen() }) {
		t.Errorf("SPEC 5.5: Astral down, the newest proof older than max_proof_age (%s) since %s, and the gate is still open",
			soakProofMaxAge, agedOut.Format("15:04:05.000"))
	}
	w := window{what: "proof aged out", start: time.Now()}
	e.logf("gate closed %s after the proof aged out", w.start.Sub(agedOut).Round(time.Millisecond))
	time.Sleep(1500 * time.Millisecond)
	e.alive()
	w.end = time.Now()
	e.windows = append(e.windows, w)
	if c, b := e.post("http://"+e.astralAddr+"/_sim/astral/down?on=0", nil); c != 200 {
		t.Fatalf("astral up: %d %s", c, b)
	}
	e.holdProofs(false)
	if !poll(10*time.Second, e.gateOpen) {
		t.Fatalf("the gate did not reopen within 10s of Astral's return with a new proof; log:\n%s", readTail(e.cur.logPath, 30))
	}
	e.n.ageOuts++
}

// stepOperator plays the operator for withdrawals the daemon marked
// unresolved (they block their rule): from the desk's ground truth, tie
// each to the desk request it made, or declare it never executed.
func (e *soakEnv) stepOperator() {
	t := e.t
	e.alive()
	_, body := e.get("http://" + e.httpAddr + "/status")
	var st struct {
		Withdrawals struct {
			Unresolved []struct {
				ID                              int64
				Asset, Amount, Network, Address string
				CreatedAt                       time.Time `json:"created_at"`
			}
		}
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("decode /status: %v\n%s", err, body)
	}
	if len(st.Withdrawals.Unresolved) == 0 {
		return
	}
	j, err := e.openJournal()
	if err != nil {
		t.Fatalf("open journal: %v", err)
	}
	held := map[string]bool{}
	ws, err := j.Withdrawals(context.Background(), journal.WithdrawalFilter{})
	j.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		held[w.DeskID] = true
	}
	desk := e.simState()
	for _, u := range st.Withdrawals.Unresolved {
		answer := map[string]any{"never_executed": true}
		for _, d := range desk.Withdrawals {
			if !held[d.ID] && d.Symbol == u.Asset && dec(d.Amount).Equal(dec(u.Amount)) && d.Network == u.Network &&
				d.Address == u.Address && !parseSimTime(d.CreatedAt).Before(u.CreatedAt) {
				answer = map[string]any{"desk_id": d.ID}
				held[d.ID] = true
				break
			}
		}
		c, b := e.post(fmt.Sprintf("http://%s/withdrawals/%d/resolve", e.httpAddr, u.ID), answer, "Authorization", "Bearer "+soakAdminToken)
		if c != http.StatusOK {
			t.Fatalf("resolve withdrawal %d with %v: %d %s", u.ID, answer, c, b)
		}
		e.logf("operator: withdrawal %d resolved with %v", u.ID, answer)
		e.n.resolved++
	}
}

func (e *soakEnv) admin(path string) {
	e.t.Helper()
	c, b := e.post("http://"+e.httpAddr+path, nil, "Authorization", "Bearer "+soakAdminToken)
	if c != http.StatusOK {
		e.t.Fatalf("POST %s: %d %s", path, c, b)
	}
}

// stepPause pauses for 2s; acrossKill kills -9 and restarts the daemon
// while paused, which must come back paused.
func (e *soakEnv) stepPause(acrossKill bool) {
	t := e.t
	e.alive()
	e.admin("/pause")
	w := window{what: "paused", start: time.Now()}
	if acrossKill {
		time.Sleep(500 * time.Millisecond)
		e.kill9()
		e.startDaemon()
		_, st := e.get("http://" + e.httpAddr + "/status")
		if !bytes.Contains(st, []byte(`"paused": true`)) && !bytes.Contains(st, []byte(`"paused":true`)) {
			t.Fatalf("the pause did not survive kill -9; /status:\n%s", st)
		}
		e.n.pausesAcrossKill++
	}
	time.Sleep(2 * time.Second)
	e.alive()
	if e.metric("treasuryd_paused") != 1 {
		t.Fatalf("treasuryd_paused is not 1 while paused")
	}
	w.end = time.Now()
	e.windows = append(e.windows, w)
	e.admin("/resume")
	e.n.pauses++
}

// stepDeposit tops the hot balances up above the rules' high-water marks,
// so that sweeps go on all run long.
func (e *soakEnv) stepDeposit() {
	for sym, amt := range map[string]string{"BTC": "0.1", "ETH": "0.5"} {
		if c, b := e.post("http://"+e.deskAddr+"/_sim/deposit", map[string]string{"symbol": sym, "amount": amt}); c != 200 {
			e.t.Fatalf("deposit: %d %s", c, b)
		}
	}
	e.n.deposits++
}

// --- the test ------------------------------------------------------------

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	dur := 65 * time.Second // plus start-up and the final checks: about 90 s in all
	if v := os.Getenv("TREASURYD_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("TREASURYD_SOAK=%q: want a positive Go duration", v)
		}
		dur = d
	}
	seed := time.Now().UnixNano() % 1_000_000
	if v := os.Getenv("TREASURYD_SOAK_SEED"); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("TREASURYD_SOAK_SEED=%q: %v", v, err)
		}
		seed = s
	}
	t.Logf("soak: %s, seed %d (rerun with TREASURYD_SOAK_SEED=%d)", dur, seed, seed)
	defer func() { t.Logf("soak: seed %d", seed) }()

	dir := t.TempDir()
	if v := os.Getenv("TREASURYD_SOAK_DIR"); v != "" { // kept after the test, for post-mortems
		dir = filepath.Join(v, fmt.Sprintf("soak-%d", seed))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Logf("soak: logs, policy and journal in %s", dir)
	}
	e := &soakEnv{t: t, dir: dir, bin: binary, rng: rand.New(rand.NewPCG(uint64(seed), 7)), opsOn: true,
		client: &http.Client{Timeout: 10 * time.Second}}
	if os.Getenv("TREASURYD_SOAK_RACE") == "1" {
		e.bin = filepath.Join(e.dir, "treasuryd-race")
		if out, err := exec.Command("go", "build", "-race", "-o", e.bin, ".").CombinedOutput(); err != nil {
			t.Fatalf("go build -race: %v\n%s", err, out)
		}
	}
	scale := 1.0
	if v := os.Getenv("TREASURYD_SOAK_FAULT_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			t.Fatalf("TREASURYD_SOAK_FAULT_SCALE=%q: want a non-negative number", v)
		}
		scale = f
	}
	latency := "20ms"
	if v := os.Getenv("TREASURYD_SOAK_REST_LATENCY"); v != "" {
		latency = v
	}
	e.startSim(seed, scale, latency)
	e.proxy = newDeskProxy(e.deskAddr)
	t.Cleanup(e.proxy.srv.Close)
	e.policyPath = filepath.Join(e.dir, "policy.yaml")
	e.journalPath = filepath.Join(e.dir, "journal.db")
	if v := os.Getenv("TREASURYD_SOAK_POSTGRES"); v == "1" || v == "2" {
		e.pgDSN = pgtest.Database(t)
		t.Log("soak: the journal is PostgreSQL")
	}
	e.httpAddr = freePort(t)
	if os.Getenv("TREASURYD_SOAK_POSTGRES") == "2" {
		e.ha = newSoakHA(e)
		t.Log("soak: two replicas, a leader and a standby")
	}
	if err := e.addProof(); err != nil {
		t.Fatal(err)
	}
	stopProofs := make(chan struct{})
	proofsDone := make(chan struct{})
	go func() { defer close(proofsDone); e.refreshProofs(stopProofs) }()
	defer func() { close(stopProofs); <-proofsDone }()
	e.writePolicy()
	if code, out, errs := runCLI(t, "validate", "-config", e.policyPath); code != 0 {
		t.Fatalf("the soak policy does not validate: %d\n%s%s", code, out, errs)
	}
	t.Cleanup(func() {
		if r := e.cur; r != nil {
			select {
			case <-r.done:
			default:
				r.cmd.Process.Kill()
				<-r.done
			}
			if t.Failed() {
				t.Logf("last daemon run (%d) log tail:\n%s", r.n, readTail(r.logPath, 60))
			}
		}
	})

	stopScrape := make(chan struct{})
	scraped := make(chan struct{})
	var stopOnce sync.Once
	stopScraping := func() { stopOnce.Do(func() { close(stopScrape) }); <-scraped }
	defer stopScraping()
	go func() {
		defer close(scraped)
		tk := time.NewTicker(500 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopScrape:
				return
			case <-tk.C:
				e.scrape()
			}
		}
	}()

	e.startDaemon()
	if !poll(30*time.Second, func() bool { return e.metric("treasuryd_accepts_total", `result="ok"`) > 0 }) {
		t.Fatalf("no accept within 30s of the first start; log:\n%s", readTail(e.cur.logPath, 40))
	}

	// A fixed opening covers every kind of step once; then steps are drawn.
	steps := map[string]func(){
		"reload": e.stepReload, "kill-9": e.stepKill9, "sigterm": e.stepSigterm,
		"pause": func() { e.stepPause(false) }, "pause-across-kill": func() { e.stepPause(true) },
		"revoke": e.stepRevoke, "astral-down": e.stepAstralDown, "allowlist": e.stepAllowlist,
		"bad-reload": e.stepBadReload, "deposit": e.stepDeposit, "sigterm-early": e.stepSigtermEarly,
		"age-out": e.stepAgeOut, "operator": e.stepOperator,
	}
	opening := []string{"reload", "kill-9", "pause", "allowlist", "revoke", "deposit", "sigterm", "astral-down",
		"bad-reload", "pause-across-kill", "allowlist", "deposit", "sigterm-early", "age-out", "kill-9"}
	weighted := []string{"reload", "reload", "kill-9", "kill-9", "sigterm", "sigterm", "sigterm-early", "pause", "pause-across-kill",
		"revoke", "astral-down", "allowlist", "bad-reload", "deposit", "deposit", "age-out", "operator", "operator"}
	if e.ha != nil {
		e.ha.steps(e, steps, &opening, &weighted)
	}
	gap := 1500 * time.Millisecond
	if dur > 5*time.Minute {
		gap = 3 * time.Second
	}
	began := time.Now()
	for i := 0; time.Since(began) < dur; i++ {
		name := weighted[e.rng.IntN(len(weighted))]
		if i < len(opening) {
			name = opening[i]
		}
		e.recenterPrices()
		e.logf("step %d: %s", i+1, name)
		steps[name]()
		e.alive()
		time.Sleep(gap)
	}
	if !e.opsOn { // end with the full policy in force
		e.stepAllowlist()
	}

	// Faults off, a few seconds for open withdrawals to settle, then stop.
	if c, b := e.post("http://"+e.deskAddr+"/_sim/faults", map[string]any{}); c != 200 {
		t.Fatalf("faults off: %d %s", c, b)
	}
	if !poll(20*time.Second, func() bool {
		return e.metric("treasuryd_withdrawals_in_flight") == 0 && e.metric("treasuryd_stream_up") == float64(len(soakPolicyFor(e.gen, e.opsOn).Programs))
	}) {
		e.logf("withdrawals still in flight or streams down after 20s without faults; going on")
	}
	time.Sleep(2 * time.Second)
	e.sigterm("final")
	stopScraping()

	e.check()
	if e.ha != nil {
		e.ha.check(e)
	}
}

// --- the invariants --------------------------------------------------------

type soakChecks struct {
	t      *testing.T
	passed map[string]int // checks passed, by invariant
	failed int
}

func (c *soakChecks) ok(inv string) { c.passed[inv]++ }
func (c *soakChecks) fail(inv string, format string, args ...any) {
	c.t.Helper()
	c.failed++
	if c.failed <= 60 {
		c.t.Errorf("invariant %s: "+format, append([]any{inv}, args...)...)
	}
}

func dec(s string) decimal.Decimal {
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Zero
	}
	return d
}

func parseSimTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// allRuns are the leader runs and the standby runs that never led.
func (e *soakEnv) allRuns() []*soakRun {
	if e.ha == nil {
		return e.runs
	}
	return append(append([]*soakRun(nil), e.runs...), e.ha.idle...)
}

// runOf is the daemon run an instant belongs to.
func (e *soakEnv) runOf(t time.Time) *soakRun {
	var r *soakRun
	for _, x := range e.runs {
		if !x.start.After(t) {
			r = x
		}
	}
	return r
}

// conv is a desk convert made for one of the daemon's accepts.
type conv struct {
	simConvert
	a              journal.Accept
	at             time.Time
	base, notional decimal.Decimal
}

// checkReserves replays the desk's transactions (read straight from the
// desk, faults off) in booking order.
func (e *soakEnv) checkReserves(c *soakChecks, st simState, convs []conv) {
	t := e.t
	req, _ := http.NewRequest(http.MethodGet, "http://"+e.deskAddr+"/v2/transactions/"+soakAccount, nil)
	req.Header.Set("x-astra-api-key", soakAPIKey)
	resp, err := e.client.Do(req)
	if err != nil {
		t.Errorf("read the desk's transactions: %v", err)
		return
	}
	defer resp.Body.Close()
	var txs []struct {
		Symbol         string `json:"symbol"`
		Amount         string `json:"amount"`
		DebitFrom      string `json:"debitFrom"`
		CreditTo       string `json:"creditTo"`
		IdemKey        string `json:"idemKey"`
		TradeDisplayID string `json:"tradeDisplayId"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&txs) != nil {
		t.Errorf("read the desk's transactions: status %d", resp.StatusCode)
		return
	}
	ours := map[string]conv{}
	for _, cv := range convs {
		ours[cv.DisplayID] = cv
	}
	bal := map[string]decimal.Decimal{}
	for i := len(txs) - 1; i >= 0; i-- { // listed newest first
		tx := txs[i]
		switch {
		case tx.CreditTo == soakAccount:
			bal[tx.Symbol] = bal[tx.Symbol].Add(dec(tx.Amount))
		case tx.DebitFrom == soakAccount:
			bal[tx.Symbol] = bal[tx.Symbol].Sub(dec(tx.Amount))
		}
		cv, ok := ours[tx.TradeDisplayID]
		if !ok || !strings.HasSuffix(tx.IdemKey, "_sell") {
			continue
		}
		reserve, found := decimal.Zero, false
		for _, p := range e.candidates(cv.a.SentAt) {
			if pr, ok := p.program(cv.a.Program); ok && (!found || dec(pr.Reserve).LessThan(reserve)) {
				reserve, found = dec(pr.Reserve), true
			}
		}
		if bal[tx.Symbol].LessThan(reserve) {
			c.fail("reserve", "%s: after convert %s (accept %d, sent %s) the %s balance is %s, below the reserve %s",
				cv.a.Program, cv.DisplayID, cv.a.ID, cv.a.SentAt.Format("15:04:05.000"), tx.Symbol, bal[tx.Symbol], reserve)
		} else {
			c.ok("reserve")
		}
	}
	for sym, b := range st.Balances {
		if !dec(b).Equal(bal[sym]) {
			t.Errorf("replaying the desk's transactions gives %s %s, the desk holds %s", bal[sym], sym, b)
		}
	}
}

var quoteIDRe = regexp.MustCompile(`"quoteId"\s*:\s*"([^"]*)"`)

func (e *soakEnv) check() {
	t := e.t
	ctx := context.Background()
	c := &soakChecks{t: t, passed: map[string]int{}}
	st := e.simState()
	posts, statuses, unanswered, badKey := e.proxy.snapshot()

	j, err := e.openJournal()
	if err != nil {
		t.Fatalf("open journal: %v", err)
	}
	// SPEC 13: after every kill -9, restart and fault, the audit chain is
	// whole and every journal row matches its last entry.
	switch v, err := j.VerifyAudit(ctx); {
	case err != nil:
		t.Fatalf("verify the audit chain: %v", err)
	case !v.Intact():
		c.fail("audit", "the audit chain is broken: %s (and %d more)", v.Problems[0], len(v.Problems)-1+v.More)
	default:
		c.ok("audit")
	}
	accepts, err := j.Accepts(ctx, journal.AcceptFilter{})
	if err != nil {
		t.Fatal(err)
	}
	wds, err := j.Withdrawals(ctx, journal.WithdrawalFilter{})
	if err != nil {
		t.Fatal(err)
	}
	// Recorded frames (replay): the receive time of every accepted quote.
	type frameRec struct {
		at  time.Time
		raw []byte
	}
	frames := map[string]frameRec{}
	nFrames := 0
	err = j.Frames(ctx, time.Time{}, "", func(f journal.Frame) error {
		nFrames++
		if f.Outcome == "accepted" {
			if m := quoteIDRe.FindSubmatch(f.Raw); m != nil {
				frames[string(m[1])] = frameRec{f.ReceivedAt, f.Raw}
			}
		}
		return nil
	})
	if err != nil {
		t.Errorf("read recorded frames: %v", err)
	}
	j.Close()

	byQuote := map[string]journal.Accept{}
	for _, a := range accepts {
		if prev, dup := byQuote[a.QuoteID]; dup {
			c.fail("7", "quote %s journaled as two accepts (%d, %d)", a.QuoteID, prev.ID, a.ID)
		}
		byQuote[a.QuoteID] = a
	}
	end := time.Now()

	// 1. min_validity at decision time. The decision lies between the
	// frame's receipt and SentAt: remaining at SentAt >= min_validity proves
	// it; remaining at receipt < min_validity disproves it.
	borderline := 0
	for _, a := range accepts {
		cands := e.candidates(a.SentAt)
		var mv time.Duration = -1
		for _, p := range cands {
			if pr, ok := p.program(a.Program); ok && (mv < 0 || pr.MinValidity < mv) {
				mv = pr.MinValidity
			}
		}
		if mv < 0 {
			c.fail("1", "accept %d of %s: no such program in the policy in force at %s", a.ID, a.Program, a.SentAt)
			continue
		}
		expiry := time.UnixMicro(a.ExpiryMicros)
		left := expiry.Sub(a.SentAt)
		if f, ok := frames[a.QuoteID]; ok && expiry.Sub(f.at) < mv {
			c.fail("1", "accept %d of %s: %s left when its frame arrived, min_validity %s", a.ID, a.Program, expiry.Sub(f.at), mv)
			continue
		}
		switch {
		case left >= mv:
			c.ok("1")
		case left >= mv-250*time.Millisecond:
			borderline++ // decided earlier than journaled; cannot tell more
			c.ok("1")
		default:
			c.fail("1", "accept %d of %s: %s left at SentAt, min_validity %s", a.ID, a.Program, left, mv)
		}
	}

	// Converts booked by the desk for the daemon's accepts.
	var convs []conv
	convByQuote := map[string]bool{}
	for _, sc := range st.Converts {
		if sc.QuoteID == "" {
			continue // an external trade (none in this soak)
		}
		if convByQuote[sc.QuoteID] {
			c.fail("7", "quote %s booked twice at the desk", sc.QuoteID)
		}
		convByQuote[sc.QuoteID] = true
		a, ok := byQuote[sc.QuoteID]
		if !ok {
			c.fail("7", "desk convert %s of quote %s has no journaled accept", sc.DisplayID, sc.QuoteID)
			continue
		}
		cv := conv{simConvert: sc, a: a, at: parseSimTime(sc.CreatedAt)}
		if a.Side == "sell" { // sold base, bought quote
			cv.base, cv.notional = dec(sc.SellQty), dec(sc.BuyQty)
		} else {
			cv.base, cv.notional = dec(sc.BuyQty), dec(sc.SellQty)
		}
		if !cv.base.Equal(a.BaseQty) || !cv.notional.Equal(a.QuoteQty) {
			c.fail("2", "desk convert %s (%s base, %s quote) differs from accept %d (%s, %s)", sc.DisplayID, cv.base, cv.notional, a.ID, a.BaseQty, a.QuoteQty)
		}
		convs = append(convs, cv)
	}
	sort.Slice(convs, func(i, k int) bool { return convs[i].at.Before(convs[k].at) })

	// 2. every booked price within the limit of a policy in force.
	for _, cv := range convs {
		okAny := false
		var limits []string
		for _, p := range e.candidates(cv.a.SentAt) {
			pr, ok := p.program(cv.a.Program)
			if !ok {
				continue
			}
			lim := dec(pr.Limit)
			limits = append(limits, pr.Limit)
			bound := lim.Mul(cv.base)
			if (pr.Side == "sell" && cv.notional.GreaterThanOrEqual(bound)) || (pr.Side == "buy" && cv.notional.LessThanOrEqual(bound)) {
				okAny = true
			}
		}
		if okAny {
			c.ok("2")
		} else {
			c.fail("2", "convert %s of %s: %s %s for %s base is outside limit(s) %v", cv.DisplayID, cv.a.Program, cv.notional, cv.a.QuoteAsset, cv.base, limits)
		}
	}

	// 3. target and max_daily_notional: at every booking, what the desk has
	// executed for the program so far, and what the journal counts (ok,
	// unknown, pending), within the highest cap of a policy in force.
	capOf := func(prog string, at time.Time, field func(soakProgram) string) (decimal.Decimal, bool) {
		best := decimal.Zero
		for _, p := range e.candidates(at) {
			pr, ok := p.program(prog)
			if !ok {
				continue
			}
			v := field(pr)
			if v == "" {
				return decimal.Zero, false
			}
			best = decimal.Max(best, dec(v))
		}
		return best, true
	}
	target := func(p soakProgram) string { return p.Target }
	daily := func(p soakProgram) string { return p.MaxDaily }
	cumBase, cumNotional := map[string]decimal.Decimal{}, map[string]decimal.Decimal{}
	for _, cv := range convs {
		p := cv.a.Program
		cumBase[p] = cumBase[p].Add(cv.base)
		cumNotional[p] = cumNotional[p].Add(cv.notional) // the run is far shorter than 24h: rolling = cumulative
		if tg, ok := capOf(p, cv.a.SentAt, target); ok && cumBase[p].GreaterThan(tg) {
			c.fail("3", "%s: desk executed %s base by convert %s, target %s", p, cumBase[p], cv.DisplayID, tg)
		} else {
			c.ok("3")
		}
		if md, ok := capOf(p, cv.a.SentAt, daily); ok && cumNotional[p].GreaterThan(md) {
			c.fail("3", "%s: desk notional %s by convert %s, max_daily_notional %s", p, cumNotional[p], cv.DisplayID, md)
		} else {
			c.ok("3")
		}
	}
	jBase, jNotional := map[string]decimal.Decimal{}, map[string]decimal.Decimal{}
	for _, a := range accepts {
		if !a.Counts() {
			continue
		}
		jBase[a.Program] = jBase[a.Program].Add(a.BaseQty)
		jNotional[a.Program] = jNotional[a.Program].Add(a.QuoteQty)
		if tg, ok := capOf(a.Program, a.SentAt, target); ok && jBase[a.Program].GreaterThan(tg) {
			c.fail("3", "%s: journal counts %s base at accept %d, target %s", a.Program, jBase[a.Program], a.ID, tg)
		} else {
			c.ok("3")
		}
		if md, ok := capOf(a.Program, a.SentAt, daily); ok && jNotional[a.Program].GreaterThan(md) {
			c.fail("3", "%s: journal counts %s notional at accept %d, max_daily_notional %s", a.Program, jNotional[a.Program], a.ID, md)
		} else {
			c.ok("3")
		}
	}

	// Reserve (SPEC 5.2): replay the desk's ledger in booking order; right
	// after each of the daemon's trades the balance of the asset it sold is
	// at or above the program's reserve.
	e.checkReserves(c, st, convs)

	// 4. per program, accepts never overlap. One without a result time, or
	// settled at the next start, lasts until its run ended.
	byProg := map[string][]journal.Accept{}
	for _, a := range accepts {
		byProg[a.Program] = append(byProg[a.Program], a)
	}
	for prog, as := range byProg {
		sort.Slice(as, func(i, k int) bool { return as[i].SentAt.Before(as[k].SentAt) })
		for i := 1; i < len(as); i++ {
			prev, cur := as[i-1], as[i]
			stop := prev.ResultAt
			if r := e.runOf(prev.SentAt); r != nil && (stop.IsZero() || (!r.end.IsZero() && stop.After(r.end))) {
				stop = r.end
			}
			if stop.IsZero() {
				stop = end
			}
			if cur.SentAt.Before(stop) {
				c.fail("4", "%s: accept %d sent at %s while accept %d (%s, sent %s) was in flight until %s",
					prog, cur.ID, cur.SentAt.Format("15:04:05.000000"), prev.ID, prev.Result, prev.SentAt.Format("15:04:05.000000"), stop.Format("15:04:05.000000"))
			} else {
				c.ok("4")
			}
		}
	}

	// 5. nothing journaled or on the wire while paused or the gate closed.
	for _, w := range e.windows {
		from := w.start.Add(soakJournalSlack)
		for _, a := range accepts {
			if a.SentAt.After(from) && a.SentAt.Before(w.end) {
				c.fail("5", "accept %d of %s journaled at %s while %s (%s..%s)", a.ID, a.Program, a.SentAt.Format("15:04:05.000"), w.what,
					w.start.Format("15:04:05.000"), w.end.Format("15:04:05.000"))
			}
		}
		for _, wd := range wds {
			if wd.CreatedAt.After(from) && wd.CreatedAt.Before(w.end) {
				c.fail("5", "withdrawal %d of %s journaled at %s while %s", wd.ID, wd.Rule, wd.CreatedAt.Format("15:04:05.000"), w.what)
			}
		}
		for _, p := range posts {
			if p.at.After(w.start.Add(soakWireSlack)) && p.at.Before(w.end) {
				c.fail("5", "%s POST reached the desk at %s while %s (%s..%s): %s", p.kind, p.at.Format("15:04:05.000"), w.what,
					w.start.Format("15:04:05.000"), w.end.Format("15:04:05.000"), p.body)
			}
		}
		c.ok("5")
	}

	// 6. withdrawals at the desk: allowlisted then, one in flight per rule,
	// per-asset rolling 24h within max_daily.
	type dw struct {
		simWithdrawal
		at     time.Time
		amount decimal.Decimal
	}
	var desk []dw
	for _, w := range st.Withdrawals {
		desk = append(desk, dw{simWithdrawal: w, at: parseSimTime(w.CreatedAt), amount: dec(w.Amount)})
	}
	sort.Slice(desk, func(i, k int) bool { return desk[i].at.Before(desk[k].at) })
	full := soakPolicyFor(e.gen, true)
	lastOfRule := map[string]dw{}
	for i, w := range desk {
		okAny := false
		for _, p := range e.candidates(w.at) {
			okAny = okAny || p.allowed(w.Symbol, w.Network, w.Address)
		}
		if okAny {
			c.ok("6")
		} else {
			c.fail("6", "desk withdrawal %s to %s %s was not on the allowlist at %s", w.ID, w.Network, w.Address, w.at.Format("15:04:05.000"))
		}
		for _, rm := range e.removals {
			if w.Address == rm.address && !rm.applied.IsZero() && w.at.After(rm.applied.Add(200*time.Millisecond)) &&
				(rm.until.IsZero() || w.at.Before(rm.until)) {
				c.fail("6", "desk withdrawal %s to %s created at %s, after its removal from the allowlist was in force (%s)",
					w.ID, w.Address, w.at.Format("15:04:05.000"), rm.applied.Format("15:04:05.000"))
			}
		}
		rule, ok := full.ruleByAddress(w.Address)
		if !ok {
			c.fail("6", "desk withdrawal %s to %s matches no rule", w.ID, w.Address)
			continue
		}
		if prev, ok := lastOfRule[rule.Name]; ok {
			var done time.Time
			switch prev.Status {
			case "completed":
				done = prev.at.Add(3 * soakWithdrawalStep)
			case "failed":
				done = prev.at.Add(2 * soakWithdrawalStep)
			default:
				done = end
			}
			if w.at.Before(done) {
				c.fail("6", "rule %s: withdrawal %s created at %s while %s (%s, created %s) was in flight until %s",
					rule.Name, w.ID, w.at.Format("15:04:05.000"), prev.ID, prev.Status, prev.at.Format("15:04:05.000"), done.Format("15:04:05.000"))
			} else {
				c.ok("6")
			}
		}
		lastOfRule[rule.Name] = w
		if w.Status == "failed" {
			continue // refunded: it does not count toward max_daily
		}
		used := decimal.Zero
		for _, x := range desk[:i+1] {
			if x.Symbol == w.Symbol && x.Status != "failed" && x.at.After(w.at.Add(-24*time.Hour)) {
				used = used.Add(x.amount)
			}
		}
		capMax := decimal.Zero
		for _, p := range e.candidates(w.at) {
			if r, ok := p.ruleByAddress(w.Address); ok {
				capMax = decimal.Max(capMax, dec(r.MaxDaily))
			}
		}
		if used.GreaterThan(capMax) {
			c.fail("6", "%s withdrawn in 24h up to %s (%s): %s, max_daily %s", w.Symbol, w.ID, rule.Name, used, capMax)
		} else {
			c.ok("6")
		}
	}
	for _, p := range posts {
		if p.kind != "withdraw" {
			continue
		}
		for _, rm := range e.removals {
			if bytes.Contains(p.body, []byte(rm.address)) && !rm.applied.IsZero() && p.at.After(rm.applied.Add(200*time.Millisecond)) &&
				(rm.until.IsZero() || p.at.Before(rm.until)) {
				c.fail("6", "withdrawal POST to removed address %s at %s: %s", rm.address, p.at.Format("15:04:05.000"), p.body)
			}
		}
	}

	// 7. nothing sent twice: quote ids unique on the wire; every desk
	// withdrawal is one journal row; every withdrawal POST had its intent
	// and no intent was POSTed twice.
	wireQuotes := map[string]int{}
	nAcceptPosts := 0
	for _, p := range posts {
		if p.kind != "accept" {
			continue
		}
		nAcceptPosts++
		m := quoteIDRe.FindSubmatch(p.body)
		if m == nil {
			c.fail("7", "accept body without a quoteId: %s", p.body)
			continue
		}
		wireQuotes[string(m[1])]++
	}
	for q, n := range wireQuotes {
		if n > 1 {
			c.fail("7", "quote %s was POSTed to the desk %d times", q, n)
		} else {
			c.ok("7")
		}
	}
	faulted := 0 // answered by the desk's fault layer before its accept handler
	for _, p := range posts {
		if p.kind == "accept" && (p.status == 429 || p.status >= 500) {
			faulted++
		}
	}
	if st.Accepts != nAcceptPosts-faulted {
		t.Logf("note: the desk's accept handler saw %d bodies; the proxy %d accept POSTs, %d of them faulted", st.Accepts, nAcceptPosts, faulted)
	}
	for _, a := range accepts {
		if (a.Result == journal.AcceptOK || a.Result == journal.AcceptRejected) && wireQuotes[a.QuoteID] == 0 {
			c.fail("7", "accept %d (%s) is journaled %s but never reached the desk", a.ID, a.QuoteID, a.Result)
		}
	}
	byDeskID := map[string]journal.Withdrawal{}
	for _, w := range wds {
		if w.DeskID == "" {
			continue
		}
		if prev, dup := byDeskID[w.DeskID]; dup {
			c.fail("7", "desk withdrawal %s is held by journal rows %d and %d", w.DeskID, prev.ID, w.ID)
		}
		byDeskID[w.DeskID] = w
	}
	deskIDs := map[string]bool{}
	explained := map[int64]bool{}
	unmatchedExplained := 0
	for _, w := range desk {
		deskIDs[w.ID] = true
		if jw, ok := byDeskID[w.ID]; ok {
			if jw.Address != w.Address || !jw.Amount.Equal(w.amount) || jw.Asset != w.Symbol {
				c.fail("7", "desk withdrawal %s (%s %s to %s) differs from journal row %d (%s %s to %s)",
					w.ID, w.amount, w.Symbol, w.Address, jw.ID, jw.Amount, jw.Asset, jw.Address)
			} else {
				c.ok("7")
			}
			continue
		}
		found := false
		for _, jw := range wds { // an intent the daemon has not tied to its desk id yet
			if jw.DeskID == "" && !explained[jw.ID] && jw.Asset == w.Symbol && jw.Amount.Equal(w.amount) && jw.Address == w.Address &&
				!w.at.Before(jw.CreatedAt) && (jw.State == journal.WithdrawalUnknown || jw.State == journal.WithdrawalUnresolved || jw.State == journal.WithdrawalIntent) {
				explained[jw.ID], found = true, true
				unmatchedExplained++
				break
			}
		}
		if !found {
			c.fail("7", "desk withdrawal %s (%s %s to %s at %s) matches no journal row", w.ID, w.amount, w.Symbol, w.Address, w.at.Format("15:04:05.000"))
		}
	}
	for id, jw := range byDeskID {
		if !deskIDs[id] {
			c.fail("7", "journal row %d holds desk id %s, which the desk does not have", jw.ID, id)
		}
	}
	usedIntent := map[int64]bool{}
	for _, p := range posts {
		if p.kind != "withdraw" {
			continue
		}
		var body struct {
			InstrumentSymbol, Amount, Network, Address string
		}
		if err := json.Unmarshal(p.body, &body); err != nil {
			c.fail("7", "withdrawal POST body does not decode: %s", p.body)
			continue
		}
		var pick *journal.Withdrawal
		for i := range wds {
			jw := &wds[i]
			if usedIntent[jw.ID] || jw.Asset != body.InstrumentSymbol || !jw.Amount.Equal(dec(body.Amount)) ||
				jw.Network != body.Network || jw.Address != body.Address || jw.CreatedAt.After(p.at) {
				continue
			}
			pick = jw // the latest such intent before the POST
		}
		if pick == nil {
			c.fail("7", "withdrawal POST at %s has no journaled intent before it (or re-sends one): %s", p.at.Format("15:04:05.000"), p.body)
			continue
		}
		usedIntent[pick.ID] = true
		c.ok("7")
	}

	// 8. every accept body is {"quote":<raw quote as journaled>}, and the
	// frame as the desk sent it where it was recorded.
	for _, p := range posts {
		if p.kind != "accept" {
			continue
		}
		m := quoteIDRe.FindSubmatch(p.body)
		if m == nil {
			continue
		}
		a, ok := byQuote[string(m[1])]
		if !ok {
			c.fail("8", "accept of quote %s reached the desk but is not journaled", m[1])
			continue
		}
		want := append(append([]byte(`{"quote":`), a.RawQuote...), '}')
		if !bytes.Equal(p.body, want) {
			c.fail("8", "accept %d body differs from the journaled quote:\n got %s\nwant %s", a.ID, p.body, want)
			continue
		}
		if a.SentAt.After(p.at) {
			c.fail("7", "accept %d reached the desk (%s) before it was journaled (%s)", a.ID, p.at, a.SentAt)
		}
		if f, ok := frames[a.QuoteID]; ok && !bytes.Equal(f.raw, p.body) {
			c.fail("8", "accept %d body differs from the frame as received:\n got %s\nwant %s", a.ID, p.body, f.raw)
			continue
		}
		c.ok("8")
	}

	// 9. secrets: daemon logs, /status and /metrics (scraped all run long).
	e.mu.Lock()
	leaks := append([]string(nil), e.leaks...)
	scrapes := e.scrapes
	e.mu.Unlock()
	for _, r := range e.allRuns() {
		b, _ := os.ReadFile(r.logPath)
		for _, sec := range []string{soakAPIKey, soakAdminToken} {
			if bytes.Contains(b, []byte(sec)) {
				leaks = append(leaks, fmt.Sprintf("run %d log holds a secret", r.n))
			}
		}
	}
	// The daemon's own alarms: a panic, a data race (TREASURYD_SOAK_RACE),
	// and, for the summary, what it logged at error level.
	errorMsgs, periodic, recRuns := map[string]int{}, map[string]int{}, map[string]int{}
	failedAtDesk := map[string]bool{}
	for _, w := range st.Withdrawals {
		if w.Status == "failed" && w.Error == "simulated withdrawal failure" {
			failedAtDesk[w.ID] = true
		}
	}
	for _, r := range e.allRuns() {
		f, err := os.Open(r.logPath)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "WARNING: DATA RACE") || strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:") {
				c.fail("crash", "run %d: %s (see %s)", r.n, line, r.logPath)
			}
			var rec struct {
				Level, Msg string
				Breaks     []struct{ Kind, Ref, Detail string } `json:"-"`
			}
			var raw map[string]json.RawMessage
			if json.Unmarshal([]byte(line), &rec) != nil || json.Unmarshal([]byte(line), &raw) != nil {
				continue
			}
			// "breaks" appears twice in the daemon's line (the count, then
			// the list); the last one, the list, is what a map keeps.
			if b := raw["breaks"]; len(b) > 0 && b[0] == '[' {
				if err := json.Unmarshal(b, &rec.Breaks); err != nil {
					t.Errorf("run %d: undecodable breaks in %s", r.n, line)
				}
			}
			if rec.Level == "error" {
				errorMsgs[rec.Msg]++
			}
			if strings.HasPrefix(rec.Msg, "reconciliation ") {
				recRuns[strings.TrimPrefix(rec.Msg, "reconciliation ")]++
			}
			// The daemon's own scheduled reconciliations: nobody but the
			// daemon touches this account, so every break other than a
			// failure the simulator injected is a false alarm.
			for _, b := range rec.Breaks {
				if b.Kind == "failed_withdrawal" && failedAtDesk[b.Ref] {
					continue
				}
				periodic[b.Kind]++
				if periodic[b.Kind] <= 3 {
					c.fail("reconcile", "run %d: a scheduled reconciliation reported %s %s: %s", r.n, b.Kind, b.Ref, b.Detail)
				} else {
					c.failed++
				}
			}
		}
		f.Close()
	}
	for _, l := range leaks {
		c.fail("9", "%s", l)
	}
	if len(leaks) == 0 {
		c.ok("9")
	}
	if badKey > 0 {
		t.Errorf("%d desk requests without the API key", badKey)
	}

	// 10 and 11 were checked as they happened.
	c.passed["10"] = e.n.sigterm
	c.passed["11"] = e.n.reloadsBad

	// Finally the reconciliation, faults off: clean, except for failed
	// withdrawals, which -withdraw-fail makes on purpose and which the
	// report rightly lists for 24h (SPEC 5.4 failed_withdrawal).
	rc := exec.Command(e.bin, "reconcile", "-config", e.policyPath)
	rc.Env = append(os.Environ(), "ASTRA_API_KEY="+soakAPIKey, "TREASURYD_ADMIN_TOKEN="+soakAdminToken, soakDSNEnv+"="+e.pgDSN)
	var outb, errb bytes.Buffer
	rc.Stdout, rc.Stderr = &outb, &errb
	if err := rc.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("treasuryd reconcile: %v", err)
		}
	}
	code, out, errs := rc.ProcessState.ExitCode(), outb.String(), errb.String()
	for _, sec := range []string{soakAPIKey, soakAdminToken} {
		if strings.Contains(out, sec) || strings.Contains(errs, sec) {
			c.fail("9", "treasuryd reconcile printed a secret")
		}
	}
	explainedBreaks, otherBreaks := 0, []string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	inBreaks := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasSuffix(line, "break(s):"):
			inBreaks = true
			continue
		case !strings.HasPrefix(line, "  "):
			inBreaks = false
		}
		if !inBreaks {
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "failed_withdrawal" && failedAtDesk[f[2]] {
			explainedBreaks++
			continue
		}
		otherBreaks = append(otherBreaks, strings.TrimSpace(line))
	}
	switch {
	case code == 0:
		c.ok("reconcile")
	case code == 3 && len(otherBreaks) == 0 && explainedBreaks > 0:
		c.ok("reconcile")
	default:
		c.fail("reconcile", "treasuryd reconcile exit %d, unexplained breaks %q\n%s\n%s", code, otherBreaks, out, errs)
	}

	// After the reconciliation every accept is settled: ok exactly for the
	// quotes the desk booked.
	j2, err := e.openJournal()
	if err != nil {
		t.Fatal(err)
	}
	settled, err := j2.Accepts(ctx, journal.AcceptFilter{})
	j2.Close()
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]int{}
	for _, a := range settled {
		results[a.Result]++
		booked := convByQuote[a.QuoteID]
		switch {
		case a.Result == journal.AcceptOK && !booked:
			c.fail("reconcile", "accept %d (%s) is ok in the journal but the desk did not book quote %s", a.ID, a.Program, a.QuoteID)
		case booked && a.Result != journal.AcceptOK:
			c.fail("reconcile", "the desk booked quote %s but accept %d (%s) is %s after reconciliation", a.QuoteID, a.ID, a.Program, a.Result)
		}
	}

	// Summary.
	var quotes, reconnects, badFrames, decisions, expiring float64
	outcomes := map[string]float64{}
	for _, r := range e.runs {
		quotes += sum(r.last, "treasuryd_quotes_received_total")
		reconnects += sum(r.last, "treasuryd_stream_reconnects_total")
		badFrames += sum(r.last, "treasuryd_stream_bad_frames_total")
		decisions += sum(r.last, "treasuryd_quote_decisions_total")
		expiring += sum(r.last, "treasuryd_quote_decisions_total", `outcome="expiring"`)
		for _, o := range []string{"accepted", "paused", "compliance", "expiring", "limit_price", "reference", "cooldown",
			"target_reached", "daily_cap", "reserve", "in_flight", "invalid"} {
			outcomes[o] += sum(r.last, "treasuryd_quote_decisions_total", `outcome="`+o+`"`)
		}
	}
	wdStatus := map[string]int{}
	for _, w := range st.Withdrawals {
		wdStatus[w.Status]++
	}
	jwStates := map[string]int{}
	for _, w := range wds {
		jwStates[w.State]++
	}
	blackholedAccepts, blackholedWd := 0, 0
	for _, p := range posts {
		if !p.answered {
			if p.kind == "accept" {
				blackholedAccepts++
			} else {
				blackholedWd++
			}
		}
	}
	var maxStop time.Duration
	for _, d := range e.n.sigtermTook {
		maxStop = max(maxStop, d)
	}
	f5xx := statuses[500] + statuses[502] + statuses[503]
	passed := make([]string, 0, len(c.passed))
	for k, v := range c.passed {
		passed = append(passed, fmt.Sprintf("%s:%d", k, v))
	}
	sort.Strings(passed)
	t.Logf(`soak summary (%s of chaos, %d daemon runs):
  quotes: desk sent %d, daemon received %.0f (decisions %.0f), recorded frames %d
  outcomes: %v
  accepts: desk booked %d, accept POSTs %d; journal %v after reconciliation
  expiring decisions %.0f; min_validity borderline accepts %d
  withdrawals: desk %d %v; journal %v; desk ids explained by intents not yet tied %d
  faults: 5xx %d, 429 %d, unanswered REST %d (accept %d, withdrawal %d), stream reconnects %.0f, bad frames %.0f
  restarts: kill -9 %d (pause across kill %d), SIGTERM %d exited 0 (slowest %s), %d during start-up, %d failed
  reloads: ok %d, bad %d, allowlist removals %d / restores %d; astral down %d (gate held %d), revocations %d, proof age-outs %d, pauses %d, deposits %d, operator resolutions %d
  metrics/status scrapes %d; reconcile exit %d (failed_withdrawal breaks explained %d)
  daemon error logs: %v; scheduled reconciliations %v, unexplained breaks in them: %v
  invariant checks passed: %s; failed: %d`,
		time.Since(e.runs[0].start).Round(time.Second), len(e.runs),
		st.QuotesSent, quotes, decisions, nFrames,
		outcomes,
		len(convs), nAcceptPosts, results,
		expiring, borderline,
		len(st.Withdrawals), wdStatus, jwStates, unmatchedExplained,
		f5xx, statuses[429], unanswered, blackholedAccepts, blackholedWd, reconnects, badFrames,
		e.n.kill9, e.n.pausesAcrossKill, e.n.sigterm, maxStop.Round(time.Millisecond), e.n.sigtermEarly, e.n.sigtermFailed,
		e.n.reloadsOK, e.n.reloadsBad, e.n.allowlistRemovals, e.n.allowlistRestores, e.n.astralDown, e.n.gateHeldDuringAstralDown,
		e.n.revokes, e.n.ageOuts, e.n.pauses, e.n.deposits, e.n.resolved,
		scrapes, code, explainedBreaks, errorMsgs, recRuns, periodic,
		strings.Join(passed, " "), c.failed)
	// The soak must have exercised what it claims to.
	for what, n := range map[string]int{"booked converts": len(convs), "desk withdrawals": len(st.Withdrawals),
		"kill -9": e.n.kill9, "SIGTERM": e.n.sigterm, "reloads": e.n.reloadsOK, "bad reloads": e.n.reloadsBad,
		"pause windows": e.n.pauses, "gate closings": e.n.revokes, "allowlist removals": e.n.allowlistRemovals} {
		if n == 0 {
			t.Errorf("the soak exercised no %s", what)
		}
	}
}

// --- directed tests for what the soak found --------------------------------

// minimalPolicy is a one-program policy against a standalone astra-sim.
func minimalPolicy(s *astraSim, dir, httpAddr string, compliance bool, extra string) string {
	comp := "compliance: { enabled: false }\n"
	if compliance {
		comp = fmt.Sprintf(`compliance:
  enabled: true
  subject: %q
  chains: ["base"]
  trusted_provers: [%q]
  refresh_interval: 1s
  allow: [ { name: eu, bbox: [-10.0, 35.0, 30.0, 60.0] } ]
`, soakSubject, soakProver)
	}
	return fmt.Sprintf(`account_id: %q
astra: { base_url: "http://%s/v2", ws_url: "ws://%s/v2", request_timeout: 1s }
astral: { base_url: "http://%s", request_timeout: 1s }
state: { path: %q }
http: { listen: %q }
shutdown_timeout: %s
%sprograms:
  - { name: "sell-btc", base: BTC, quote: USD, side: sell, size: "0.001", limit_price: "1000", cooldown: 300ms, min_validity: 300ms, reserve: "1" }
reconcile: { schedule: "@every 1h" }
%s`, soakAccount, s.desk, s.desk, s.astral, filepath.Join(dir, "journal.db"), httpAddr, soakShutdownTimeout, comp, extra)
}

// TestReloadEnablingComplianceGatesAccepts: a daemon started with
// compliance disabled that reloads a policy enabling it must gate its
// accepts from then on (SPEC 3 reload, SPEC 7.5): here the subject has no
// proof at all, so no accept may follow the reload.
func TestReloadEnablingComplianceGatesAccepts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon against astra-sim")
	}
	dir := t.TempDir()
	s := startAstraSim(t, dir, "-quote-interval", "100ms")
	addr := freePort(t)
	policy := filepath.Join(dir, "policy.yaml")
	write := func(content string) {
		tmp := policy + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, policy); err != nil {
			t.Fatal(err)
		}
	}
	write(minimalPolicy(s, dir, addr, false, ""))
	d := startDaemon(t, policy, addr, "ASTRA_API_KEY="+soakAPIKey)
	waitFor(t, 20*time.Second, "an accept with compliance disabled", func() bool {
		return d.metric("treasuryd_accepts_total", `result="ok"`) > 0
	})
	write(minimalPolicy(s, dir, addr, true, ""))
	waitFor(t, 10*time.Second, "the reload", func() bool { return d.metric("treasuryd_config_reloads_total", `result="ok"`) > 0 })
	time.Sleep(1500 * time.Millisecond) // one refresh_interval and then some
	before := d.metric("treasuryd_accepts_total")
	time.Sleep(3 * time.Second) // 30 quotes, a 300ms cooldown: ~10 accepts if the gate stays open
	after := d.metric("treasuryd_accepts_total")
	_, status := d.get("/status")
	if after != before || d.metric("treasuryd_compliance_gate_open") != 0 {
		t.Fatalf("compliance enabled by reload, the subject has no proof, yet accepts went from %v to %v and the gate metric is %v; /status:\n%s",
			before, after, d.metric("treasuryd_compliance_gate_open"), status)
	}
}

// TestSIGTERMWhileStartingExitsZero: SIGTERM while the daemon is still
// starting (here: resolving a withdrawal left open by kill -9 against a
// slow desk) must still stop it gracefully with exit 0 within the shutdown
// timeout (SPEC 7.10; Kubernetes may stop a pod at any time).
func TestSIGTERMWhileStartingExitsZero(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon against astra-sim")
	}
	dir := t.TempDir()
	s := startAstraSim(t, dir, "-withdraw-blackhole", "1")
	addr := freePort(t)
	policy := filepath.Join(dir, "policy.yaml")
	rule := fmt.Sprintf(`withdraw:
  allowlist: [ { asset: BTC, network: bitcoin, address: %q } ]
rebalance:
  schedule: "@every 1s"
  rules:
    - { name: "btc-cold", asset: BTC, network: bitcoin, address: %q, high_water: "3", keep: "2", max_amount: "0.1" }
`, soakBTCAddr, soakBTCAddr)
	if err := os.WriteFile(policy, []byte(minimalPolicy(s, dir, addr, false, rule)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := "ASTRA_API_KEY=" + soakAPIKey
	d := startDaemon(t, policy, addr, env)
	waitFor(t, 20*time.Second, "a withdrawal intent", func() bool {
		return d.metric("treasuryd_withdrawals_total", `status="intent"`) > 0
	})
	d.cmd.Process.Kill() // its POST is blackholed: the intent stays open
	<-d.done
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Post("http://"+s.desk+"/_sim/faults", "application/json", strings.NewReader(`{"restLatency":"3s"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	d2 := startDaemon(t, policy, addr, env)
	waitFor(t, 20*time.Second, "start-up resolving the open withdrawal", func() bool {
		return strings.Contains(d2.Logs(), "resolving open withdrawals")
	})
	start := time.Now()
	d2.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d2.done:
	case <-time.After(soakShutdownTimeout + soakStopSlack):
		t.Fatalf("no exit within %s of SIGTERM during start-up", soakShutdownTimeout+soakStopSlack)
	}
	if code := d2.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("SIGTERM during start-up: exit %d (%s) after %s; want 0. Logs:\n%s",
			code, d2.cmd.ProcessState, time.Since(start).Round(time.Millisecond), tail(d2.Logs(), 15))
	}
}

// TestScheduledReconciliationIsCleanWhileTrading: on an account that only
// the daemon touches, its own scheduled reconciliations must report no
// break while it trades and sweeps. A slow desk (400 ms per request) widens
// the gaps between the reads of one run: balances before history, journal
// before the desk's withdrawal list.
func TestScheduledReconciliationIsCleanWhileTrading(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon against astra-sim")
	}
	dir := t.TempDir()
	s := startAstraSim(t, dir, "-quote-interval", "100ms", "-rest-latency", "400ms", "-withdrawal-step", "300ms")
	addr := freePort(t)
	policy := filepath.Join(dir, "policy.yaml")
	extra := fmt.Sprintf(`withdraw:
  allowlist: [ { asset: BTC, network: bitcoin, address: %q } ]
rebalance:
  schedule: "@every 1s"
  rules:
    - { name: "btc-cold", asset: BTC, network: bitcoin, address: %q, high_water: "3", keep: "2", max_amount: "0.001" }
`, soakBTCAddr, soakBTCAddr)
	content := strings.Replace(minimalPolicy(s, dir, addr, false, extra), `reconcile: { schedule: "@every 1h" }`, `reconcile: { schedule: "@every 3s" }`, 1)
	content = strings.Replace(content, "request_timeout: 1s }\nastral", "request_timeout: 3s }\nastral", 1)
	content = strings.Replace(content, "cooldown: 300ms", "cooldown: 0s", 1)
	if err := os.WriteFile(policy, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, policy, addr, "ASTRA_API_KEY="+soakAPIKey)
	waitFor(t, 60*time.Second, "six scheduled reconciliations", func() bool {
		return d.metric("treasuryd_reconcile_runs_total") >= 6
	})
	if d.metric("treasuryd_accepts_total", `result="ok"`) == 0 || d.metric("treasuryd_withdrawals_total", `status="submitted"`) == 0 {
		t.Fatalf("the daemon neither traded nor swept; nothing was tested")
	}
	if n := d.metric("treasuryd_reconcile_runs_total", `result="breaks"`); n > 0 {
		var lines []string
		for _, l := range strings.Split(d.Logs(), "\n") {
			if strings.Contains(l, "reconciliation found breaks") {
				lines = append(lines, l)
			}
		}
		t.Fatalf("%v of %v scheduled reconciliations found breaks on an account only the daemon touches:\n%s",
			n, d.metric("treasuryd_reconcile_runs_total"), strings.Join(lines, "\n"))
	}
}
