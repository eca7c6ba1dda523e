package strategy

import (
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/quotes"
)

// benchFrames are quote frames of a sell-btc stream (size 0.5, so the desk
// quotes USD for 0.5 BTC) as the simulator and the reference doc write them:
// a new id, price and signature each frame, and as many decimals in the
// price as it happens to have.
func benchFrames(n int, start time.Time) [][]byte {
	frames := make([][]byte, n)
	seed := uint64(42)
	for i := range frames {
		seed = seed*6364136223846793005 + 1442695040888963407
		// 32,000.0000 .. 33,999.9999 USD for 0.5 BTC: around the limit and
		// the reference, so the outcomes vary as they do live.
		usd := decimal.New(int64(320000000+seed>>33%20000000), -4)
		frames[i] = fmt.Appendf(nil, `{
"quote": {
"quoteId": "a0743434-66c8-49b7-aca2-%012x",
"accountId": %q,
"fromAsset": "USD",
"toAsset": "BTC",
"fromAssetQuantity": %s,
"toAssetQuantity": 0.5,
"expiryTime": %d,
"signature": "%016x6932874cf486617239c7d27100e911903ccbee05c8b07fe3f4299e047f"
}
}`, i, testAccount, usd, start.Add(10000*time.Hour).UnixMicro(), seed)
	}
	return frames
}

// BenchmarkDecisionPath is the SPEC 8 decision path: decode a frame (one
// pass), validate it against the request, and decide with a reference window
// of 300 quotes (5m at 1 quote/s), target, daily cap, cooldown and reserve
// all set. Target: ≤ 2 µs and ≤ 10 allocs per quote.
func BenchmarkDecisionPath(b *testing.B) {
	cfg := sellProgram()
	cfg.Target = dec("1000000")
	cfg.MaxDailyNotional = dec("1000000000")
	cfg.LimitPrice = dec("65000")
	req := quotes.RequestFor(testAccount, cfg)
	p := NewProgram(testAccount, cfg)
	p.Commit(sized(cfg, "65000", time.Hour), t0.Add(-time.Hour))
	frames := benchFrames(1024, t0)
	env := Env{GateOpen: true, Balance: dec("5"), BalanceKnown: true, InFlight: true}
	// Warm the window: a quote per second for the 5m window.
	var q astra.Quote
	for i := 0; i < 300; i++ {
		if err := astra.DecodeQuoteFrame(frames[i%len(frames)], &q); err != nil {
			b.Fatal(err)
		}
		p.Decide(&q, nil, env, t0.Add(time.Duration(i)*time.Second))
	}
	counts := map[string]int{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := t0.Add(time.Duration(300+i) * time.Second)
		err := astra.DecodeQuoteFrame(frames[i%len(frames)], &q)
		if err == nil {
			err = quotes.Validate(&req, &q, now)
		}
		d := p.Decide(&q, err, env, now)
		counts[d.Outcome]++
	}
	b.StopTimer()
	for _, o := range Outcomes {
		if counts[o] > 0 {
			b.ReportMetric(float64(counts[o])/float64(b.N), o+"/op")
		}
	}
	if counts[OutcomeInvalid] > 0 {
		b.Fatalf("%d invalid decisions: the bench frames must be valid", counts[OutcomeInvalid])
	}
}

// BenchmarkDecide is Decide alone, over already decoded quotes.
func BenchmarkDecide(b *testing.B) {
	cfg := sellProgram()
	cfg.Target = dec("1000000")
	cfg.MaxDailyNotional = dec("1000000000")
	cfg.LimitPrice = dec("65000")
	p := NewProgram(testAccount, cfg)
	frames := benchFrames(1024, t0)
	qs := make([]astra.Quote, len(frames))
	for i := range frames {
		if err := astra.DecodeQuoteFrame(frames[i], &qs[i]); err != nil {
			b.Fatal(err)
		}
	}
	env := Env{GateOpen: true, Balance: dec("5"), BalanceKnown: true, InFlight: true}
	for i := 0; i < 300; i++ {
		p.Decide(&qs[i%len(qs)], nil, env, t0.Add(time.Duration(i)*time.Second))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.Decide(&qs[i%len(qs)], nil, env, t0.Add(time.Duration(300+i)*time.Second))
	}
}

var _ = config.SideSell
