package replay

import (
	"context"
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
	"treasuryd/internal/trade"
)

const testAPIKey = "test-api-key"

type fakePause struct{ atomic.Bool }

func (p *fakePause) Paused() bool { return p.Load() }

// outcomeCounter counts the outcomes the engine recorded.
type outcomeCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *outcomeCounter) add(o string) {
	c.mu.Lock()
	c.n[o]++
	c.mu.Unlock()
}

func (c *outcomeCounter) get(o string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[o]
}

// liveProgram sells 0.1 BTC per quote at 65,000 or better until 0.5 BTC is
// sold. The simulator quotes every 20ms, so the cooldown (110ms) and the
// reference window (1.01s) end between two quotes, never on one: replay
// decides at the receive time, the daemon a few microseconds later.
func liveProgram() config.Program {
	return config.Program{Name: "sell-btc", Base: "BTC", Quote: "USD", Side: config.SideSell,
		Size: dec("0.1"), LimitPrice: dec("65000"), Target: dec("0.5"), MaxDailyNotional: dec("10000000"),
		Cooldown: 110 * time.Millisecond, MinValidity: 200 * time.Millisecond, Reserve: dec("1")}
}

// TestReplayOfTheLivePolicyReproducesEveryDecision runs a real engine with
// the recorder against the desk simulator through accepts, cooldowns, limit
// refusals, a pause and the target, then replays the recording: the live
// policy gives every frame its recorded outcome and the same accepts; changed
// policies move the outcomes the way the change should.
func TestReplayOfTheLivePolicyReproducesEveryDecision(t *testing.T) {
	desk, err := sim.NewDesk(sim.DeskConfig{
		AccountID: testAccount, APIKey: testAPIKey, Seed: 5,
		Balances:      map[string]decimal.Decimal{"BTC": dec("20"), "USD": dec("2000000")},
		Prices:        map[string]decimal.Decimal{"BTC-USD": dec("65000")},
		VolatilityBps: dec("10"),
		QuoteInterval: 20 * time.Millisecond,
		QuoteTTL:      2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := desk.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { desk.Close() })
	client, err := astra.New(astra.Options{BaseURL: desk.BaseURL(), WSURL: desk.WSURL(), APIKey: testAPIKey,
		AccountID: testAccount, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	j := openJournal(t)
	m := metrics.New("test")
	rec := NewRecorder(RecorderOptions{Store: j, Retention: time.Hour, Dropped: m.RecorderDropped})
	if err := rec.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopRecorder(t, rec) })
	pol := &config.Policy{AccountID: testAccount, Programs: []config.Program{liveProgram()}}
	pause := &fakePause{}
	seen := &outcomeCounter{n: map[string]int{}}
	book := balances.New(balances.Options{Metrics: m, Desk: client, Every: 50 * time.Millisecond})
	if err := book.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { book.Stop(context.Background()) })
	e := trade.New(trade.Deps{Metrics: m, Journal: j, Desk: client, Book: book, Pause: pause, Policy: pol,
		Recorder: func(program string, frame []byte, at time.Time, env strategy.Env, outcome string) {
			seen.add(outcome)
			rec.Record(program, frame, at, env, outcome)
		}})
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stopEngine := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(stopEngine)

	waitFor(t, "a first accept", 15*time.Second, func() bool { return seen.get(strategy.OutcomeAccepted) >= 1 })
	pause.Store(true)
	waitFor(t, "paused decisions", 5*time.Second, func() bool { return seen.get(strategy.OutcomePaused) >= 10 })
	pause.Store(false)
	waitFor(t, "the target reached", 30*time.Second, func() bool { return seen.get(strategy.OutcomeTargetReached) >= 10 })
	stopEngine()
	stopRecorder(t, rec)
	if d := testutil.ToFloat64(m.RecorderDropped); d != 0 {
		t.Fatalf("%v frames dropped", d)
	}
	for _, o := range []string{strategy.OutcomeAccepted, strategy.OutcomeCooldown, strategy.OutcomeLimitPrice,
		strategy.OutcomePaused, strategy.OutcomeTargetReached} {
		if seen.get(o) == 0 {
			t.Fatalf("the live run decided no %s: outcomes %v", o, seen.n)
		}
	}
	frames := allFrames(t, j)
	t.Logf("live run: %d frames, outcomes %v", len(frames), seen.n)

	live := replayOne(t, j, pol)
	if live.Differing != 0 || live.Matching != int64(len(frames)) || live.Quotes != int64(len(frames)) {
		t.Fatalf("live policy replay: %d matching, %d differing of %d frames; first differences %+v",
			live.Matching, live.Differing, len(frames), live.Differences)
	}
	for o, n := range seen.n {
		if live.Outcomes[o] != int64(n) {
			t.Fatalf("replayed %s %d times, the daemon %d", o, live.Outcomes[o], n)
		}
	}
	if live.Accepts != live.Actual.Accepts || !live.BaseExecuted.Equal(live.Actual.BaseExecuted) ||
		!live.Notional.Equal(live.Actual.Notional) || live.Accepts != 5 || !live.BaseExecuted.Equal(dec("0.5")) {
		t.Fatalf("replayed %d accepts, %s base, %s notional; the daemon %d, %s, %s (want 5 and 0.5)", live.Accepts,
			live.BaseExecuted, live.Notional, live.Actual.Accepts, live.Actual.BaseExecuted, live.Actual.Notional)
	}
	if live.AveragePrice == nil || !live.AveragePrice.Equal(live.Notional.DivRound(live.BaseExecuted, PricePlaces)) ||
		live.AveragePrice.LessThan(dec("65000")) {
		t.Fatalf("average price %v for %s / %s, a sell at limit 65000", live.AveragePrice, live.Notional, live.BaseExecuted)
	}

	tests := []struct {
		name   string
		change func(*config.Program)
		check  func(t *testing.T, got *ProgramReport)
	}{
		{"looser limit_price refuses fewer quotes", func(p *config.Program) { p.LimitPrice = dec("64000") },
			func(t *testing.T, got *ProgramReport) {
				if got.Outcomes[strategy.OutcomeLimitPrice] >= live.Outcomes[strategy.OutcomeLimitPrice] || got.Accepts < live.Accepts {
					t.Fatalf("limit_price %d (live %d), accepts %d (live %d)", got.Outcomes[strategy.OutcomeLimitPrice],
						live.Outcomes[strategy.OutcomeLimitPrice], got.Accepts, live.Accepts)
				}
			}},
		{"stricter limit_price refuses more quotes", func(p *config.Program) { p.LimitPrice = dec("65300") },
			func(t *testing.T, got *ProgramReport) {
				if got.Outcomes[strategy.OutcomeLimitPrice] <= live.Outcomes[strategy.OutcomeLimitPrice] || got.Accepts > live.Accepts {
					t.Fatalf("limit_price %d (live %d), accepts %d (live %d)", got.Outcomes[strategy.OutcomeLimitPrice],
						live.Outcomes[strategy.OutcomeLimitPrice], got.Accepts, live.Accepts)
				}
			}},
		{"a reference rule refuses quotes that do not beat the median", func(p *config.Program) {
			p.Reference = &config.Reference{Window: 1010 * time.Millisecond, MinImprovementBps: dec("5")}
		}, func(t *testing.T, got *ProgramReport) {
			if got.Outcomes[strategy.OutcomeReference] == 0 || got.Accepts > live.Accepts {
				t.Fatalf("reference %d, accepts %d (live %d)", got.Outcomes[strategy.OutcomeReference], got.Accepts, live.Accepts)
			}
		}},
		{"a longer cooldown makes more cooldown outcomes", func(p *config.Program) { p.Cooldown = 510 * time.Millisecond },
			func(t *testing.T, got *ProgramReport) {
				if got.Outcomes[strategy.OutcomeCooldown] <= live.Outcomes[strategy.OutcomeCooldown] || got.Accepts > live.Accepts {
					t.Fatalf("cooldown %d (live %d), accepts %d (live %d)", got.Outcomes[strategy.OutcomeCooldown],
						live.Outcomes[strategy.OutcomeCooldown], got.Accepts, live.Accepts)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := liveProgram()
			tt.change(&cfg)
			got := replayOne(t, j, &config.Policy{AccountID: testAccount, Programs: []config.Program{cfg}})
			if got.Quotes != int64(len(frames)) || got.Differing == 0 ||
				len(got.Differences) != int(min(got.Differing, MaxDifferences)) || got.Matching+got.Differing != got.Quotes {
				t.Fatalf("quotes %d of %d, %d matching, %d differing, %d listed", got.Quotes, len(frames), got.Matching,
					got.Differing, len(got.Differences))
			}
			for _, d := range got.Differences {
				if d.Recorded == d.Replayed || d.QuoteID == "" || d.ReplayedReason == "" {
					t.Fatalf("difference %+v", d)
				}
			}
			// What the daemon did does not depend on the policy replayed.
			if got.Actual.Accepts != live.Actual.Accepts || !got.Actual.BaseExecuted.Equal(live.Actual.BaseExecuted) {
				t.Fatalf("actual %+v, want %+v", got.Actual, live.Actual)
			}
			tt.check(t, got)
		})
	}
}

func replayOne(t *testing.T, j *journal.Journal, pol *config.Policy) *ProgramReport {
	t.Helper()
	rep, err := Run(context.Background(), j, pol, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Programs) != 1 {
		t.Fatalf("%d programs in the report", len(rep.Programs))
	}
	return &rep.Programs[0]
}
