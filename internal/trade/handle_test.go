package trade

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/balances"
	"treasuryd/internal/config"
	"treasuryd/internal/quotes"
	"treasuryd/internal/sim"
	"treasuryd/internal/strategy"
)

// fixedBook is a balance book that always knows the same balance.
type fixedBook struct{ bal decimal.Decimal }

func (b fixedBook) Balance(string) (decimal.Decimal, bool)   { return b.bal, true }
func (fixedBook) Hold(string, decimal.Decimal) balances.Hold { return 0 }
func (fixedBook) Settle(balances.Hold, time.Time)            {}
func (fixedBook) Drop(balances.Hold)                         {}
func (fixedBook) First() <-chan struct{}                     { return nil }

// TestDecidingAQuoteDoesNotAllocate: the accept path adds nothing per quote
// to the decision — no allocation in handling a decided frame (metrics,
// status, the outside state) beyond what decoding it costs.
func TestDecidingAQuoteDoesNotAllocate(t *testing.T) {
	cfg := liveSell("sell-btc")
	cfg.LimitPrice = dec("1000000") // every quote is refused for its price
	cfg.Reference = &config.Reference{Window: 5 * time.Minute, MinImprovementBps: dec("2")}
	e := New(Deps{Book: fixedBook{dec("20")}, Policy: policy(cfg)})
	p := e.buildProgram(testAccount, cfg)
	e.install(p, nil)

	now := time.Now()
	g := sim.NewSellFrames(testAccount)
	frames := make([]sim.QuoteFrame, 64)
	for i := range frames {
		frames[i] = g.Next(now.Add(time.Minute))
	}
	var q astra.Quote
	var qd astra.QuoteDecoder // the stream's
	ev := &quotes.Event{Program: cfg.Name, Quote: &q}
	i := 0
	decide := func() {
		ev.Frame = frames[i%len(frames)].Bytes
		i++
		if err := qd.Decode(ev.Frame, &q); err != nil {
			t.Fatal(err)
		}
		ev.ReceivedAt = time.Now()
		e.handle(p, ev)
	}
	for range 300 { // fill the reference window and the metric series
		decide()
	}
	decodeOnly := testing.AllocsPerRun(200, func() {
		if err := qd.Decode(frames[i%len(frames)].Bytes, &q); err != nil {
			t.Fatal(err)
		}
		i++
	})
	got := testing.AllocsPerRun(200, decide)
	t.Logf("allocations per quote: %v handled, %v decoding alone", got, decodeOnly)
	if got > decodeOnly {
		t.Fatalf("handling a decided quote allocates %v times, decoding it alone %v", got, decodeOnly)
	}
	if n := decisions(e.m, cfg.Name, strategy.OutcomeLimitPrice); n < 300 {
		t.Fatalf("%v limit_price decisions, want every quote", n)
	}
}
