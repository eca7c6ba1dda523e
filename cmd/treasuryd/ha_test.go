package main

// Hot-standby takeover tests (SPEC 11, 7.13, 8): two real treasuryd
// processes on one PostgreSQL journal against the desk simulator, accepts and
// withdrawals under way. After each fault, the simulator's ground truth must
// show no quote accepted twice, no withdrawal paid twice, and the program's
// target and daily cap and the rule's max_daily held.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/journal"
	"treasuryd/internal/pgtest"
	"treasuryd/internal/sim"
)

const (
	haLease = 2 * time.Second
	// haTarget and haCap bound the program (0.01 BTC per accept at about
	// 65,000 USD): the daily cap stops it after about 30 accepts, the
	// target after 50; both are checked against the desk.
	haTarget   = "0.5"
	haCap      = "20000"
	haMaxDaily = "1"
)

type haEnv struct {
	desk   *sim.Desk
	dsn    string
	env    []string
	policy [2]string
	addr   [2]string
}

func newHAEnv(t *testing.T) *haEnv {
	t.Helper()
	return newHAEnvOn(t, pgtest.Database(t)) // the lock is per database: one per test
}

func newHAEnvOn(t *testing.T, dsn string) *haEnv {
	t.Helper()
	desk, err := sim.NewDesk(sim.DeskConfig{
		AccountID: crashAccount, APIKey: crashAPIKey, Seed: 17,
		Balances:       map[string]decimal.Decimal{"BTC": decimal.RequireFromString("5"), "USD": decimal.RequireFromString("1000")},
		Prices:         map[string]decimal.Decimal{"BTC-USD": decimal.RequireFromString("65000")},
		VolatilityBps:  decimal.RequireFromString("20"),
		QuoteInterval:  200 * time.Millisecond,
		QuoteTTL:       5 * time.Second,
		WithdrawalStep: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := desk.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { desk.Close() })
	e := &haEnv{desk: desk, dsn: dsn, env: []string{"CRASH_TEST_ASTRA_KEY=" + crashAPIKey,
		"CRASH_TEST_ADMIN_TOKEN=" + crashAdminToken, "HA_TEST_DSN=" + dsn}}
	dir := t.TempDir()
	for i := range e.policy {
		e.addr[i] = freePort(t)
		var b strings.Builder
		fmt.Fprintf(&b, "account_id: %q\n", crashAccount)
		fmt.Fprintf(&b, "astra: { base_url: %q, ws_url: %q, api_key_env: CRASH_TEST_ASTRA_KEY, request_timeout: 2s }\n",
			desk.BaseURL(), desk.WSURL())
		fmt.Fprintf(&b, "state: { postgres_dsn_env: HA_TEST_DSN }\nha: { lease: %s }\n", haLease)
		fmt.Fprintf(&b, "http: { listen: %q, admin_token_env: CRASH_TEST_ADMIN_TOKEN }\nshutdown_timeout: 5s\n", e.addr[i])
		b.WriteString("compliance: { enabled: false }\n")
		fmt.Fprintf(&b, `programs:
  - { name: %q, base: BTC, quote: USD, side: sell, size: "0.01", limit_price: "1", cooldown: 300ms, min_validity: 100ms, reserve: "0", target: %q, max_daily_notional: %q }
`, crashProgram, haTarget, haCap)
		fmt.Fprintf(&b, "withdraw:\n  allowlist:\n    - { asset: BTC, network: bitcoin, address: %q }\n", crashAddress)
		fmt.Fprintf(&b, `rebalance:
  schedule: "@every 1s"
  rules:
    - { name: %q, asset: BTC, network: bitcoin, address: %q, high_water: "3", keep: "2", min_amount: "0.01", max_amount: "0.25", max_daily: %q }
`, crashRule, crashAddress, haMaxDaily)
		b.WriteString("reconcile: { tolerance: \"0\" }\n")
		e.policy[i] = filepath.Join(dir, fmt.Sprintf("policy-%d.yaml", i))
		if err := os.WriteFile(e.policy[i], []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *haEnv) start(t *testing.T, i int) *daemon {
	t.Helper()
	return startDaemon(t, e.policy[i], e.addr[i], e.env...)
}

// role reads a daemon's /status role ("" when it does not answer).
func (d *daemon) role() string {
	code, body := d.get("/status")
	if code != 200 {
		return ""
	}
	var st struct {
		Role string `json:"role"`
	}
	json.Unmarshal([]byte(body), &st)
	return st.Role
}

func (d *daemon) leads() bool {
	code, _ := d.get("/readyz")
	return code == 200 && d.role() == "leader" && d.metric("treasuryd_leader") == 1
}

// pair starts two daemons and returns (leader, standby) once one leads and
// the other is a standby that is not ready.
func (e *haEnv) pair(t *testing.T) (*daemon, *daemon) {
	t.Helper()
	a := e.start(t, 0)
	waitFor(t, 20*time.Second, "the first daemon to lead", a.leads)
	b := e.start(t, 1)
	waitFor(t, 10*time.Second, "the second daemon to serve as standby", func() bool { return b.role() == "standby" })
	if code, _ := b.get("/readyz"); code != 503 {
		t.Fatalf("the standby's /readyz answers %d; want 503", code)
	}
	if b.metric("treasuryd_leader") != 0 {
		t.Fatal("the standby reports treasuryd_leader 1")
	}
	return a, b
}

// underWay waits until the leader has made accepts and a withdrawal.
func (e *haEnv) underWay(t *testing.T) {
	t.Helper()
	waitFor(t, 20*time.Second, "accepts and a withdrawal under way", func() bool {
		return len(e.desk.Converts()) >= 3 && len(e.desk.Withdrawals()) >= 1
	})
}

// check verifies the ground truth against the journal and the policy.
func (e *haEnv) check(t *testing.T) {
	t.Helper()
	j, err := journal.OpenPostgresReadOnly(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	as, err := j.Accepts(ctx, journal.AcceptFilter{})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := j.Withdrawals(ctx, journal.WithdrawalFilter{})
	if err != nil {
		t.Fatal(err)
	}
	// No quote accepted twice: at the desk (every accept body and every
	// convert names its quote) and in the journal.
	seen := map[string]bool{}
	for _, c := range e.desk.Converts() {
		if seen[c.QuoteID] {
			t.Errorf("quote %s was booked twice at the desk", c.QuoteID)
		}
		seen[c.QuoteID] = true
	}
	sentBodies := map[string]int{}
	for _, b := range e.desk.AcceptBodies() {
		var q struct {
			Quote struct {
				QuoteID string `json:"quoteId"`
			} `json:"quote"`
		}
		if err := json.Unmarshal(b, &q); err != nil || q.Quote.QuoteID == "" {
			t.Errorf("the desk received an accept without a quote id: %q", b)
			continue
		}
		sentBodies[q.Quote.QuoteID]++
	}
	for id, n := range sentBodies {
		if n > 1 {
			t.Errorf("quote %s was sent %d times", id, n)
		}
	}
	jq := map[string]bool{}
	for _, a := range as {
		if jq[a.QuoteID] {
			t.Errorf("quote %s journaled twice", a.QuoteID)
		}
		jq[a.QuoteID] = true
	}
	for id := range sentBodies {
		if !jq[id] {
			t.Errorf("the desk received quote %s that no journal record covers (sent unjournaled, or by a fenced writer)", id)
		}
	}
	// Target and daily cap, from what the desk booked.
	sold, notional := decimal.Zero, decimal.Zero
	for _, c := range e.desk.Converts() {
		sold = sold.Add(c.SellQty)
		notional = notional.Add(c.BuyQty)
	}
	if sold.GreaterThan(decimal.RequireFromString(haTarget)) {
		t.Errorf("the desk sold %s BTC, above the target %s", sold, haTarget)
	}
	if notional.GreaterThan(decimal.RequireFromString(haCap)) {
		t.Errorf("the desk booked %s USD, above max_daily_notional %s", notional, haCap)
	}
	// No withdrawal paid twice: each desk withdrawal is one journal intent,
	// and the total is within max_daily.
	paid := decimal.Zero
	for _, w := range e.desk.Withdrawals() {
		paid = paid.Add(w.Amount)
	}
	if paid.GreaterThan(decimal.RequireFromString(haMaxDaily)) {
		t.Errorf("the desk paid out %s BTC, above max_daily %s", paid, haMaxDaily)
	}
	if n, m := len(e.desk.Withdrawals()), len(ws); n > m {
		t.Errorf("the desk holds %d withdrawals for %d journal intents", n, m)
	}
	desk := map[string]int{}
	for _, w := range ws {
		if w.DeskID != "" {
			desk[w.DeskID]++
			if desk[w.DeskID] > 1 {
				t.Errorf("desk withdrawal %s is matched by two intents", w.DeskID)
			}
		}
	}
	t.Logf("ground truth: %d converts (%s BTC, %s USD), %d withdrawals (%s BTC); journal: %d accepts, %d intents",
		len(e.desk.Converts()), sold, notional, len(e.desk.Withdrawals()), paid, len(as), len(ws))
}

// takeover waits until d leads, failing after the lease plus 5 s from since
// (SPEC 8), and returns how long it took.
func takeover(t *testing.T, d *daemon, since time.Time) time.Duration {
	t.Helper()
	limit := haLease + 5*time.Second
	for time.Since(since) < limit {
		if d.leads() {
			return time.Since(since)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the standby did not lead within %s (ha.lease + 5s)", limit)
	return 0
}

func TestHATakeoverAfterKill9OfTheLeader(t *testing.T) {
	e := newHAEnv(t)
	a, b := e.pair(t)
	e.underWay(t)
	killed := time.Now()
	a.cmd.Process.Signal(syscall.SIGKILL)
	<-a.done
	took := takeover(t, b, killed)
	t.Logf("the standby led %s after kill -9 of the leader", took)
	// The new leader acts: it decides on quotes again (or its caps stop it).
	before := b.metric("treasuryd_quote_decisions_total")
	waitFor(t, 10*time.Second, "the new leader to decide on quotes", func() bool {
		return b.metric("treasuryd_quote_decisions_total") > before
	})
	time.Sleep(2 * time.Second)
	if code, _ := b.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("the new leader exited %d after SIGTERM", code)
	}
	e.check(t)
	// The one-shot commands work on the PostgreSQL journal too.
	t.Setenv("HA_TEST_DSN", e.dsn)
	t.Setenv("CRASH_TEST_ASTRA_KEY", crashAPIKey)
	if code, out, errs := runCLI(t, "replay", "-config", e.policy[0], "-json"); code != 0 || !strings.Contains(out, crashProgram) {
		t.Errorf("replay on PostgreSQL: exit %d\n%s\n%s", code, out, tail(errs, 10))
	}
	if code, out, errs := runCLI(t, "reconcile", "-config", e.policy[0]); code != 0 && code != 3 {
		t.Errorf("reconcile on PostgreSQL: exit %d\n%s\n%s", code, out, tail(errs, 10))
	}
	// The audit chain, with both leadership terms, verifies intact.
	code, out, errs := runCLI(t, "audit", "verify", "-postgres-dsn-env", "HA_TEST_DSN")
	if code != 0 || !strings.Contains(out, "audit chain intact") {
		t.Errorf("audit verify on PostgreSQL: exit %d\n%s\n%s", code, out, tail(errs, 10))
	}
	e.requireTerms(t, 2)
}

// requireTerms checks that the audit chain holds n leadership terms.
func (e *haEnv) requireTerms(t *testing.T, n int) {
	t.Helper()
	j, err := journal.OpenPostgresReadOnly(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	got := 0
	err = j.AuditEntries(context.Background(), time.Time{}, func(en journal.AuditEntry) error {
		if en.Kind == journal.AuditLeadershipTerm {
			got++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Errorf("the audit chain holds %d leadership terms, want %d", got, n)
	}
}

func TestHAPausedLeaderIsFencedAndStepsDown(t *testing.T) {
	e := newHAEnv(t)
	a, b := e.pair(t)
	e.underWay(t)
	paused := time.Now()
	a.cmd.Process.Signal(syscall.SIGSTOP)
	took := takeover(t, b, paused)
	t.Logf("the standby led %s after SIGSTOP of the leader", took)
	// The old leader wakes past its lease: it must send nothing under its
	// old term (check: every quote the desk received is journaled, none
	// twice) and step down to standby.
	a.cmd.Process.Signal(syscall.SIGCONT)
	waitFor(t, 15*time.Second, "the woken leader to step down to standby", func() bool { return a.role() == "standby" })
	if !b.leads() {
		t.Fatal("the new leader no longer leads after the old one woke")
	}
	logs := a.Logs()
	if !strings.Contains(logs, "stepping down") {
		t.Errorf("the woken leader did not log its step-down:\n%s", tail(logs, 30))
	}
	time.Sleep(2 * time.Second)
	for _, d := range []*daemon{a, b} {
		if code, _ := d.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
			t.Fatalf("exit %d after SIGTERM", code)
		}
	}
	e.check(t)
}

// TestHAPostgresRestartUnderLoad restarts the PostgreSQL server while the
// pair works: a private server (pgtest.StartServer), since restarting the
// shared one would break the other packages' tests running at once.
func TestHAPostgresRestartUnderLoad(t *testing.T) {
	srv := pgtest.StartServer(t)
	e := newHAEnvOn(t, srv.DSN)
	a, b := e.pair(t)
	e.underWay(t)
	oldTerm := a.metric("treasuryd_leader_term")
	srv.Restart(t)
	restarted := time.Now()
	// The restart ends the lock's session: the leader steps down, and one
	// of the two leads again under a newer term.
	newTerm := func(d *daemon) bool { return d.leads() && d.metric("treasuryd_leader_term") > oldTerm }
	waitFor(t, haLease+15*time.Second, "one of the pair to lead under a new term", func() bool { return newTerm(a) || newTerm(b) })
	t.Logf("a leader under a new term %s after the server restart", time.Since(restarted))
	// The other one learns of the loss at its next ping (lease/5) at the
	// latest; its writes were fenced meanwhile.
	waitFor(t, haLease, "only one of the pair to lead", func() bool { return !(a.leads() && b.leads()) })
	time.Sleep(3 * time.Second)
	for _, d := range []*daemon{a, b} {
		if code, _ := d.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
			t.Fatalf("exit %d after SIGTERM", code)
		}
	}
	e.check(t)
}
