package strategy

import (
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
)

const testAccount = "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// sellProgram is a size program with every rule set.
func sellProgram() config.Program {
	return config.Program{
		Name: "sell-btc", Base: "BTC", Quote: "USD", Side: config.SideSell,
		Size: dec("0.5"), LimitPrice: dec("64000"),
		Reference:        &config.Reference{Window: 5 * time.Minute, MinImprovementBps: dec("2")},
		Target:           dec("10"),
		MaxDailyNotional: dec("100000"),
		Cooldown:         30 * time.Second,
		MinValidity:      500 * time.Millisecond,
		Reserve:          dec("1"),
	}
}

func buyProgram() config.Program {
	return config.Program{
		Name: "buy-btc", Base: "BTC", Quote: "USD", Side: config.SideBuy,
		Size: dec("0.5"), LimitPrice: dec("64000"),
		Reference:   &config.Reference{Window: 5 * time.Minute, MinImprovementBps: dec("2")},
		Cooldown:    30 * time.Second,
		MinValidity: 500 * time.Millisecond,
		Reserve:     dec("1000"),
	}
}

// notionalProgram sells BTC for a fixed 32000 USD per quote.
func notionalProgram(side string) config.Program {
	return config.Program{
		Name: "notional", Base: "BTC", Quote: "USD", Side: side,
		Notional: dec("32000"), LimitPrice: dec("64000"),
		Reference:   &config.Reference{Window: 5 * time.Minute, MinImprovementBps: dec("2")},
		MinValidity: 500 * time.Millisecond,
	}
}

// quoteAt builds a quote of cfg at the given base and quote quantities that
// expires ttl after t0.
func quoteAt(cfg config.Program, base, quote string, ttl time.Duration) *astra.Quote {
	q := &astra.Quote{
		QuoteID: fmt.Sprintf("q-%s-%d", quote, quoteSeq.Add(1)), AccountID: testAccount,
		ExpiryMicros: t0.Add(ttl).UnixMicro(), Signature: "sig",
	}
	if cfg.Side == config.SideSell {
		q.FromAsset, q.FromQty, q.ToAsset, q.ToQty = cfg.Quote, dec(quote), cfg.Base, dec(base)
	} else {
		q.FromAsset, q.FromQty, q.ToAsset, q.ToQty = cfg.Base, dec(base), cfg.Quote, dec(quote)
	}
	return q
}

// quoteSeq makes every test quote's id unique: a repeated id is invalid.
var quoteSeq atomic.Int64

// sized quotes a size-0.5 program at price (quote per base).
func sized(cfg config.Program, price string, ttl time.Duration) *astra.Quote {
	return quoteAt(cfg, "0.5", dec(price).Mul(dec("0.5")).String(), ttl)
}

func openEnv() Env {
	return Env{GateOpen: true, Balance: dec("5"), BalanceKnown: true}
}

func zeroValidity(c config.Program) config.Program {
	c.MinValidity = 0
	return c
}

func TestDecideOutcomes(t *testing.T) {
	sell := sellProgram()
	buy := buyProgram()
	tests := []struct {
		name   string
		cfg    config.Program
		setup  func(p *Program)
		quote  *astra.Quote
		qErr   error
		env    func(e *Env)
		want   string
		reason string
	}{
		{name: "accepted", cfg: sell, quote: sized(sell, "65000", 5*time.Second), want: OutcomeAccepted},
		{name: "invalid when validation failed", cfg: sell, quote: sized(sell, "65000", 5*time.Second),
			qErr: errors.New("bad signature"), want: OutcomeInvalid},
		{name: "invalid without a quote", cfg: sell, qErr: errors.New("undecodable"), want: OutcomeInvalid},
		{name: "invalid when the fixed size does not match", cfg: sell,
			quote: quoteAt(sell, "0.6", "39000", 5*time.Second), want: OutcomeInvalid},
		{name: "invalid when the expiry lies more than 10 minutes ahead", cfg: sell,
			quote: sized(sell, "65000", 10*time.Minute+time.Microsecond), want: OutcomeInvalid},
		{name: "an expiry exactly 10 minutes ahead is valid", cfg: sell,
			quote: sized(sell, "65000", 10*time.Minute), want: OutcomeAccepted},
		{name: "invalid when the id was accepted by this process", cfg: sell,
			setup: func(p *Program) { p.Commit(withID(sized(sell, "65000", 5*time.Second), "dup"), t0.Add(-time.Minute)) },
			quote: withID(sized(sell, "65000", 5*time.Second), "dup"), want: OutcomeInvalid, reason: "quote id already accepted"},
		{name: "invalid when the id was accepted, even if the desk refused it", cfg: sell,
			setup: func(p *Program) {
				q := withID(sized(sell, "65000", 5*time.Second), "dup")
				p.Commit(q, t0.Add(-time.Minute))
				p.Release(dec("0.5"), dec("32500"), t0.Add(-time.Minute))
			},
			quote: withID(sized(sell, "65000", 5*time.Second), "dup"), want: OutcomeInvalid},
		{name: "invalid when the journal holds the id from an earlier process", cfg: sell,
			setup: restoreID("dup", t0.Add(-time.Minute), t0.Add(-time.Minute+5*time.Second), false),
			quote: withID(sized(sell, "65000", 5*time.Second), "dup"), want: OutcomeInvalid, reason: "quote id already accepted"},
		{name: "an id whose quote expired long before the newest accept is not restored", cfg: sell,
			setup: func(p *Program) {
				p.Restore([]PastAccept{
					{QuoteID: "dup", SentAt: t0.Add(-2 * time.Hour), ExpiryMicros: t0.Add(-2 * time.Hour).UnixMicro(), Counts: false /* error */},
					{QuoteID: "other", SentAt: t0.Add(-time.Hour), ExpiryMicros: t0.Add(-time.Hour).UnixMicro(), Counts: false /* error */},
				})
			},
			quote: withID(sized(sell, "65000", 5*time.Second), "dup"), want: OutcomeAccepted},
		{name: "another id is accepted", cfg: sell,
			setup: restoreID("dup", t0.Add(-time.Minute), t0.Add(-time.Minute+5*time.Second), true),
			quote: withID(sized(sell, "65000", 5*time.Second), "fresh"), want: OutcomeAccepted},
		{name: "paused", cfg: sell, quote: sized(sell, "65000", 5*time.Second),
			env: func(e *Env) { e.Paused = true }, want: OutcomePaused},
		{name: "compliance names the gate's reason", cfg: sell, quote: sized(sell, "65000", 5*time.Second),
			env: func(e *Env) { e.GateOpen, e.GateReason = false, "no_point" }, want: OutcomeCompliance, reason: "no_point"},
		{name: "expiring below min_validity", cfg: sell, quote: sized(sell, "65000", 499*time.Millisecond), want: OutcomeExpiring},
		{name: "expired", cfg: sell, quote: sized(sell, "65000", -time.Second), want: OutcomeExpiring},
		{name: "exactly min_validity left is enough", cfg: sell, quote: sized(sell, "65000", 500*time.Millisecond), want: OutcomeAccepted},
		{name: "expiring now with min_validity 0", cfg: zeroValidity(sell), quote: sized(sell, "65000", 0), want: OutcomeExpiring},
		{name: "any time left with min_validity 0", cfg: zeroValidity(sell), quote: sized(sell, "65000", time.Microsecond), want: OutcomeAccepted},
		{name: "sell below limit", cfg: sell, quote: sized(sell, "63999.99", 5*time.Second), want: OutcomeLimitPrice},
		{name: "sell at limit", cfg: sell, quote: sized(sell, "64000", 5*time.Second), want: OutcomeAccepted},
		{name: "buy above limit", cfg: buy, quote: sized(buy, "64000.01", 5*time.Second),
			env: func(e *Env) { e.Balance = dec("100000") }, want: OutcomeLimitPrice},
		{name: "buy at limit", cfg: buy, quote: sized(buy, "64000", 5*time.Second),
			env: func(e *Env) { e.Balance = dec("100000") }, want: OutcomeAccepted},
		{name: "sell under median plus bps", cfg: sell, setup: window(sell, "65000", "65000", "66000"),
			quote: sized(sell, "65012.99", 5*time.Second), want: OutcomeReference},
		{name: "sell at median plus bps", cfg: sell, setup: window(sell, "65000", "65000", "66000"),
			quote: sized(sell, "65013", 5*time.Second), want: OutcomeAccepted},
		{name: "sell under the median beyond 18 decimals", cfg: sell,
			setup: window(sell, "65000.00000000000000000002", "65000.00000000000000000002", "66000"),
			quote: sized(sell, "65013", 5*time.Second), want: OutcomeReference},
		{name: "sell at the median beyond 18 decimals", cfg: sell,
			setup: window(sell, "65000.00000000000000000002", "65000.00000000000000000002", "66000"),
			quote: sized(sell, "65013.00000000000000000003", 5*time.Second), want: OutcomeAccepted},
		{name: "sell even window uses the mean of the middle two", cfg: sell, setup: window(sell, "64000", "65000", "67000", "90000"),
			quote: sized(sell, "66013.19", 5*time.Second), want: OutcomeReference},
		{name: "sell even window passes at mean times factor", cfg: sell, setup: window(sell, "64000", "65000", "67000", "90000"),
			quote: sized(sell, "66013.2", 5*time.Second), want: OutcomeAccepted},
		{name: "quotes older than the window do not count", cfg: sell, setup: func(p *Program) {
			p.Decide(sized(sell, "70000", 5*time.Minute), nil, openEnv(), t0.Add(-5*time.Minute))
		}, quote: sized(sell, "65000", 5*time.Second), want: OutcomeAccepted},
		{name: "invalid quotes do not join the window", cfg: sell, setup: func(p *Program) {
			p.Decide(sized(sell, "70000", 5*time.Minute), errors.New("bad"), openEnv(), t0.Add(-time.Second))
		}, quote: sized(sell, "65000", 5*time.Second), want: OutcomeAccepted},
		{name: "buy over median minus bps", cfg: buy, setup: window(buy, "60000", "60000", "61000"),
			quote: sized(buy, "59988.01", 5*time.Second), env: func(e *Env) { e.Balance = dec("100000") }, want: OutcomeReference},
		{name: "buy at median minus bps", cfg: buy, setup: window(buy, "60000", "60000", "61000"),
			quote: sized(buy, "59988", 5*time.Second), env: func(e *Env) { e.Balance = dec("100000") }, want: OutcomeAccepted},
		{name: "cooldown", cfg: sell, setup: commitAt(sell, t0.Add(-29*time.Second)),
			quote: sized(sell, "65000", 5*time.Second), want: OutcomeCooldown},
		{name: "cooldown over", cfg: sell, setup: commitAt(sell, t0.Add(-30*time.Second)),
			quote: sized(sell, "65000", 5*time.Second), want: OutcomeAccepted},
		{name: "target would be exceeded", cfg: sell, setup: restore(sell, "9.6", "1", t0.Add(-time.Hour)),
			quote: sized(sell, "65000", 5*time.Second), want: OutcomeTargetReached},
		{name: "target reached exactly is allowed", cfg: sell, setup: restore(sell, "9.5", "1", t0.Add(-time.Hour)),
			quote: sized(sell, "65000", 5*time.Second), want: OutcomeAccepted},
		{name: "daily cap would be exceeded", cfg: sell, setup: restore(sell, "1", "67500.01", t0.Add(-time.Hour)),
			quote: sized(sell, "65000", 5*time.Second), want: OutcomeDailyCap},
		{name: "daily cap reached exactly is allowed", cfg: sell, setup: restore(sell, "1", "67500", t0.Add(-time.Hour)),
			quote: sized(sell, "65000", 5*time.Second), want: OutcomeAccepted},
		{name: "notional older than 24h does not count", cfg: sell, setup: restore(sell, "1", "99999", t0.Add(-24*time.Hour)),
			quote: sized(sell, "65000", 5*time.Second), want: OutcomeAccepted},
		{name: "sell reserve", cfg: sell, quote: sized(sell, "65000", 5*time.Second),
			env: func(e *Env) { e.Balance = dec("1.49") }, want: OutcomeReserve},
		{name: "sell reserve kept exactly", cfg: sell, quote: sized(sell, "65000", 5*time.Second),
			env: func(e *Env) { e.Balance = dec("1.5") }, want: OutcomeAccepted},
		{name: "balance unknown", cfg: sell, quote: sized(sell, "65000", 5*time.Second),
			env: func(e *Env) { e.BalanceKnown = false }, want: OutcomeReserve},
		{name: "buy reserve is on the quote asset", cfg: buy, quote: sized(buy, "60000", 5*time.Second),
			env: func(e *Env) { e.Balance = dec("30999.99") }, want: OutcomeReserve},
		{name: "buy reserve kept exactly", cfg: buy, quote: sized(buy, "60000", 5*time.Second),
			env: func(e *Env) { e.Balance = dec("31000") }, want: OutcomeAccepted},
		{name: "in flight", cfg: sell, quote: sized(sell, "65000", 5*time.Second),
			env: func(e *Env) { e.InFlight = true }, want: OutcomeInFlight},
		{name: "global dry run", cfg: sell, quote: sized(sell, "65000", 5*time.Second),
			env: func(e *Env) { e.DryRun = true }, want: OutcomeDryRun},
		{name: "program dry run", cfg: withDryRun(sell), quote: sized(sell, "65000", 5*time.Second), want: OutcomeDryRun},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewProgram(testAccount, tt.cfg)
			if tt.setup != nil {
				tt.setup(p)
			}
			env := openEnv()
			if tt.env != nil {
				tt.env(&env)
			}
			d := p.Decide(tt.quote, tt.qErr, env, t0)
			if d.Outcome != tt.want {
				t.Fatalf("outcome = %s (%s), want %s", d.Outcome, d.Reason, tt.want)
			}
			if d.Reason == "" {
				t.Errorf("empty reason")
			}
			if tt.reason != "" && d.Reason != tt.reason {
				t.Errorf("reason = %q, want %q", d.Reason, tt.reason)
			}
		})
	}
}

func withDryRun(c config.Program) config.Program { c.DryRun = true; return c }

// window feeds valid quotes at the given prices in the seconds before t0.
func window(cfg config.Program, prices ...string) func(p *Program) {
	return func(p *Program) {
		for i, pr := range prices {
			at := t0.Add(-time.Duration(len(prices)-i) * time.Second)
			env := openEnv()
			env.Paused = true // the window takes every valid quote, whatever its outcome
			p.Decide(sized(cfg, pr, 5*time.Minute), nil, env, at)
		}
	}
}

func commitAt(cfg config.Program, at time.Time) func(p *Program) {
	return func(p *Program) { p.Commit(sized(cfg, "65000", time.Hour), at) }
}

// restore loads one counted accept of base/quote sent at `at`.
func restore(cfg config.Program, base, quote string, at time.Time) func(p *Program) {
	return func(p *Program) {
		p.Restore([]PastAccept{{BaseQty: dec(base), QuoteQty: dec(quote), SentAt: at, Counts: true /* ok */}})
	}
}

func withID(q *astra.Quote, id string) *astra.Quote { q.QuoteID = id; return q }

// restoreID loads one journaled accept of quote id, sent at `at`, whose quote
// expired at expiry, executed (counts) or not (and with no quantities).
func restoreID(id string, at, expiry time.Time, counts bool) func(p *Program) {
	return func(p *Program) {
		p.Restore([]PastAccept{{QuoteID: id, SentAt: at, ExpiryMicros: expiry.UnixMicro(), Counts: counts}})
	}
}

// TestAcceptedIDsAreForgottenAfterTheirExpiryBound: an accepted id is
// remembered until its quote expired MaxExpiryAhead ago, and the set does
// not grow with the accepts of more than that span.
func TestAcceptedIDsAreForgottenAfterTheirExpiryBound(t *testing.T) {
	cfg := sellProgram()
	cfg.Cooldown, cfg.Target, cfg.MaxDailyNotional, cfg.Reference = 0, decimal.Zero, decimal.Zero, nil
	p := NewProgram(testAccount, cfg)
	q := withID(sized(cfg, "65000", 5*time.Second), "dup")
	p.Commit(q, t0)
	again := func(at time.Time) string {
		q := withID(sized(cfg, "65000", 5*time.Second), "dup")
		q.ExpiryMicros = at.Add(5 * time.Second).UnixMicro()
		return p.Decide(q, nil, openEnv(), at).Outcome
	}
	if got := again(t0.Add(MaxExpiryAhead)); got != OutcomeInvalid {
		t.Fatalf("10 minutes later: %s, want invalid", got)
	}
	// One accept a second for an hour: the set keeps about 10 minutes' worth.
	for i := 1; i <= 3600; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		q := withID(sized(cfg, "65000", 5*time.Second), fmt.Sprint("id-", i))
		q.ExpiryMicros = at.Add(5 * time.Second).UnixMicro()
		p.Commit(q, at)
	}
	p.mu.Lock()
	n := len(p.ids)
	p.mu.Unlock()
	if limit := int(MaxExpiryAhead/time.Second) + 10; n > limit {
		t.Errorf("the set holds %d ids after an hour of accepts, want at most %d", n, limit)
	}
	if got := again(t0.Add(time.Hour)); got != OutcomeAccepted {
		t.Errorf("an hour later: %s, want accepted (the id is forgotten)", got)
	}
}

// TestDecideChecksInSpecOrder starts from a quote that fails every check and
// repairs them one at a time: the outcome must walk the SPEC 5.2 list.
func TestDecideChecksInSpecOrder(t *testing.T) {
	cfg := sellProgram()
	cfg.Target = dec("10")
	p := NewProgram(testAccount, cfg)
	// Progress: 9.6 executed, 99,990 notional, last accept 1s before t0.
	p.Restore([]PastAccept{{BaseQty: dec("9.6"), QuoteQty: dec("99990"), SentAt: t0.Add(-time.Second), Counts: true /* unknown */}})
	// A reference window at 70,000, big enough that the quotes decided
	// below (which join it) do not move its median.
	for i := 0; i < 9; i++ {
		p.Decide(sized(cfg, "70000", 5*time.Minute), nil, Env{}, t0.Add(-time.Duration(20-i)*time.Second))
	}
	price := "60000"
	ttl := 100 * time.Millisecond
	qErr := errors.New("bad")
	env := Env{Paused: true, GateOpen: false, Balance: dec("1"), BalanceKnown: true, InFlight: true, DryRun: true}
	now := t0
	fixes := []struct {
		want string
		fix  func()
	}{
		{OutcomeInvalid, func() { qErr = nil }},
		{OutcomePaused, func() { env.Paused = false }},
		{OutcomeCompliance, func() { env.GateOpen = true }},
		{OutcomeExpiring, func() { ttl = 5 * time.Minute }},
		{OutcomeLimitPrice, func() { price = "65000" }},
		{OutcomeReference, func() { price = "71000" }},
		{OutcomeCooldown, func() { now = t0.Add(time.Minute) }},
		{OutcomeTargetReached, func() {
			p.Release(dec("9.6"), decimal.Zero, time.Time{})
			p.Commit(sized(cfg, "1", time.Hour), t0.Add(-time.Second))
		}},
		{OutcomeDailyCap, func() { now = t0.Add(24 * time.Hour) }},
		// Each decided quote joins the reference window, so the later
		// ones have to keep beating it.
		{OutcomeReserve, func() { env.Balance = dec("2"); price = "72000" }},
		{OutcomeInFlight, func() { env.InFlight = false; price = "73000" }},
		{OutcomeDryRun, func() { env.DryRun = false; price = "74000" }},
		{OutcomeAccepted, func() {}},
	}
	for _, f := range fixes {
		var q *astra.Quote
		q = sized(cfg, price, ttl)
		q.ExpiryMicros = now.Add(ttl).UnixMicro()
		d := p.Decide(q, qErr, env, now)
		if d.Outcome != f.want {
			t.Fatalf("outcome = %s (%s), want %s", d.Outcome, d.Reason, f.want)
		}
		f.fix()
	}
}

func TestNotionalProgramComparesWithoutDividing(t *testing.T) {
	tests := []struct {
		name   string
		side   string
		window []string // base quantities of earlier quotes (quote fixed at 32000)
		base   string
		want   string
	}{
		// 32000/0.5 = 64000 is the limit.
		{name: "sell at limit", side: config.SideSell, base: "0.5", want: OutcomeAccepted},
		{name: "sell below limit", side: config.SideSell, base: "0.50001", want: OutcomeLimitPrice},
		{name: "buy at limit", side: config.SideBuy, base: "0.5", want: OutcomeAccepted},
		{name: "buy above limit", side: config.SideBuy, base: "0.49999", want: OutcomeLimitPrice},
		// Median price 32000/0.49 = 65306.12...; ×1.0002 = 65319.18...; base ≤ 0.49/1.0002 = 0.489902...
		{name: "sell odd window fails", side: config.SideSell, window: []string{"0.48", "0.49", "0.495"}, base: "0.48991", want: OutcomeReference},
		{name: "sell odd window passes", side: config.SideSell, window: []string{"0.48", "0.49", "0.495"}, base: "0.4899", want: OutcomeAccepted},
		// Even: prices 32000/0.48 and 32000/0.49, mean 65986.39...; ×1.0002 = 65999.59...; base ≤ 0.484851...
		{name: "sell even window fails", side: config.SideSell, window: []string{"0.47", "0.48", "0.49", "0.495"}, base: "0.48486", want: OutcomeReference},
		{name: "sell even window passes", side: config.SideSell, window: []string{"0.47", "0.48", "0.49", "0.495"}, base: "0.48485", want: OutcomeAccepted},
		// Buy: median 32000/0.51 = 62745.09...; ×0.9998 = 62732.54...; base ≥ 0.51/0.9998 = 0.510102...
		{name: "buy odd window fails", side: config.SideBuy, window: []string{"0.505", "0.51", "0.52"}, base: "0.5101", want: OutcomeReference},
		{name: "buy odd window passes", side: config.SideBuy, window: []string{"0.505", "0.51", "0.52"}, base: "0.51011", want: OutcomeAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := notionalProgram(tt.side)
			p := NewProgram(testAccount, cfg)
			for i, b := range tt.window {
				p.Decide(quoteAt(cfg, b, "32000", 5*time.Minute), nil, Env{}, t0.Add(-time.Duration(10-i)*time.Second))
			}
			env := openEnv()
			env.Balance = dec("1000000")
			d := p.Decide(quoteAt(cfg, tt.base, "32000", 5*time.Second), nil, env, t0)
			if d.Outcome != tt.want {
				t.Fatalf("outcome = %s (%s), want %s", d.Outcome, d.Reason, tt.want)
			}
		})
	}
}

// TestReferenceMedianMatchesSortedWindow drives the window through inserts,
// evictions and the capacity bound and checks its median against a brute
// force over the same quotes.
func TestReferenceMedianMatchesSortedWindow(t *testing.T) {
	for _, tt := range []struct {
		name string
		fine int   // every fine-th quote carries a price with exp decimals
		exp  int32 // -20: a key with no fixed form; -16: one beyond the window's scale
		few  int   // > 0: only this many prices, a unit of the window's scale apart
	}{
		{"fixed-point keys", 0, 0, 0},
		{"some keys beyond 18 decimals", 7, -20, 0},
		{"some keys beyond the window's scale", 5, -16, 0},
		{"many equal keys, a unit apart", 0, 0, 4},
	} {
		t.Run(tt.name, func(t *testing.T) { checkWindowAgainstBruteForce(t, tt.fine, tt.exp, tt.few) })
	}
}

// checkWindowAgainstBruteForce drives the window through inserts, evictions
// and the capacity bound and checks it, at decision time (evicted, with the
// hole the next insert closes) and after, against a brute force over the
// same quotes.
func checkWindowAgainstBruteForce(t *testing.T, fine int, exp int32, few int) {
	cfg := sellProgram()
	cfg.Reference = &config.Reference{Window: 30 * time.Second}
	p := NewProgram(testAccount, cfg)
	type rec struct {
		at  time.Time
		qty decimal.Decimal
	}
	var all []rec
	check := func(step int, now time.Time, from int) {
		t.Helper()
		// Brute force: the valid quotes of the last 30s, newest refCapacity.
		var in []decimal.Decimal
		for j := from; j >= 0 && len(in) < refCapacity; j-- {
			if now.Sub(all[j].at) < 30*time.Second {
				in = append(in, all[j].qty)
			}
		}
		if len(in) != p.ref.Len() {
			t.Fatalf("step %d: window holds %d, want %d", step, p.ref.Len(), len(in))
		}
		sortDecimals(in)
		for k := range in {
			if !in[k].Equal(p.ref.key(k)) {
				t.Fatalf("step %d: sorted[%d] = %s, want %s", step, k, p.ref.key(k), in[k])
			}
		}
	}
	seed := uint64(7)
	for i := 0; i < 3000; i++ {
		seed = seed*6364136223846793005 + 1442695040888963407
		price := decimal.New(int64(60000_00+seed>>40%1000000), -2) // 60000.00 .. 69999.99
		if few > 0 {
			// Keys (half the price) of 30000 + k·10^-13: one unit apart at
			// the window's scale (13 decimals for keys near 30,000).
			price = decimal.New(60000, 0).Add(decimal.New(int64(seed>>40%uint64(few))*2, -13))
		}
		if fine > 0 && i%fine == 0 {
			price = price.Add(decimal.New(int64(seed>>50%1000+1), exp))
		}
		// 20 ms apart the window outgrows refCapacity (the capacity
		// bound evicts); from quote 1500 on, 45 ms apart, it holds fewer
		// and evicts by time, one key a quote, as a steady stream does.
		now := t0.Add(time.Duration(min(i, 1500))*20*time.Millisecond + time.Duration(max(i-1500, 0))*45*time.Millisecond)
		q := sized(cfg, price.String(), 5*time.Minute)
		_, qty := p.Quantities(q)
		checkNow := i%25 == 0 || i == 2999
		if checkNow && i > 0 {
			p.mu.Lock()
			p.ref.evict(now.UnixNano(), nil) // as Decide does first
			check(i, now, len(all)-1)
			p.mu.Unlock()
		}
		p.Decide(q, nil, Env{}, now)
		all = append(all, rec{now, qty})
		if checkNow {
			check(i, now, len(all)-1)
		}
	}
}

func sortDecimals(ds []decimal.Decimal) {
	sort.Slice(ds, func(i, j int) bool { return ds[i].LessThan(ds[j]) })
}

func TestReleaseTakesBackProgress(t *testing.T) {
	cfg := sellProgram()
	p := NewProgram(testAccount, cfg)
	q := sized(cfg, "65000", time.Hour)
	p.Commit(q, t0)
	pr := p.Progress(t0)
	if !pr.Executed.Equal(dec("0.5")) || !pr.DailyNotional.Equal(dec("32500")) {
		t.Fatalf("after commit: executed %s notional %s", pr.Executed, pr.DailyNotional)
	}
	p.Release(dec("0.5"), dec("32500"), t0)
	pr = p.Progress(t0)
	if !pr.Executed.IsZero() || !pr.DailyNotional.IsZero() {
		t.Fatalf("after release: executed %s notional %s", pr.Executed, pr.DailyNotional)
	}
	if !pr.LastAccept.Equal(t0) {
		t.Fatalf("release must keep the cooldown; last accept %v", pr.LastAccept)
	}
}

func TestRestoreCountsOnlyExecutedAccepts(t *testing.T) {
	cfg := sellProgram()
	p := NewProgram(testAccount, cfg)
	p.Restore([]PastAccept{
		{BaseQty: dec("0.5"), QuoteQty: dec("32000"), SentAt: t0.Add(-48 * time.Hour), Counts: true /* ok */},
		{BaseQty: dec("0.5"), QuoteQty: dec("32100"), SentAt: t0.Add(-3 * time.Hour), Counts: true /* unknown */},
		{BaseQty: dec("0.5"), QuoteQty: dec("32200"), SentAt: t0.Add(-2 * time.Hour), Counts: true /* pending */},
		{BaseQty: dec("0.5"), QuoteQty: dec("32300"), SentAt: t0.Add(-90 * time.Minute), Counts: false /* rejected */},
		{BaseQty: dec("0.5"), QuoteQty: dec("32400"), SentAt: t0.Add(-80 * time.Minute), Counts: false /* missing */},
		{BaseQty: dec("0.5"), QuoteQty: dec("32500"), SentAt: t0.Add(-10 * time.Second), Counts: false /* error */},
	})
	pr := p.Progress(t0)
	if !pr.Executed.Equal(dec("1.5")) {
		t.Errorf("executed = %s, want 1.5 (ok, unknown, pending)", pr.Executed)
	}
	if !pr.DailyNotional.Equal(dec("64300")) {
		t.Errorf("24h notional = %s, want 64300", pr.DailyNotional)
	}
	if !pr.LastAccept.Equal(t0.Add(-10 * time.Second)) {
		t.Errorf("cooldown from %v, want the newest accept whatever its result", pr.LastAccept)
	}
}

func TestCompareIsExact(t *testing.T) {
	tests := []struct{ a, b string }{
		{"81436.0875", "81436.1"}, {"81436.1", "81436.10"}, {"0.5", "0.50000000000000000001"},
		{"-1.5", "-1.50"}, {"-2", "1"}, {"0", "0.0"}, {"123456789012345678", "1234567890123456.78"},
		{"99999999999999999999", "1e20"}, {"1e-30", "0"}, {"1", "1e19"}, {"1e25", "9999999999"},
	}
	for _, tt := range tests {
		a, b := dec(tt.a), dec(tt.b)
		if got, want := cmp(a, b), a.Cmp(b); got != want {
			t.Errorf("cmp(%s, %s) = %d, want %d", tt.a, tt.b, got, want)
		}
		if got, want := cmp(b, a), b.Cmp(a); got != want {
			t.Errorf("cmp(%s, %s) = %d, want %d", tt.b, tt.a, got, want)
		}
	}
}

// TestFixedFormsCompareExactly: comparing through fixed forms (or, without
// one, through the decimals) gives exactly what decimal.Cmp gives, and the
// reference test in 192 bits what the decimal formula gives, for
// quantities of every shape the desk may send.
func TestFixedFormsCompareExactly(t *testing.T) {
	seed := uint64(11)
	next := func(n uint64) uint64 { seed = seed*6364136223846793005 + 1442695040888963407; return seed >> 20 % n }
	random := func() decimal.Decimal {
		switch next(6) {
		case 0: // beyond 18 decimals: no fixed form
			return decimal.New(int64(next(1e12)+1), -int32(19+next(10)))
		case 1: // a coefficient beyond 18 digits
			return dec("1234567890123456789012.5").Add(decimal.New(int64(next(1e6)), -1))
		case 2:
			return decimal.Zero
		default: // what the desk sends: up to 10 decimals, up to 10^9
			return decimal.New(int64(next(1e15)), -int32(next(11)))
		}
	}
	for i := 0; i < 20000; i++ {
		a, b := random(), random()
		if i%5 == 0 {
			b = a.Add(decimal.New(int64(next(3))-1, a.Exponent())) // a neighbour
		}
		na, nb := newNum(a), newNum(b)
		if got, want := na.cmp(&nb), a.Cmp(b); got != want {
			t.Fatalf("newNum(%s).cmp(%s) = %d, want %d", a, b, got, want)
		}
		fa, oka := toFixed(a)
		fb, okb := toFixed(b)
		if !oka || !okb {
			continue
		}
		factor := decimal.New(int64(10000+next(200)), -4) // 1 + up to 199 bps
		ff, ok := toFixed(factor)
		if !ok || ff.hi != 0 {
			t.Fatalf("factor %s has no 64-bit fixed form", factor)
		}
		q := a.Add(b).Mul(factor).Div(two).Add(decimal.New(int64(next(3))-1, -12))
		fq, okq := toFixed(q)
		if !okq {
			continue
		}
		got := fq.mul(2 * fixedOne).cmp(fa.add(fb).mul(ff.lo))
		if want := q.Mul(two).Cmp(a.Add(b).Mul(factor)); got != want {
			t.Fatalf("2·%s vs (%s+%s)·%s: fixed says %d, decimals %d", q, a, b, factor, got, want)
		}
	}
}

// TestSearchScaledMatchesSortSearch: the branch-free search finds the same
// index as sort.Search, for both bounds, over sorted keys with repeats, for
// every probe, at every length.
func TestSearchScaledMatchesSortSearch(t *testing.T) {
	seed := uint64(3)
	for n := 0; n <= 70; n++ {
		s := make([]refEntry, n)
		for i := range s {
			seed = seed*6364136223846793005 + 1442695040888963407
			s[i].k = seed >> 61 // 0..7: many repeats
			if i%5 == 0 {
				s[i].k = 1<<64 - 1 - seed>>63 // the top of the range too
			}
		}
		sort.Slice(s, func(i, j int) bool { return s[i].k < s[j].k })
		for _, x := range []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 1<<64 - 2, 1<<64 - 1} {
			wantLow := sort.Search(n, func(i int) bool { return s[i].k >= x })
			wantHigh := sort.Search(n, func(i int) bool { return s[i].k > x })
			if got := searchScaled(s, x, false); got != wantLow {
				t.Fatalf("n=%d x=%d: first not below = %d, want %d", n, x, got, wantLow)
			}
			if got := searchScaled(s, x, true); got != wantHigh {
				t.Fatalf("n=%d x=%d: first above = %d, want %d", n, x, got, wantHigh)
			}
			for _, y := range []uint64{0, 3, 7, 1<<64 - 1} {
				wantY := sort.Search(n, func(i int) bool { return s[i].k > y })
				if gx, gy := searchScaled2(s, x, y); gx != wantLow || gy != wantY {
					t.Fatalf("n=%d: searchScaled2(%d, %d) = %d, %d, want %d, %d", n, x, y, gx, gy, wantLow, wantY)
				}
			}
		}
	}
}

// TestWindowScaleKeepsKeysExact: the window's integer keys are exact for
// keys with up to the scale's decimals and up to 18 times the first key;
// others are left to their decimals. Each case starts a window with its
// first key.
func TestWindowScaleKeepsKeysExact(t *testing.T) {
	for _, tt := range []struct {
		first, key string
		want       uint64 // 0: not exact
	}{
		{"0.5", "0.5", 500000000000000000},
		{"0.5", "0.000000000000000001", 1},
		{"0.5", "18.4", 18400000000000000000},
		{"0.5", "18.5", 0},
		{"32000.5", "32000.5", 320005000000000000},
		{"32000.5", "0.0000000000001", 1},
		{"32000.5", "0.00000000000001", 0},
		{"32000.5", "1844674.40737095516", 18446744073709551600},
		{"32000.5", "1844674.40737095517", 0},
		{"1", "1.5", 150000000000000000},
		{"9.99", "1", 100000000000000000},
		{"123456789012345678", "123456789012345678", 123456789012345678},
		{"123456789012345678", "0.5", 0},
	} {
		var w refWindow
		first, ok := toFixed(dec(tt.first))
		if !ok {
			t.Fatalf("%s has no fixed form", tt.first)
		}
		w.scaled(first)
		f, ok := toFixed(dec(tt.key))
		if !ok {
			t.Fatalf("%s has no fixed form", tt.key)
		}
		k, exact := w.scaled(f)
		if tt.want == 0 && exact || tt.want != 0 && (!exact || k != tt.want) {
			t.Errorf("first %s, key %s: %d exact=%v, want %d", tt.first, tt.key, k, exact, tt.want)
		}
	}
}

// TestDecisionsFollowEachNewBalanceAndQuantity: one program deciding on
// and on sees every new balance and quantity (the fixed forms it keeps for
// the last ones are never reused for another value), whether the value is a
// new decimal or the very same one again.
func TestDecisionsFollowEachNewBalanceAndQuantity(t *testing.T) {
	cfg := zeroValidity(sellProgram())
	cfg.Reference, cfg.Cooldown = nil, 0
	p := NewProgram(testAccount, cfg)
	rich, poor := dec("5"), dec("1.4") // reserve 1 + size 0.5 = 1.5
	steps := []struct {
		balance decimal.Decimal
		price   string
		want    string
	}{
		{rich, "65000", OutcomeAccepted},
		{poor, "65000", OutcomeReserve},
		{poor, "65000", OutcomeReserve},
		{rich, "65000", OutcomeAccepted},
		{dec("1.5"), "65000", OutcomeAccepted},
		{dec("1.49"), "65000", OutcomeReserve},
		{rich, "63999", OutcomeLimitPrice},
		{rich, "64000", OutcomeAccepted},
		{rich, "63999.99", OutcomeLimitPrice},
	}
	for i, s := range steps {
		env := openEnv()
		env.Balance = s.balance
		if d := p.Decide(sized(cfg, s.price, time.Minute), nil, env, t0); d.Outcome != s.want {
			t.Fatalf("step %d (balance %s, price %s): %s (%s), want %s", i, s.balance, s.price, d.Outcome, d.Reason, s.want)
		}
	}
}

// TestOutcomeIndexIsTheIndexInOutcomes keeps the benchmark's counter honest.
func TestOutcomeIndexIsTheIndexInOutcomes(t *testing.T) {
	for k, o := range Outcomes {
		if got := outcomeIndex(o); got != k {
			t.Errorf("outcomeIndex(%q) = %d, want %d", o, got, k)
		}
	}
}
