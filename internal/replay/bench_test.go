package replay

import (
	"context"
	"testing"
	"time"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/quotes"
	"treasuryd/internal/sim"
	"treasuryd/internal/strategy"
)

var benchT0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

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
	// Sell-btc frames as in strategy's BenchmarkDecisionPath: a new id,
	// price and signature each frame, prices around the limit and the
	// reference; each is given 5s of validity as it is used.
	g := sim.NewSellFrames(testAccount)
	frames := make([]sim.QuoteFrame, 1024)
	for i := range frames {
		frames[i] = g.Next(benchT0)
	}
	var qd astra.QuoteDecoder
	decode := func(f sim.QuoteFrame, now time.Time, q *astra.Quote) error {
		if !f.SetExpiry(now.Add(5 * time.Second)) {
			b.Fatalf("cannot stamp expiry %v", now)
		}
		return qd.Decode(f.Bytes, q)
	}
	env := strategy.Env{GateOpen: true, Balance: dec("5"), BalanceKnown: true, InFlight: true}
	var q astra.Quote
	for i := 0; i < 300; i++ {
		now := benchT0.Add(time.Duration(i) * time.Second)
		if err := decode(frames[i%len(frames)], now, &q); err != nil {
			b.Fatal(err)
		}
		p.Decide(&q, nil, env, now)
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
		err := decode(frame, now, &q)
		if err == nil {
			err = quotes.Validate(&req, &q, now)
		}
		d := p.Decide(&q, err, env, now)
		if d.Outcome == strategy.OutcomeInvalid {
			invalid++
		}
		rec.Record(cfg.Name, frame.Bytes, now, env, d.Outcome)
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
	g := sim.NewSellFrames(testAccount)
	batch := make([]journal.Frame, 0, 20000)
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(i) * 100 * time.Millisecond)
		raw := g.Next(at.Add(5 * time.Second)).Bytes
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
