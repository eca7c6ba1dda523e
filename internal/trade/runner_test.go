package trade

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/balances"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/sim"
	"treasuryd/internal/strategy"
)

const testAccount = "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

const testAPIKey = "test-api-key"

type fakeGate struct{ closed atomic.Bool }

func (g *fakeGate) Open() (bool, string) {
	if g.closed.Load() {
		return false, "no_proof"
	}
	return true, ""
}

type fakePause struct{ atomic.Bool }

func (p *fakePause) Paused() bool { return p.Load() }

// rig is a simulated desk on loopback, a real astra.Client and a real
// journal file, for runners to run against.
type rig struct {
	t      *testing.T
	desk   *sim.Desk
	client *astra.Client
	j      *journal.Journal
	gate   *fakeGate
	pause  *fakePause
}

func newRig(t *testing.T, acceptTimeout time.Duration, mod func(*sim.DeskConfig)) *rig {
	t.Helper()
	cfg := sim.DeskConfig{
		AccountID: testAccount, APIKey: testAPIKey, Seed: 1,
		Balances:      map[string]decimal.Decimal{"BTC": dec("20"), "USD": dec("2000000")},
		Prices:        map[string]decimal.Decimal{"BTC-USD": dec("65000")},
		QuoteInterval: 10 * time.Millisecond,
		QuoteTTL:      2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	desk, err := sim.NewDesk(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := desk.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { desk.Close() })
	client, err := astra.New(astra.Options{BaseURL: desk.BaseURL(), WSURL: desk.WSURL(), APIKey: testAPIKey,
		AccountID: testAccount, Timeout: acceptTimeout})
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(filepath.Join(t.TempDir(), "treasuryd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return &rig{t: t, desk: desk, client: client, j: j, gate: &fakeGate{}, pause: &fakePause{}}
}

// start runs a balance book and a runner for pol on the rig, as a daemon
// does; they are stopped at cleanup.
func (rg *rig) start(pol *config.Policy, mod func(*Deps)) (*Runner, *metrics.Metrics) {
	rg.t.Helper()
	m := metrics.New("test")
	book := balances.New(balances.Options{Metrics: m, Desk: rg.client, Every: 50 * time.Millisecond})
	if err := book.Start(context.Background()); err != nil {
		rg.t.Fatal(err)
	}
	rg.t.Cleanup(func() { book.Stop(context.Background()) })
	d := Deps{Metrics: m, Journal: rg.j, Desk: rg.client, Book: book, Gate: rg.gate, Pause: rg.pause, Policy: pol}
	if mod != nil {
		mod(&d)
	}
	e := New(d)
	if err := e.Start(context.Background()); err != nil {
		rg.t.Fatal(err)
	}
	rg.t.Cleanup(func() { stop(rg.t, e) })
	return e, m
}

func stop(t *testing.T, e *Runner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

func policy(programs ...config.Program) *config.Policy {
	return &config.Policy{AccountID: testAccount, Programs: programs}
}

// liveSell sells 0.5 BTC per quote at 60,000 or better, with no cooldown.
func liveSell(name string) config.Program {
	return config.Program{Name: name, Base: "BTC", Quote: "USD", Side: config.SideSell,
		Size: dec("0.5"), LimitPrice: dec("60000"), MinValidity: 200 * time.Millisecond}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func decisions(m *metrics.Metrics, program, outcome string) float64 {
	return testutil.ToFloat64(m.QuoteDecisions.WithLabelValues(program, outcome))
}

func journalAccepts(t *testing.T, j *journal.Journal, program string) []journal.Accept {
	t.Helper()
	as, err := j.Accepts(context.Background(), journal.AcceptFilter{Program: program})
	if err != nil {
		t.Fatal(err)
	}
	return as
}

// quoteOf extracts the "quote" object of a frame or an accept body, byte for
// byte, with encoding/json (an independent reader of the same bytes).
func quoteOf(t *testing.T, b []byte) []byte {
	t.Helper()
	var env struct {
		Quote json.RawMessage `json:"quote"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return env.Quote
}

func quoteID(t *testing.T, raw []byte) string {
	t.Helper()
	var q struct {
		QuoteID string `json:"quoteId"`
	}
	if err := json.Unmarshal(raw, &q); err != nil {
		t.Fatal(err)
	}
	return q.QuoteID
}

func TestRunnerAcceptsAndTheDeskBooksTheTrade(t *testing.T) {
	rg := newRig(t, 5*time.Second, nil)
	var mu sync.Mutex
	frames := map[string][]byte{} // quote id -> the frame as received
	pol := policy(liveSell("sell-btc"))
	pol.Programs[0].Target = dec("0.5") // exactly one accept
	e, m := rg.start(pol, func(d *Deps) {
		d.Recorder = func(program string, frame []byte, at time.Time, env strategy.Env, outcome string) {
			mu.Lock()
			defer mu.Unlock()
			frames[quoteID(t, quoteOf(t, frame))] = frame
		}
	})
	waitFor(t, "an ok accept", 10*time.Second, func() bool {
		as := journalAccepts(t, rg.j, "sell-btc")
		return len(as) == 1 && as[0].Result == journal.AcceptOK
	})
	a := journalAccepts(t, rg.j, "sell-btc")[0]
	convs := rg.desk.Converts()
	if len(convs) != 1 || convs[0].QuoteID != a.QuoteID || !convs[0].SellQty.Equal(dec("0.5")) || convs[0].SellSymbol != "BTC" {
		t.Fatalf("desk converts = %+v, want one of quote %s selling 0.5 BTC", convs, a.QuoteID)
	}
	// Invariant 8: the accept body carries the quote exactly as the frame
	// held it, and the journal keeps those same bytes.
	bodies := rg.desk.AcceptBodies()
	mu.Lock()
	frame := frames[a.QuoteID]
	mu.Unlock()
	want := append(append([]byte(`{"quote":`), quoteOf(t, frame)...), '}')
	if len(bodies) != 1 || !bytes.Equal(bodies[0], want) {
		t.Fatalf("accept body\n%s\nwant\n%s", bodies, want)
	}
	if !bytes.Equal(a.RawQuote, quoteOf(t, frame)) {
		t.Fatalf("journaled raw quote %s differs from the frame's %s", a.RawQuote, quoteOf(t, frame))
	}
	if got := testutil.ToFloat64(m.Accepts.WithLabelValues("sell-btc", journal.AcceptOK)); got != 1 {
		t.Errorf("accepts_total{ok} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.ExecutedBase.WithLabelValues("sell-btc")); got != 0.5 {
		t.Errorf("executed_base_total = %v, want 0.5", got)
	}
	if got := decisions(m, "sell-btc", strategy.OutcomeAccepted); got != 1 {
		t.Errorf("decisions{accepted} = %v, want 1", got)
	}
	waitFor(t, "target_reached decisions after the accept", 5*time.Second, func() bool {
		return decisions(m, "sell-btc", strategy.OutcomeTargetReached) >= 3
	})
	st := e.Status()
	if len(st) != 1 || st[0].Executed != "0.5" || st[0].RemainingTarget != "0" || st[0].LastOutcome != strategy.OutcomeTargetReached ||
		!st[0].StreamUp || st[0].LastQuotePrice == "" {
		t.Errorf("status = %+v", st)
	}
}

// TestNoAcceptWhileGatedPausedOrDryRun: invariant 5.
func TestNoAcceptWhileGatedPausedOrDryRun(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(rg *rig, pol *config.Policy)
		outcome string
	}{
		{"paused", func(rg *rig, pol *config.Policy) { rg.pause.Store(true) }, strategy.OutcomePaused},
		{"gate closed", func(rg *rig, pol *config.Policy) { rg.gate.closed.Store(true) }, strategy.OutcomeCompliance},
		{"global dry run", func(rg *rig, pol *config.Policy) { pol.DryRun = true }, strategy.OutcomeDryRun},
		{"program dry run", func(rg *rig, pol *config.Policy) { pol.Programs[0].DryRun = true }, strategy.OutcomeDryRun},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rg := newRig(t, 5*time.Second, nil)
			pol := policy(liveSell("sell-btc"))
			tt.setup(rg, pol)
			_, m := rg.start(pol, nil)
			waitFor(t, tt.outcome+" decisions", 10*time.Second, func() bool {
				return decisions(m, "sell-btc", tt.outcome) >= 20
			})
			if n := len(rg.desk.AcceptBodies()); n != 0 {
				t.Fatalf("%d accepts reached the desk", n)
			}
			if as := journalAccepts(t, rg.j, "sell-btc"); len(as) != 0 {
				t.Fatalf("%d accepts journaled", len(as))
			}
		})
	}
}

// TestDryRunKeepsTheCooldown: a would-be accept starts the cooldown, so
// dry-run output looks like a live run's.
func TestDryRunKeepsTheCooldown(t *testing.T) {
	rg := newRig(t, 5*time.Second, nil)
	pol := policy(liveSell("sell-btc"))
	pol.DryRun = true
	pol.Programs[0].Cooldown = time.Hour
	_, m := rg.start(pol, nil)
	waitFor(t, "cooldown decisions", 10*time.Second, func() bool { return decisions(m, "sell-btc", strategy.OutcomeCooldown) >= 10 })
	if got := decisions(m, "sell-btc", strategy.OutcomeDryRun); got != 1 {
		t.Fatalf("dry_run decisions = %v, want 1 (then cooldown)", got)
	}
}

// TestNoAcceptOfAnExpiringQuote: invariant 1 — quotes that live less than
// min_validity are never accepted, however good their price.
func TestNoAcceptOfAnExpiringQuote(t *testing.T) {
	rg := newRig(t, 5*time.Second, func(c *sim.DeskConfig) { c.QuoteTTL = 150 * time.Millisecond })
	_, m := rg.start(policy(liveSell("sell-btc")), nil)
	waitFor(t, "expiring decisions", 10*time.Second, func() bool { return decisions(m, "sell-btc", strategy.OutcomeExpiring) >= 30 })
	if n := len(rg.desk.AcceptBodies()); n != 0 {
		t.Fatalf("%d accepts of quotes with less than min_validity left", n)
	}
}

// TestAcceptsOnlyQuotesWithMinValidityLeft: invariant 1 with quotes that
// arrive with anything from 100ms to 400ms left (the desk's clock lags by a
// random 0–300ms) and REST latency: every journaled accept had at least
// min_validity left when it was decided, and none reached the desk expired.
func TestAcceptsOnlyQuotesWithMinValidityLeft(t *testing.T) {
	var mu sync.Mutex
	rnd := rand.New(rand.NewPCG(1, 2))
	lagging := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return time.Now().Add(-time.Duration(rnd.Int64N(int64(300 * time.Millisecond))))
	}
	rg := newRig(t, 5*time.Second, func(c *sim.DeskConfig) { c.QuoteTTL = 400 * time.Millisecond; c.Now = lagging })
	rg.desk.SetFaults(sim.Faults{RESTLatency: 50 * time.Millisecond})
	pol := policy(liveSell("sell-btc"))
	pol.Programs[0].MinValidity = 250 * time.Millisecond
	_, m := rg.start(pol, nil)
	waitFor(t, "accepts and expiring refusals", 15*time.Second, func() bool {
		return testutil.ToFloat64(m.Accepts.WithLabelValues("sell-btc", journal.AcceptOK)) >= 5 &&
			decisions(m, "sell-btc", strategy.OutcomeExpiring) >= 5
	})
	for _, a := range journalAccepts(t, rg.j, "sell-btc") {
		// SentAt is taken just after the decision; 20ms covers the gap
		// under -race. A quote accepted without regard to min_validity
		// would show as little as 100ms here.
		if left := time.UnixMicro(a.ExpiryMicros).Sub(a.SentAt); left < 230*time.Millisecond {
			t.Errorf("accept %d journaled with %s left, min_validity 250ms", a.ID, left)
		}
		if a.Result == journal.AcceptRejected {
			t.Errorf("accept %d rejected by the desk: %s", a.ID, a.Message)
		}
	}
}

// TestNoAcceptBeyondTheLimit: invariant 2 — the price walks across the limit;
// every booked trade is at the limit or better.
func TestNoAcceptBeyondTheLimit(t *testing.T) {
	rg := newRig(t, 5*time.Second, func(c *sim.DeskConfig) {
		c.Prices = map[string]decimal.Decimal{"BTC-USD": dec("60000")}
		c.VolatilityBps = dec("30")
		c.Balances = map[string]decimal.Decimal{"BTC": dec("1000"), "USD": dec("100000000")}
	})
	sell := liveSell("sell-btc")
	sell.Size = dec("0.01")
	buy := config.Program{Name: "buy-btc", Base: "BTC", Quote: "USD", Side: config.SideBuy,
		Size: dec("0.01"), LimitPrice: dec("60000"), MinValidity: 200 * time.Millisecond}
	_, m := rg.start(policy(sell, buy), nil)
	waitFor(t, "accepts and refusals on both sides of the limit", 20*time.Second, func() bool {
		return testutil.ToFloat64(m.Accepts.WithLabelValues("sell-btc", journal.AcceptOK)) >= 5 &&
			testutil.ToFloat64(m.Accepts.WithLabelValues("buy-btc", journal.AcceptOK)) >= 5 &&
			decisions(m, "sell-btc", strategy.OutcomeLimitPrice) >= 5 && decisions(m, "buy-btc", strategy.OutcomeLimitPrice) >= 5
	})
	limit := dec("60000")
	for _, c := range rg.desk.Converts() {
		switch {
		case c.SellSymbol == "BTC": // sell-btc: USD per BTC at least the limit
			if c.BuyQty.LessThan(limit.Mul(c.SellQty)) {
				t.Errorf("sold %s BTC for %s USD: below the limit", c.SellQty, c.BuyQty)
			}
		case c.BuySymbol == "BTC": // buy-btc: USD per BTC at most the limit
			if c.SellQty.GreaterThan(limit.Mul(c.BuyQty)) {
				t.Errorf("bought %s BTC for %s USD: above the limit", c.BuyQty, c.SellQty)
			}
		}
	}
}

// TestTargetAndDailyCapHoldAcrossARestart: invariant 3 — the runner is
// stopped mid-run and a new one started on the same journal; the desk never
// books more than the target or the daily cap.
func TestTargetAndDailyCapHoldAcrossARestart(t *testing.T) {
	rg := newRig(t, 5*time.Second, nil)
	target := liveSell("target")
	target.Target = dec("2") // 4 accepts of 0.5
	target.Cooldown = 50 * time.Millisecond
	capped := liveSell("capped")
	capped.Size = dec("0.25")
	capped.MaxDailyNotional = dec("50000") // 3 accepts of 0.25 at 65,000 (16,250 each)
	capped.Cooldown = 50 * time.Millisecond
	pol := policy(target, capped)

	sold := func(program string) (base, notional decimal.Decimal) {
		ids := map[string]bool{}
		for _, a := range journalAccepts(t, rg.j, program) {
			ids[a.QuoteID] = true
		}
		for _, c := range rg.desk.Converts() {
			if ids[c.QuoteID] {
				base, notional = base.Add(c.SellQty), notional.Add(c.BuyQty)
			}
		}
		return base, notional
	}
	check := func() {
		t.Helper()
		if b, _ := sold("target"); b.GreaterThan(dec("2")) {
			t.Fatalf("target exceeded: %s BTC sold", b)
		}
		if _, n := sold("capped"); n.GreaterThan(dec("50000")) {
			t.Fatalf("daily cap exceeded: %s USD", n)
		}
	}

	e1, _ := rg.start(pol, nil)
	waitFor(t, "a first accept of each program", 10*time.Second, func() bool {
		b1, _ := sold("target")
		b2, _ := sold("capped")
		return b1.IsPositive() && b2.IsPositive()
	})
	stop(t, e1)
	check()
	before := len(rg.desk.AcceptBodies())

	_, m := rg.start(pol, nil)
	waitFor(t, "target and cap reached after the restart", 15*time.Second, func() bool {
		b, _ := sold("target")
		_, n := sold("capped")
		return b.Equal(dec("2")) && n.GreaterThan(dec("40000")) &&
			decisions(m, "target", strategy.OutcomeTargetReached) >= 10 && decisions(m, "capped", strategy.OutcomeDailyCap) >= 10
	})
	check()
	if len(rg.desk.AcceptBodies()) == before {
		t.Fatalf("the restarted runner accepted nothing: the restart was not mid-run")
	}
}

// TestOneAcceptInFlightPerProgram: invariant 4 — while an accept hangs at the
// desk, later good quotes are refused as in_flight and nothing else is sent.
func TestOneAcceptInFlightPerProgram(t *testing.T) {
	rg := newRig(t, 3*time.Second, nil)
	rg.desk.BlackholeNextAccepts(1)
	_, m := rg.start(policy(liveSell("sell-btc")), nil)
	waitFor(t, "in_flight decisions while the accept hangs", 10*time.Second, func() bool {
		return decisions(m, "sell-btc", strategy.OutcomeInFlight) >= 20
	})
	if n := len(rg.desk.AcceptBodies()); n != 1 {
		t.Fatalf("%d accepts at the desk while one hangs, want 1", n)
	}
	if got := testutil.ToFloat64(m.Accepts.WithLabelValues("sell-btc", journal.AcceptUnknown)); got != 0 {
		t.Fatalf("the hanging accept already has a result")
	}
}

// TestUnknownAcceptIsNeverResent: invariant 7 — a blackholed accept is
// journaled unknown, counted, and its quote never sent again, neither by the
// running runner nor after a restart.
func TestUnknownAcceptIsNeverResent(t *testing.T) {
	rg := newRig(t, 300*time.Millisecond, nil)
	rg.desk.BlackholeNextAccepts(1)
	pol := policy(liveSell("sell-btc"))
	pol.Programs[0].Target = dec("1.5")
	e1, m := rg.start(pol, nil)
	waitFor(t, "an unknown accept", 10*time.Second, func() bool {
		return testutil.ToFloat64(m.Accepts.WithLabelValues("sell-btc", journal.AcceptUnknown)) == 1
	})
	as := journalAccepts(t, rg.j, "sell-btc")
	if len(as) == 0 || as[0].Result != journal.AcceptUnknown {
		t.Fatalf("first accept = %+v, want unknown", as)
	}
	unknownID := as[0].QuoteID
	waitFor(t, "later accepts", 10*time.Second, func() bool {
		return testutil.ToFloat64(m.Accepts.WithLabelValues("sell-btc", journal.AcceptOK)) >= 1
	})
	stop(t, e1)
	_, m2 := rg.start(pol, nil)
	// The unknown accept counts: 0.5 unknown + ok ones reach the 1.5 target.
	waitFor(t, "target reached after the restart", 10*time.Second, func() bool {
		return decisions(m2, "sell-btc", strategy.OutcomeTargetReached) >= 10
	})
	sent := 0
	for _, b := range rg.desk.AcceptBodies() {
		if quoteID(t, quoteOf(t, b)) == unknownID {
			sent++
		}
	}
	if sent != 1 {
		t.Fatalf("quote %s was sent %d times, want once", unknownID, sent)
	}
	total := decimal.Zero
	for _, c := range rg.desk.Converts() {
		total = total.Add(c.SellQty)
	}
	if total.GreaterThan(dec("1.5")) {
		t.Fatalf("%s BTC sold, target 1.5: the unknown accept was not counted", total)
	}
}

// TestStopDuringAHangingAcceptJournalsUnknown: invariant 10 — Stop returns by
// its deadline and the unanswered accept is journaled unknown.
func TestStopDuringAHangingAcceptJournalsUnknown(t *testing.T) {
	rg := newRig(t, time.Minute, nil)
	rg.desk.BlackholeNextAccepts(1)
	e, m := rg.start(policy(liveSell("sell-btc")), nil)
	waitFor(t, "the accept at the desk", 10*time.Second, func() bool { return len(rg.desk.AcceptBodies()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Stop took %s with a 300ms deadline", took)
	}
	as := journalAccepts(t, rg.j, "sell-btc")
	if len(as) != 1 || as[0].Result != journal.AcceptUnknown {
		t.Fatalf("journal = %+v, want one unknown accept", as)
	}
	if got := testutil.ToFloat64(m.Accepts.WithLabelValues("sell-btc", journal.AcceptUnknown)); got != 1 {
		t.Errorf("accepts_total{unknown} = %v", got)
	}
	n := decisions(m, "sell-btc", strategy.OutcomeInFlight)
	time.Sleep(100 * time.Millisecond) // quotes would arrive every 10ms: none may be decided now
	if decisions(m, "sell-btc", strategy.OutcomeInFlight) != n {
		t.Fatalf("decisions after Stop")
	}
	if err := e.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

// TestApplyRestartsOnlyChangedPrograms: a reload keeps an unchanged program's
// runner and state, restarts a changed one with its progress, starts an
// added one and stops a removed one.
func TestApplyRestartsOnlyChangedPrograms(t *testing.T) {
	rg := newRig(t, 5*time.Second, nil)
	keep := liveSell("keep")
	keep.Target = dec("0.5")
	change := liveSell("change")
	change.Target = dec("0.5")
	drop := liveSell("drop")
	drop.DryRun = true
	e, m := rg.start(policy(keep, change, drop), nil)
	waitFor(t, "both targets reached", 10*time.Second, func() bool {
		return decisions(m, "keep", strategy.OutcomeTargetReached) >= 1 && decisions(m, "change", strategy.OutcomeTargetReached) >= 1
	})
	e.mu.Lock()
	keepRunner, changeRunner := e.programs["keep"], e.programs["change"]
	e.mu.Unlock()

	changed := change
	changed.LimitPrice = dec("61000")
	added := liveSell("added")
	added.DryRun = true
	if err := e.Apply(policy(keep, changed, added)); err != nil {
		t.Fatal(err)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	if e.programs["keep"] != keepRunner {
		t.Errorf("unchanged program was restarted")
	}
	if r := e.programs["change"]; r == changeRunner || !r.cfg.LimitPrice.Equal(dec("61000")) {
		t.Errorf("changed program was not restarted with its new policy")
	} else if pr := r.prog.Progress(time.Now()); !pr.Executed.Equal(dec("0.5")) {
		t.Errorf("changed program lost its progress: executed %s", pr.Executed)
	}
	if e.programs["drop"] != nil || e.programs["added"] == nil {
		t.Errorf("programs after reload: %v", e.programs)
	}
}

// slowJournal stalls InsertAccept (a disk that stops for a while) once.
type slowJournal struct {
	*journal.Journal
	stall time.Duration
	once  sync.Once
}

func (s *slowJournal) InsertAccept(ctx context.Context, a journal.Accept) (int64, error) {
	id, err := s.Journal.InsertAccept(ctx, a)
	s.once.Do(func() { time.Sleep(s.stall) })
	return id, err
}

// TestQuoteThatExpiresWhileJournaledIsNotSent: invariant 1 holds even when
// the journal write outlives the quote.
func TestQuoteThatExpiresWhileJournaledIsNotSent(t *testing.T) {
	rg := newRig(t, 5*time.Second, func(c *sim.DeskConfig) { c.QuoteTTL = 300 * time.Millisecond })
	sj := &slowJournal{Journal: rg.j, stall: 400 * time.Millisecond}
	rg.start(policy(liveSell("sell-btc")), func(d *Deps) { d.Journal = sj })
	var first journal.Accept
	waitFor(t, "the stalled accept's result", 5*time.Second, func() bool {
		as, err := rg.j.Accepts(context.Background(), journal.AcceptFilter{Program: "sell-btc"})
		if err != nil || len(as) == 0 || as[0].Result == journal.AcceptPending {
			return false
		}
		first = as[0]
		return true
	})
	if first.Result != journal.AcceptError {
		t.Fatalf("the quote that expired while journaled ended %q; want error (never sent)", first.Result)
	}
	for _, body := range rg.desk.AcceptBodies() {
		if bytes.Contains(body, []byte(first.QuoteID)) {
			t.Fatalf("the expired quote %s was sent to the desk", first.QuoteID)
		}
	}
}

// TestNoQuoteIDIsAcceptedTwice: invariant 15 — the desk sends the frame of
// a quote already accepted again, to the same process and, after a restart,
// to the next one: it is decided invalid and never journaled or sent twice.
func TestNoQuoteIDIsAcceptedTwice(t *testing.T) {
	rg := newRig(t, 5*time.Second, func(c *sim.DeskConfig) { c.QuoteTTL = 30 * time.Second })
	cfg := liveSell("sell-btc")
	cfg.Cooldown = 100 * time.Millisecond
	pol := policy(cfg)
	// lastAccepted is the frame of the newest accept the desk received:
	// {"quote": <raw>} is the frame byte for byte as the desk wrote it.
	lastAccepted := func() (frame []byte, id string) {
		bodies := rg.desk.AcceptBodies()
		frame = bodies[len(bodies)-1]
		return frame, quoteID(t, quoteOf(t, frame))
	}
	resend := func(m *metrics.Metrics, frame []byte) {
		t.Helper()
		before := decisions(m, "sell-btc", strategy.OutcomeInvalid)
		if !rg.desk.InjectFrames(frame, frame) {
			t.Fatal("inject refused")
		}
		waitFor(t, "the resent frames decided invalid", 10*time.Second, func() bool {
			return decisions(m, "sell-btc", strategy.OutcomeInvalid) >= before+2
		})
	}
	once := func(id string) {
		t.Helper()
		n, sent := 0, 0
		for _, a := range journalAccepts(t, rg.j, "sell-btc") {
			if a.QuoteID == id {
				n++
			}
		}
		for _, b := range rg.desk.AcceptBodies() {
			if quoteID(t, quoteOf(t, b)) == id {
				sent++
			}
		}
		if n != 1 || sent != 1 {
			t.Fatalf("quote %s journaled %d times and sent %d times, want once", id, n, sent)
		}
	}

	e1, m1 := rg.start(pol, nil)
	waitFor(t, "a first accept", 10*time.Second, func() bool {
		as := journalAccepts(t, rg.j, "sell-btc")
		return len(as) > 0 && as[len(as)-1].Result == journal.AcceptOK
	})
	frame, id := lastAccepted()
	resend(m1, frame)
	once(id)
	stop(t, e1)
	// The newest accept of the first process, resent to the second, which
	// knows it only from the journal.
	frame, id = lastAccepted()
	_, m2 := rg.start(pol, nil)
	resend(m2, frame)
	once(id)
}

// failingJournal fails Accepts once fail is set: a journal that cannot be
// read when a reload adds a program.
type failingJournal struct {
	*journal.Journal
	fail atomic.Bool
}

func (f *failingJournal) Accepts(ctx context.Context, flt journal.AcceptFilter) ([]journal.Accept, error) {
	if f.fail.Load() {
		return nil, errors.New("journal unreadable")
	}
	return f.Journal.Accepts(ctx, flt)
}

// TestReloadThatCannotBuildKeepsTheRunningPolicy: invariant 11 on the
// accept path — a reload whose new program cannot be restored from the
// journal is refused before anything changes: the running programs, their
// streams and the policy stay as they were.
func TestReloadThatCannotBuildKeepsTheRunningPolicy(t *testing.T) {
	rg := newRig(t, 5*time.Second, nil)
	fj := &failingJournal{Journal: rg.j}
	keep := liveSell("keep")
	keep.DryRun = true
	pol := policy(keep)
	e, m := rg.start(pol, func(d *Deps) { d.Journal = fj })
	waitFor(t, "decisions", 10*time.Second, func() bool { return decisions(m, "keep", strategy.OutcomeDryRun) >= 1 })
	e.mu.Lock()
	running := e.programs["keep"]
	e.mu.Unlock()

	fj.fail.Store(true)
	changed := keep
	changed.LimitPrice = dec("61000")
	if err := e.Apply(policy(changed, liveSell("added"))); err == nil {
		t.Fatal("Apply succeeded although the added program could not be restored")
	}
	e.mu.Lock()
	got, added := e.programs["keep"], e.programs["added"]
	e.mu.Unlock()
	if got != running || added != nil || e.policy.Load() != pol {
		t.Fatalf("a refused reload changed the running state: keep replaced %v, added %v, policy swapped %v",
			got != running, added != nil, e.policy.Load() != pol)
	}
	before := decisions(m, "keep", strategy.OutcomeDryRun)
	waitFor(t, "the running program still deciding", 10*time.Second, func() bool {
		return decisions(m, "keep", strategy.OutcomeDryRun) > before
	})
}

// TestNothingSentWithoutLeadership: an accept journaled by a process that,
// by the time of its POST, can no longer confirm its leadership (SPEC 11,
// invariant 13: a leader that froze between the journal write and the POST)
// is not sent: the desk sees nothing and the journal says why.
func TestNothingSentWithoutLeadership(t *testing.T) {
	rg := newRig(t, 5*time.Second, nil)
	var leading atomic.Bool // never confirmed
	e, _ := rg.start(policy(liveSell("sell-btc")), func(d *Deps) { d.MayAct = leading.Load })
	waitFor(t, "an accept journaled", 10*time.Second, func() bool {
		as := journalAccepts(t, rg.j, "sell-btc")
		return len(as) > 0 && as[0].Result == journal.AcceptError
	})
	stop(t, e)
	if n := len(rg.desk.AcceptBodies()); n != 0 {
		t.Fatalf("the desk received %d accepts from a process without leadership", n)
	}
	for _, a := range journalAccepts(t, rg.j, "sell-btc") {
		if a.Result != journal.AcceptError || !strings.Contains(a.Message, "leadership not confirmed") {
			t.Fatalf("accept %d: %s %q; want error, not sent: leadership not confirmed", a.ID, a.Result, a.Message)
		}
	}
}

// TestStopEndsTheAcceptGoroutinesWaitingForWork: an accept goroutine that
// finished its accept waits for the next one (workerIdle); Stop ends it at
// once rather than waiting that out, and leaves the accepts group empty.
func TestStopEndsTheAcceptGoroutinesWaitingForWork(t *testing.T) {
	rg := newRig(t, time.Minute, nil)
	e, m := rg.start(policy(liveSell("sell-btc")), nil)
	waitFor(t, "two ok accepts", 10*time.Second, func() bool {
		return testutil.ToFloat64(m.Accepts.WithLabelValues("sell-btc", journal.AcceptOK)) >= 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), workerIdle)
	defer cancel()
	start := time.Now()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > workerIdle/2 {
		t.Fatalf("Stop took %s: it waited for idle accept goroutines", took)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), time.Second)
	defer wcancel()
	if err := e.accepts.Wait(wctx); err != nil {
		t.Fatalf("accept goroutines left after Stop: %v", err)
	}
	for _, a := range journalAccepts(t, rg.j, "sell-btc") {
		if a.Result == journal.AcceptPending {
			t.Errorf("accept %d still pending after Stop", a.ID)
		}
	}
}
