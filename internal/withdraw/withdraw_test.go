package withdraw

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/sim"
)

const (
	testAccount = "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"
	testKey     = "test-api-key"
	coldBTC     = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"
	ruleName    = "btc-to-cold"
)

// clock is an injected clock shared by the rebalancer and the simulator.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fakeGate struct {
	open atomic.Bool
	// closeAfter, when > 0, closes the gate after that many Open calls.
	calls      atomic.Int32
	closeAfter int32
}

func (g *fakeGate) Open() (bool, string) {
	n := g.calls.Add(1)
	if g.closeAfter > 0 && n > g.closeAfter {
		return false, "proof expired"
	}
	if !g.open.Load() {
		return false, "no proof"
	}
	return true, "proof ok"
}

type fakePause struct{ paused atomic.Bool }

func (p *fakePause) Paused() bool { return p.paused.Load() }

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// testPolicy has one rule: sweep BTC above 3 down to 2, at most 1 at a time.
func testPolicy() *config.Policy {
	return &config.Policy{
		AccountID: testAccount,
		Withdraw: config.Withdraw{Allowlist: []config.Destination{
			{Asset: "BTC", Network: "bitcoin", Address: coldBTC},
		}},
		Rebalance: config.Rebalance{
			Schedule: "@every 1h", // never fires during a test: runs are explicit
			Rules: []config.Rule{{
				Name: ruleName, Asset: "BTC", Network: "bitcoin", Address: coldBTC,
				HighWater: dec("3"), Keep: dec("2"), MinAmount: dec("0.01"), MaxAmount: dec("1"), MaxDaily: dec("20"),
			}},
		},
	}
}

type env struct {
	t       *testing.T
	clk     *clock
	desk    *sim.Desk
	client  *astra.Client
	journal *journal.Journal
	jpath   string
	policy  atomic.Pointer[config.Policy]
	gate    *fakeGate
	pause   *fakePause
	m       *metrics.Metrics
	logs    *observer.ObservedLogs
	log     *zap.Logger
}

func newEnv(t *testing.T, balances map[string]string) *env {
	t.Helper()
	e := &env{t: t, clk: &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}, gate: &fakeGate{}, pause: &fakePause{}}
	e.gate.open.Store(true)
	bals := map[string]decimal.Decimal{}
	for k, v := range balances {
		bals[k] = dec(v)
	}
	desk, err := sim.NewDesk(sim.DeskConfig{
		AccountID: testAccount, APIKey: testKey, Seed: 7, Balances: bals,
		Prices:         map[string]decimal.Decimal{"BTC-USD": dec("65000")},
		WithdrawalStep: time.Minute, Now: e.clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := desk.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { desk.Close() })
	e.desk = desk
	e.client, err = astra.New(astra.Options{BaseURL: desk.BaseURL(), APIKey: testKey, AccountID: testAccount,
		Timeout: 300 * time.Millisecond, MaxAttempts: 2, RetryBase: time.Millisecond, RetryCap: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.jpath = filepath.Join(t.TempDir(), "treasuryd.db")
	e.openJournal()
	e.policy.Store(testPolicy())
	e.m = metrics.New("test")
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs, e.log = logs, zap.New(core)
	return e
}

func (e *env) openJournal() {
	e.t.Helper()
	j, err := journal.Open(e.jpath)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { j.Close() })
	e.journal = j
}

func (e *env) deps() Deps {
	return Deps{
		Log: e.log, Metrics: e.m, Desk: e.client, Journal: e.journal, Gate: e.gate, Pause: e.pause,
		Policy: e.policy.Load, Now: e.clk.Now, FollowEvery: time.Hour, MatchGrace: 2 * time.Minute,
	}
}

// start builds and starts a rebalancer; it is stopped at cleanup.
func (e *env) start() *Rebalancer {
	e.t.Helper()
	r := New(e.deps())
	if err := r.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { r.Stop(context.Background()) })
	return r
}

func (e *env) run(r *Rebalancer) {
	e.t.Helper()
	if err := r.RunOnce(context.Background()); err != nil {
		e.t.Fatalf("RunOnce: %v", err)
	}
}

func (e *env) journaled() []journal.Withdrawal {
	e.t.Helper()
	ws, err := e.journal.Withdrawals(context.Background(), journal.WithdrawalFilter{})
	if err != nil {
		e.t.Fatal(err)
	}
	return ws
}

func (e *env) counted(status string) float64 {
	return testutil.ToFloat64(e.m.Withdrawals.WithLabelValues(ruleName, status))
}

// deskTotal sums the desk's withdrawals that were not failed.
func (e *env) deskTotal() decimal.Decimal {
	sum := decimal.Zero
	for _, w := range e.desk.Withdrawals() {
		if w.Status != astra.StatusFailed {
			sum = sum.Add(w.Amount)
		}
	}
	return sum
}

func TestBlackholedWithdrawalIsPaidOnceAcrossRunsAndRestart(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	e.desk.BlackholeNextWithdrawals(1)
	r := e.start()

	e.run(r) // the POST takes effect at the desk but never answers
	ws := e.journaled()
	if len(ws) != 1 || ws[0].State != journal.WithdrawalUnknown {
		t.Fatalf("after a blackholed POST the journal holds %+v, want one unknown withdrawal", ws)
	}
	for range 5 {
		e.run(r)
	}
	desk := e.desk.Withdrawals()
	if len(desk) != 1 {
		t.Fatalf("desk holds %d withdrawals after 6 runs, want exactly 1", len(desk))
	}
	ws = e.journaled()
	if len(ws) != 1 || ws[0].State != journal.WithdrawalSubmitted || ws[0].DeskID != desk[0].ID {
		t.Fatalf("journal %+v, want the unknown intent matched to desk request %s", ws, desk[0].ID)
	}
	if got := testutil.ToFloat64(e.m.WithdrawalsInFlight.WithLabelValues(ruleName)); got != 1 {
		t.Errorf("in-flight gauge = %v, want 1", got)
	}
	if e.counted(statusUnknown) != 1 || e.counted(statusSubmitted) != 1 {
		t.Errorf("withdrawals_total unknown=%v submitted=%v, want 1 and 1", e.counted(statusUnknown), e.counted(statusSubmitted))
	}

	// Restart on the same journal file.
	if err := r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.journal.Close()
	e.openJournal()
	r2 := e.start()
	for range 3 {
		e.run(r2)
	}
	if n := len(e.desk.Withdrawals()); n != 1 {
		t.Fatalf("desk holds %d withdrawals after a restart, want still 1", n)
	}

	// Once it completes the rule sweeps again: it was blocked, not stuck.
	e.clk.Advance(5 * time.Minute)
	e.run(r2)
	ws = e.journaled()
	if ws[0].State != journal.WithdrawalCompleted {
		t.Fatalf("first withdrawal state %s, want completed", ws[0].State)
	}
	if n := len(e.desk.Withdrawals()); n != 2 {
		t.Fatalf("desk holds %d withdrawals after the first completed, want 2", n)
	}
}

func TestCrashBeforePOSTIntentIsUnresolvedAfterGraceAndRuleGoesOn(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	p := testPolicy()
	p.Rebalance.Rules[0].MaxDaily = dec("1.5")
	e.policy.Store(p)
	// A crash right after the intent was flushed: the POST was never sent.
	ctx := context.Background()
	if _, err := e.journal.InsertWithdrawalIntent(ctx, journal.Withdrawal{Rule: ruleName, Asset: "BTC",
		Network: "bitcoin", Address: coldBTC, Amount: dec("1"), CreatedAt: e.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	r := e.start()
	ws := e.journaled()
	if len(ws) != 1 || ws[0].State != journal.WithdrawalUnknown {
		t.Fatalf("after Start the journal holds %+v, want the intent as unknown", ws)
	}
	e.clk.Advance(time.Minute)
	e.run(r)
	if n := len(e.desk.Withdrawals()); n != 0 {
		t.Fatalf("desk holds %d withdrawals within the grace, want 0 (the rule waits)", n)
	}
	if got := r.Status().Rules[0].Reason; got != ReasonInFlight {
		t.Errorf("rule reason %q within the grace, want %q", got, ReasonInFlight)
	}

	e.clk.Advance(2 * time.Minute)
	e.run(r)
	ws = e.journaled()
	if ws[0].State != journal.WithdrawalUnresolved {
		t.Fatalf("intent state %s after the grace, want unresolved", ws[0].State)
	}
	if got := testutil.ToFloat64(e.m.WithdrawalsUnresolved.WithLabelValues(ruleName)); got != 1 {
		t.Errorf("unresolved gauge = %v, want 1", got)
	}
	if st := r.Status(); len(st.Unresolved) != 1 || st.Unresolved[0].ID != ws[0].ID {
		t.Errorf("Status().Unresolved = %+v, want the intent", st.Unresolved)
	}
	if n := e.logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessageSnippet("unresolved").Len(); n != 1 {
		t.Errorf("%d error logs about the unresolved intent, want 1", n)
	}
	// The rule waits for an operator: the unresolved one may exist at the
	// desk, so paying the same excess again could pay it twice.
	if n := len(e.desk.Withdrawals()); n != 0 {
		t.Fatalf("desk holds %d withdrawals while the rule's withdrawal is unresolved, want 0", n)
	}
	if got := r.Status().Rules[0].Reason; got != ReasonUnresolved {
		t.Errorf("rule reason %q while unresolved, want %q", got, ReasonUnresolved)
	}
	// Never retried.
	e.clk.Advance(10 * time.Minute)
	e.run(r)
	if ws := e.journaled(); ws[0].State != journal.WithdrawalUnresolved || len(e.desk.Withdrawals()) != 0 {
		t.Fatalf("unresolved intent moved to %s / desk holds %d", ws[0].State, len(e.desk.Withdrawals()))
	}
	// A resolution naming a desk request that is not this one is refused.
	if err := r.Resolve(ctx, ws[0].ID, "00000000-0000-4000-8000-000000000000", "test"); err == nil {
		t.Fatal("Resolve accepted a desk id the desk does not list")
	}
	// The operator confirms it never executed: the rule goes on, and the
	// failed intent no longer counts against max_daily 1.5.
	if err := r.Resolve(ctx, ws[0].ID, "", "test"); err != nil {
		t.Fatal(err)
	}
	if err := r.Resolve(ctx, ws[0].ID, "", "test"); !errors.Is(err, ErrNotUnresolved) {
		t.Fatalf("second Resolve: %v, want ErrNotUnresolved", err)
	}
	if got := testutil.ToFloat64(e.m.WithdrawalsUnresolved.WithLabelValues(ruleName)); got != 0 {
		t.Errorf("unresolved gauge = %v after resolution, want 0", got)
	}
	e.run(r)
	desk := e.desk.Withdrawals()
	if len(desk) != 1 || desk[0].Amount.GreaterThan(dec("1.5")) {
		t.Fatalf("desk holds %+v after the resolution, want one withdrawal within max_daily 1.5", desk)
	}
}

func TestCrashAfterPOSTIntentIsMatchedNotResent(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	ctx := context.Background()
	nw := astra.NewWithdrawal{InstrumentSymbol: "BTC", Amount: dec("1"), Network: "bitcoin", Address: coldBTC}
	// An identical request made well before the intent must not be taken for it.
	oldID, err := e.client.CreateWithdrawal(ctx, nw)
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(5 * time.Minute)
	// The crash: intent journaled, POST made, its id never recorded.
	if _, err := e.journal.InsertWithdrawalIntent(ctx, journal.Withdrawal{Rule: ruleName, Asset: "BTC",
		Network: "bitcoin", Address: coldBTC, Amount: dec("1"), CreatedAt: e.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	newID, err := e.client.CreateWithdrawal(ctx, nw)
	if err != nil {
		t.Fatal(err)
	}

	r := e.start()
	ws := e.journaled()
	if len(ws) != 1 || ws[0].State != journal.WithdrawalSubmitted || ws[0].DeskID != newID {
		t.Fatalf("after Start the journal holds %+v, want the intent matched to %s (not the older %s)", ws, newID, oldID)
	}
	for range 3 {
		e.run(r)
	}
	if n := len(e.desk.Withdrawals()); n != 2 {
		t.Fatalf("desk holds %d withdrawals, want the 2 made before Start and nothing re-sent", n)
	}
}

func TestAllowlistRemovedByReloadIsNeverPaid(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	r := e.start()
	reloaded := testPolicy()
	reloaded.Withdraw.Allowlist = nil // the rule is still configured
	// The reload lands during the run, after the rules were read: only the
	// check right before the POST can see it.
	calls := 0
	r.policyFn = func() *config.Policy {
		calls++
		if calls == 1 {
			return testPolicy()
		}
		return reloaded
	}
	e.run(r)
	if got := r.Status().Rules[0].Reason; got != ReasonNotAllowlisted {
		t.Errorf("rule reason %q, want %q", got, ReasonNotAllowlisted)
	}
	// The next run reads the rule's destination missing from the start: in
	// an admitted policy that is a new entry held by authority.hold.
	e.run(r)
	if n := len(e.desk.Withdrawals()); n != 0 {
		t.Fatalf("desk holds %d withdrawals to a destination removed from the allowlist, want 0", n)
	}
	if n := len(e.journaled()); n != 0 {
		t.Fatalf("journal holds %d intents for a refused destination, want 0", n)
	}
	if got := r.Status().Rules[0].Reason; !strings.HasPrefix(got, ReasonAuthorityHold) {
		t.Errorf("rule reason %q, want %q", got, ReasonAuthorityHold)
	}
	if n := e.logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessageSnippet("allowlist").Len(); n == 0 {
		t.Error("no error log for the refused destination")
	}
}

func TestMaxDailyHoldsAcrossRestart(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	p := testPolicy()
	p.Rebalance.Rules[0].MaxDaily = dec("2.5")
	e.policy.Store(p)

	r := e.start()
	e.run(r) // 1
	e.clk.Advance(5 * time.Minute)
	e.run(r) // completes, then 1 more
	if err := r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.journal.Close()
	e.openJournal()

	r2 := e.start()
	e.clk.Advance(5 * time.Minute)
	e.run(r2) // completes, then min(1, 2.5-2) = 0.5
	e.clk.Advance(5 * time.Minute)
	e.run(r2) // cap reached
	e.clk.Advance(5 * time.Minute)
	e.run(r2)
	if got := e.deskTotal(); !got.Equal(dec("2.5")) {
		t.Fatalf("withdrawn %s within 24h across a restart, want exactly max_daily 2.5", got)
	}
	if got := r2.Status().Rules[0].Reason; got != ReasonDailyCap {
		t.Errorf("rule reason %q, want %q", got, ReasonDailyCap)
	}

	// The window rolls: a day later the rule sweeps again.
	e.clk.Advance(24 * time.Hour)
	e.run(r2)
	if got := e.deskTotal(); !got.Equal(dec("3.5")) {
		t.Fatalf("withdrawn %s after the window rolled, want 3.5", got)
	}
}

func TestNothingWithdrawnWhilePausedGateClosedOrDryRun(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(e *env)
		reason string
		dryRun float64
	}{
		{"paused", func(e *env) { e.pause.paused.Store(true) }, ReasonPaused, 0},
		{"gate closed", func(e *env) { e.gate.open.Store(false) }, ReasonCompliance + ": no proof", 0},
		// The gate is open when the rule decides, closed right before the POST.
		{"gate closes before the POST", func(e *env) { e.gate.closeAfter = 1 }, ReasonCompliance + ": proof expired", 0},
		{"dry run", func(e *env) {
			p := testPolicy()
			p.DryRun = true
			e.policy.Store(p)
		}, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, map[string]string{"BTC": "10"})
			tt.setup(e)
			r := e.start()
			e.run(r)
			if n := len(e.desk.Withdrawals()); n != 0 {
				t.Fatalf("desk holds %d withdrawals, want 0", n)
			}
			if n := len(e.journaled()); n != 0 {
				t.Fatalf("journal holds %d withdrawals, want 0", n)
			}
			if got := r.Status().Rules[0].Reason; got != tt.reason {
				t.Errorf("rule reason %q, want %q", got, tt.reason)
			}
			if got := e.counted(statusDryRun); got != tt.dryRun {
				t.Errorf("withdrawals_total{status=dry_run} = %v, want %v", got, tt.dryRun)
			}
		})
	}
}

func TestFailedWithdrawalIsLoggedAndRuleWithdrawsAgain(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	e.desk.FailNextWithdrawals(1, "node offline")
	r := e.start()
	e.run(r)
	e.clk.Advance(3 * time.Minute) // the desk fails it after processing
	e.run(r)

	ws := e.journaled()
	if len(ws) != 2 {
		t.Fatalf("journal holds %d withdrawals, want the failed one and a new one", len(ws))
	}
	if ws[0].State != journal.WithdrawalFailed || ws[0].Error != "node offline" {
		t.Errorf("first withdrawal %s %q, want failed with the desk's error", ws[0].State, ws[0].Error)
	}
	if ws[1].State != journal.WithdrawalSubmitted {
		t.Errorf("second withdrawal %s, want submitted", ws[1].State)
	}
	logged := e.logs.FilterLevelExact(zapcore.WarnLevel).FilterMessage("withdrawal failed at the desk").
		FilterField(zap.String("error", "node offline"))
	if logged.Len() != 1 {
		t.Errorf("%d warn logs of the failure with its error, want 1", logged.Len())
	}
	if e.counted(statusFailed) != 1 {
		t.Errorf("withdrawals_total{status=failed} = %v, want 1", e.counted(statusFailed))
	}
	if n := len(e.desk.Withdrawals()); n != 2 {
		t.Errorf("desk holds %d withdrawals, want 2", n)
	}
}

func TestStopDuringPOSTJournalsUnknown(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	e.client, _ = astra.New(astra.Options{BaseURL: e.desk.BaseURL(), APIKey: testKey, AccountID: testAccount,
		Timeout: time.Minute})
	e.desk.BlackholeNextWithdrawals(1)
	r := e.start()
	done := make(chan error, 1)
	go func() { done <- r.RunOnce(context.Background()) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(e.desk.Withdrawals()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the POST never reached the desk")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not synchronising on time
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := r.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	ws := e.journaled()
	if len(ws) != 1 || ws[0].State != journal.WithdrawalUnknown {
		t.Fatalf("journal %+v, want the cut-short POST as unknown", ws)
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := r.RunOnce(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("RunOnce after Stop = %v, want ErrStopped", err)
	}
}

func TestClassifyPOSTOutcome(t *testing.T) {
	tests := []struct {
		name     string
		id       string
		err      error
		ctxEnded bool
		want     string
	}{
		{"ok", "abc", nil, false, journal.WithdrawalSubmitted},
		{"ok without id", "", nil, false, journal.WithdrawalUnknown},
		{"unknown outcome", "", errors.Join(errors.New("timeout"), astra.ErrUnknownOutcome), false, journal.WithdrawalUnknown},
		{"4xx", "", &astra.APIError{Status: 400, Message: "insufficient balance"}, false, journal.WithdrawalRejected},
		{"5xx not wrapped", "", &astra.APIError{Status: 502}, false, journal.WithdrawalUnknown},
		{"not delivered", "", errors.New("dial tcp: connection refused"), false, journal.WithdrawalRejected},
		{"cut short", "", errors.New("dial tcp: operation was canceled"), true, journal.WithdrawalUnknown},
		{"deadline", "", context.DeadlineExceeded, false, journal.WithdrawalUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _ := classify(tt.id, tt.err, tt.ctxEnded); got != tt.want {
				t.Errorf("classify = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestMatchingNeverGivesOneDeskRequestToTwoWithdrawals(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	ctx := context.Background()
	nw := astra.NewWithdrawal{InstrumentSymbol: "BTC", Amount: dec("1"), Network: "bitcoin", Address: coldBTC}
	intent := func(rule string) int64 {
		t.Helper()
		id, err := e.journal.InsertWithdrawalIntent(ctx, journal.Withdrawal{Rule: rule, Asset: "BTC",
			Network: "bitcoin", Address: coldBTC, Amount: dec("1"), CreatedAt: e.clk.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	post := func() string {
		t.Helper()
		id, err := e.client.CreateWithdrawal(ctx, nw)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// a: sent and recorded. b: sent, id lost. c: never sent. All identical.
	a := intent("a")
	r1 := post()
	if err := e.journal.UpdateWithdrawal(ctx, a, journal.WithdrawalSubmitted, r1, "", ""); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(time.Second)
	b := intent("b")
	r2 := post()
	c := intent("c")

	r := e.start()
	e.clk.Advance(3 * time.Minute)
	if err := r.Follow(ctx); err != nil {
		t.Fatal(err)
	}
	got := map[int64]journal.Withdrawal{}
	for _, w := range e.journaled() {
		got[w.ID] = w
	}
	if got[a].DeskID != r1 {
		t.Errorf("a holds %q, want %s", got[a].DeskID, r1)
	}
	if got[b].DeskID != r2 || got[b].State != journal.WithdrawalCompleted {
		t.Errorf("b is %s with %q, want matched to %s and followed to completed (r1 is a's)", got[b].State, got[b].DeskID, r2)
	}
	if got[c].State != journal.WithdrawalUnresolved || got[c].DeskID != "" {
		t.Errorf("c is %s with %q, want unresolved: both desk requests belong to others", got[c].State, got[c].DeskID)
	}
	if n := len(e.desk.Withdrawals()); n != 2 {
		t.Errorf("desk holds %d withdrawals, want 2", n)
	}
}

func TestApplyReschedulesOnlyWhenTheSpecChanges(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "1"})
	r := e.start()
	entry := r.entry
	e.policy.Store(testPolicy())
	r.Apply(testPolicy()) // same spec
	if r.entry != entry {
		t.Fatalf("entry replaced for an unchanged spec")
	}
	p := testPolicy()
	p.Rebalance.Schedule = "@every 2h"
	r.Apply(p)
	es := r.sched.Entries()
	if len(es) != 1 || es[0].ID == entry {
		t.Fatalf("entries after Apply = %+v, want one new entry", es)
	}
	if d := es[0].Schedule.Next(e.clk.Now()).Sub(e.clk.Now()); d != 2*time.Hour {
		t.Errorf("next run in %s, want 2h", d)
	}
}

func TestAddressesAgainstSimulator(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "1", "ETH": "1"})
	p := testPolicy()
	p.Withdraw.Allowlist = append(p.Withdraw.Allowlist,
		config.Destination{Asset: "ETH", Network: "ethereum", Address: "0x742d35Cc6634C0532925a3b8D4C9db96C4b4d8b6"})
	rows, err := Addresses(context.Background(), e.client, p)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ kind, asset, network string }{
		{KindDeposit, "", "bitcoin"}, {KindDeposit, "", "ethereum"},
		{KindExpress, "BTC", "bitcoin"}, {KindExpress, "ETH", "ethereum"},
	}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v, want %d", rows, len(want))
	}
	seen := map[string]bool{}
	for i, w := range want {
		row := rows[i]
		if row.Kind != w.kind || row.Asset != w.asset || row.Network != w.network || row.Address == "" || row.Error != "" {
			t.Errorf("row %d = %+v, want %s %s %s with an address", i, row, w.kind, w.asset, w.network)
		}
		if seen[row.Address] {
			t.Errorf("address %s repeated", row.Address)
		}
		seen[row.Address] = true
	}
	if a := rows[0].Address; len(a) < 4 || a[:4] != "bc1q" {
		t.Errorf("bitcoin deposit address %q does not look like one", a)
	}

	var out strings.Builder
	if err := WriteAddresses(&out, rows); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "KIND") {
		t.Fatalf("table:\n%s", out.String())
	}
	col := strings.Index(lines[0], "ADDRESS")
	for _, l := range lines[1:] {
		if strings.Index(l, rowsAddr(rows, l)) != col {
			t.Errorf("address not aligned under ADDRESS in %q", l)
		}
	}

	// A network the desk does not serve gives an error row, and the others still come.
	p.Withdraw.Allowlist = append(p.Withdraw.Allowlist, config.Destination{Asset: "BTC", Network: "nowhere", Address: "x"})
	rows, err = Addresses(context.Background(), e.client, p)
	if err == nil {
		t.Fatal("no error for an unsupported network")
	}
	bad := 0
	for _, row := range rows {
		if row.Network == "nowhere" {
			if row.Error == "" {
				t.Errorf("row %+v has no error", row)
			}
			bad++
		} else if row.Address == "" {
			t.Errorf("row %+v lost its address", row)
		}
	}
	if bad != 2 || len(rows) != 6 {
		t.Errorf("rows %+v, want 6 with 2 errors", rows)
	}
}

// rowsAddr returns the address of the row printed on line l.
func rowsAddr(rows []AddressRow, l string) string {
	for _, r := range rows {
		if strings.Contains(l, r.Address) {
			return r.Address
		}
	}
	return "\x00"
}

func TestTwoRulesOfOneAssetDoNotSweepTheSameExcess(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	p := testPolicy()
	p.Rebalance.Rules[0].MaxAmount = decimal.Zero
	second := p.Rebalance.Rules[0]
	second.Name, second.Address = "btc-to-vault", "bc1qvault0000000000000000000000000000000"
	p.Rebalance.Rules = append(p.Rebalance.Rules, second)
	p.Withdraw.Allowlist = append(p.Withdraw.Allowlist, config.Destination{Asset: "BTC", Network: "bitcoin", Address: second.Address})
	e.policy.Store(p)
	r := e.start()
	e.run(r)
	ws := e.journaled()
	if len(ws) != 1 || !ws[0].Amount.Equal(dec("8")) {
		t.Fatalf("journal %+v, want one sweep of 8 (10 down to keep 2)", ws)
	}
	if got := r.Status().Rules[1].Reason; got != ReasonBelowHighWater {
		t.Errorf("second rule reason %q, want %q: the first sweep already took the excess", got, ReasonBelowHighWater)
	}
}

func TestStartSchedulesRuns(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	p := testPolicy()
	p.Rebalance.Schedule = "@every 1s"
	e.policy.Store(p)
	e.start()
	deadline := time.Now().Add(10 * time.Second)
	for len(e.desk.Withdrawals()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no scheduled run withdrew within 10s of an @every 1s schedule")
		}
		time.Sleep(20 * time.Millisecond) // polling a condition
	}
}

// TestResolvingToAFinishedDeskRequestFreesTheRule: an operator names the desk
// request of an unresolved withdrawal after it already completed; the
// withdrawal takes on that status at once and its rule runs again.
func TestResolvingToAFinishedDeskRequestFreesTheRule(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	ctx := context.Background()
	id, err := e.journal.InsertWithdrawalIntent(ctx, journal.Withdrawal{Rule: ruleName, Asset: "BTC",
		Network: "bitcoin", Address: coldBTC, Amount: dec("1"), CreatedAt: e.clk.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.journal.UpdateWithdrawal(ctx, id, journal.WithdrawalUnresolved, "", "", "no match"); err != nil {
		t.Fatal(err)
	}
	deskID, err := e.client.CreateWithdrawal(ctx, astra.NewWithdrawal{InstrumentSymbol: "BTC", Amount: dec("1"), Network: "bitcoin", Address: coldBTC})
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(5 * time.Minute) // the desk completes it (three one-minute steps)
	r := e.start()
	e.run(r)
	if n := len(e.desk.Withdrawals()); n != 1 {
		t.Fatalf("desk holds %d withdrawals while one is unresolved, want 1", n)
	}
	if err := r.Resolve(ctx, id, deskID, "test"); err != nil {
		t.Fatal(err)
	}
	w, err := e.journal.WithdrawalByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if w.State != journal.WithdrawalCompleted || w.DeskID != deskID {
		t.Fatalf("resolved withdrawal is %s (desk id %q), want completed with %s", w.State, w.DeskID, deskID)
	}
	e.run(r)
	if n := len(e.desk.Withdrawals()); n != 2 {
		t.Fatalf("desk holds %d withdrawals after the resolution, want the rule to have swept again (2)", n)
	}
}

// TestNoWithdrawalSentWithoutLeadership: an intent journaled by a process
// that, by the time of its POST, can no longer confirm its leadership (SPEC
// 11, invariant 13) is not sent; it stays open for whoever leads next to
// match at the desk, and the rule sends nothing more meanwhile.
func TestNoWithdrawalSentWithoutLeadership(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	d := e.deps()
	d.MayAct = func() bool { return false }
	r := New(d)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(context.Background()) })
	for i := 0; i < 2; i++ {
		_ = r.RunOnce(context.Background()) // reports the unsent intent
	}
	if n := len(e.desk.Withdrawals()); n != 0 {
		t.Fatalf("the desk holds %d withdrawals from a process without leadership", n)
	}
	ws := e.journaled()
	if len(ws) != 1 || !ws[0].Open() {
		t.Fatalf("journal %+v; want one open intent (matched at the desk by the next leader)", ws)
	}
}
