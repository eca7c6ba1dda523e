// Package balances keeps the balance book: the account's balances as last
// polled from the desk, less holds for what accepts and withdrawals have
// taken (or may have) since. Trading reads it for the reserve check and
// withdrawals tell it what they send; both through the small interfaces they
// declare. It promises that the balance it reports is never more than the
// account can have: bought amounts wait for a poll that shows them, sold
// and withdrawn ones count as gone from the moment they are decided.
package balances

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/lifecycle"
	"treasuryd/internal/metrics"
)

// DefaultEvery is how often balances are polled when Options does not say.
const DefaultEvery = 5 * time.Second

// Desk is what the book needs of *astra.Client.
type Desk interface {
	Balances(ctx context.Context) ([]astra.Balance, error)
}

// Options are the book's dependencies.
type Options struct {
	Log     *zap.Logger
	Metrics *metrics.Metrics
	Desk    Desk
	Now     func() time.Time
	Every   time.Duration // default DefaultEvery
}

// Hold is a hold's handle: what Settle and Drop take.
type Hold uint64

// Book is the polled balance per asset, less holds: the amounts sold by
// accepts in flight, withdrawals sent, and both settled after the poll
// that is installed started (the poll may not show them yet).
type Book struct {
	o     Options
	log   *zap.Logger
	gauge *prometheus.GaugeVec
	run   *lifecycle.Group
	ready atomic.Bool
	first chan struct{} // closed after the first successful fetch

	mu     sync.RWMutex
	known  bool
	polled map[string]decimal.Decimal
	eff    map[string]decimal.Decimal // polled − holds
	holds  map[Hold]*hold
	seq    Hold
}

type hold struct {
	asset   string
	qty     decimal.Decimal
	settled time.Time // zero while in flight
}

// New builds a book. It does no I/O.
func New(o Options) *Book {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New("")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Every <= 0 {
		o.Every = DefaultEvery
	}
	return &Book{
		o: o, log: o.Log, gauge: o.Metrics.Balance, run: lifecycle.New("balances"),
		first:  make(chan struct{}),
		polled: map[string]decimal.Decimal{}, eff: map[string]decimal.Decimal{}, holds: map[Hold]*hold{},
	}
}

// Start starts polling: now and every Options.Every. It returns at once.
func (b *Book) Start(context.Context) error {
	if b.o.Desk == nil {
		return errors.New("balances: the book needs a desk")
	}
	if err := b.run.Start(); err != nil {
		return err
	}
	b.run.Go(b.poll)
	return nil
}

// Stop ends the polling. Safe to call twice.
func (b *Book) Stop(ctx context.Context) error { return b.run.Stop(ctx) }

// Ready reports whether the first balance fetch has succeeded.
func (b *Book) Ready() bool { return b.ready.Load() }

// First is closed once the first balance fetch has succeeded.
func (b *Book) First() <-chan struct{} { return b.first }

// Balance is the last polled balance of asset less the holds. ok is false
// before the first successful poll; an asset the desk does not list is a
// known zero.
func (b *Book) Balance(asset string) (decimal.Decimal, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.known {
		return decimal.Zero, false
	}
	return b.eff[asset], true
}

// Hold counts qty of asset as gone from now on: an accept about to sell it.
func (b *Book) Hold(asset string, qty decimal.Decimal) Hold {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	b.holds[b.seq] = &hold{asset: asset, qty: qty}
	// Incremental, not recompute(): the accept path takes a hold per
	// accept, and holds settled since the last poll can number thousands.
	b.eff[asset] = b.eff[asset].Sub(qty)
	return b.seq
}

// Settle marks a hold as executed (or maybe executed) at `at`; it stays
// until a poll that started after `at` shows the debit.
func (b *Book) Settle(id Hold, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h := b.holds[id]; h != nil {
		h.settled = at
	}
}

// Drop removes the hold of something that did not execute.
func (b *Book) Drop(id Hold) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h := b.holds[id]; h != nil {
		delete(b.holds, id)
		b.eff[h.asset] = b.eff[h.asset].Add(h.qty)
	}
}

// Withdrawing tells the book that qty of asset is about to leave the
// account by a withdrawal request. The balance counts it as gone from now
// on; the returned func, called when the POST has returned (whatever its
// outcome), starts the wait for a balance poll that began after that moment
// and so shows the debit. Sells decided meanwhile cannot take the balance
// below reserve on a stale figure.
func (b *Book) Withdrawing(asset string, qty decimal.Decimal) (sent func()) {
	id := b.Hold(asset, qty)
	return func() { b.Settle(id, b.o.Now()) }
}

// BySymbol adds up the balances of each symbol: an asset may be held on
// several networks. Entries without a symbol (tokens named by network and
// contract) belong to no asset a policy names.
func BySymbol(bs []astra.Balance) map[string]decimal.Decimal {
	m := make(map[string]decimal.Decimal, len(bs))
	for _, x := range bs {
		if x.Symbol == "" {
			continue
		}
		m[x.Symbol] = m[x.Symbol].Add(x.Amount)
	}
	return m
}

// poll fetches the balances now and every Every until ctx ends.
func (b *Book) poll(ctx context.Context) {
	t := time.NewTicker(b.o.Every)
	defer t.Stop()
	failures := 0
	for {
		start := b.o.Now()
		bs, err := b.o.Desk.Balances(ctx)
		switch {
		case err == nil:
			b.install(bs, start)
			if !b.ready.Swap(true) {
				b.log.Info("first balance fetch done", zap.Int("assets", len(bs)))
				close(b.first)
			}
			failures = 0
		case ctx.Err() != nil:
			return
		default:
			failures++
			// A failure now and then is normal; say so once per streak and
			// then every 12th (once a minute at the default period).
			if failures == 1 || failures%12 == 0 {
				b.log.Warn("balance fetch failed", zap.Int("consecutive", failures), zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// install installs a poll that started at start.
func (b *Book) install(bs []astra.Balance, start time.Time) {
	m := BySymbol(bs)
	for asset, amt := range m {
		b.gauge.WithLabelValues(asset).Set(metrics.Value(amt))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.known, b.polled = true, m
	for id, h := range b.holds {
		if !h.settled.IsZero() && h.settled.Before(start) {
			delete(b.holds, id)
		}
	}
	b.recompute()
}

// recompute rebuilds eff from the poll and every hold; Hold and Drop keep it
// up to date between polls.
func (b *Book) recompute() {
	eff := make(map[string]decimal.Decimal, len(b.polled))
	for a, v := range b.polled {
		eff[a] = v
	}
	for _, h := range b.holds {
		eff[h.asset] = eff[h.asset].Sub(h.qty)
	}
	b.eff = eff
}
