package replay

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/quotes"
	"treasuryd/internal/strategy"
)

var benchT0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// benchFrames are sell-btc frames (size 0.5) as in strategy's
// BenchmarkDecisionPath: a new id, price and signature each frame, prices
// around the limit and the reference.
func benchFrames(n int, start time.Time) [][]byte {
	frames := make([][]byte, n)
	seed := uint64(42)
	for i := range frames {
		seed = seed*6364136223846793005 + 1442695040888963407
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

func benchProgram() config.Program {
	return config.Program{Name: "sell-btc", Base: "BTC", Quote: "USD", Side: config.SideSell, Size: dec("0.5"),
		LimitPrice: dec("65000"), Reference: &config.Reference{Window: 5 * time.Minute, MinImprovementBps: dec("2")},
		Target: dec("1000000"), MaxDailyNotional: dec("1000000000"), Cooldown: 30 * time.Second,
		MinValidity: 500 * time.Millisecond, Reserve: dec("1")}
}

// BenchmarkDecisionPathWithRecorder is strategy's BenchmarkDecisionPath (one
// pass decode, validate, decide with a warm 300-quote reference window) plus
// the recorder callback, with the recorder's writer running against a real
// journal, or discarding its batches (allocs/op count the whole process, so
// the journal writer's own allocations show in the first): recording must
// not move the SPEC 8 figure (≤ 2 µs, ≤ 10 allocs).
func BenchmarkDecisionPathWithRecorder(b *testing.B) {
	b.Run("writer=journal", func(b *testing.B) { benchDecisionPathWithRecorder(b, openJournal(b)) })
	b.Run("writer=discard", func(b *testing.B) { benchDecisionPathWithRecorder(b, discardStore{}) })
}

// discardStore is a frame store that keeps nothing.
type discardStore struct{}

func (discardStore) RecordFrames(context.Context, []journal.Frame) error   { return nil }
func (discardStore) PruneFrames(context.Context, time.Time) (int64, error) { return 0, nil }
func (discardStore) Frames(context.Context, time.Time, string, func(journal.Frame) error) error {
	return nil
}

func benchDecisionPathWithRecorder(b *testing.B, store FrameStore) {
	cfg := benchProgram()
	req := quotes.RequestFor(testAccount, cfg)
	p := strategy.NewProgram(testAccount, cfg)
	frames := benchFrames(1024, benchT0)
	env := strategy.Env{GateOpen: true, Balance: dec("5"), BalanceKnown: true, InFlight: true}
	var q astra.Quote
	for i := 0; i < 300; i++ {
		if err := astra.DecodeQuoteFrame(frames[i%len(frames)], &q); err != nil {
			b.Fatal(err)
		}
		p.Decide(&q, nil, env, benchT0.Add(time.Duration(i)*time.Second))
	}
	m := metrics.New("bench")
	rec := NewRecorder(RecorderOptions{Store: store, Retention: 24 * time.Hour, Dropped: m.RecorderDropped})
	if err := rec.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer stopRecorder(b, rec)
	invalid := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := benchT0.Add(time.Duration(300+i) * time.Second)
		frame := frames[i%len(frames)]
		err := astra.DecodeQuoteFrame(frame, &q)
		if err == nil {
			err = quotes.Validate(&req, &q, now)
		}
		d := p.Decide(&q, err, env, now)
		if d.Outcome == strategy.OutcomeInvalid {
			invalid++
		}
		rec.Record(cfg.Name, frame, now, env, d.Outcome)
	}
	b.StopTimer()
	if invalid > 0 {
		b.Fatalf("%d invalid decisions: the bench frames must be valid", invalid)
	}
}

// BenchmarkReplay1M replays 1,000,000 recorded frames (one program, a quote
// every 100ms: 28 hours, so the 24h cap window turns over) from a journal
// file. Target: under 10 s.
func BenchmarkReplay1M(b *testing.B) {
	const n = 1_000_000
	j := openJournal(b)
	cfg := benchProgram()
	cfg.Cooldown = 5 * time.Second
	cfg.MaxDailyNotional = dec("5000000")
	start := time.Now().Add(-30 * time.Hour)
	seed := uint64(42)
	batch := make([]journal.Frame, 0, 20000)
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * 100 * time.Millisecond)
		seed = seed*6364136223846793005 + 1442695040888963407
		usd := decimal.New(int64(320000000+seed>>33%20000000), -4)
		raw := fmt.Appendf(nil, `{"quote":{"quoteId":"a0743434-66c8-49b7-aca2-%012x","accountId":%q,"fromAsset":"USD",`+
			`"toAsset":"BTC","fromAssetQuantity":%s,"toAssetQuantity":0.5,"expiryTime":%d,`+
			`"signature":"%016x6932874cf486617239c7d27100e911903ccbee05c8b07fe3f4299e047f"}}`,
			i, testAccount, usd, at.Add(5*time.Second).UnixMicro(), seed)
		batch = append(batch, journal.Frame{Program: cfg.Name, ReceivedAt: at, Raw: raw, GateOpen: true,
			Balance: dec("5"), BalanceKnown: true, Paused: i%5000 < 50, Outcome: strategy.OutcomeLimitPrice})
		if len(batch) == cap(batch) {
			if err := j.RecordFrames(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := j.RecordFrames(context.Background(), batch); err != nil {
		b.Fatal(err)
	}
	pol := &config.Policy{AccountID: testAccount, Programs: []config.Program{cfg}}
	b.ReportAllocs()
	b.ResetTimer()
	var rep *Report
	for i := 0; i < b.N; i++ {
		var err error
		if rep, err = Run(context.Background(), j, pol, Options{}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if rep.Frames != n || rep.Programs[0].Quotes != n {
		b.Fatalf("replayed %d frames, want %d", rep.Frames, n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/frame")
	b.Logf("outcomes %v, accepts %d", rep.Programs[0].Outcomes, rep.Programs[0].Accepts)
}
