package balances

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/metrics"
	"treasuryd/internal/sim"
)

const (
	testAccount = "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"
	testAPIKey  = "test-api-key"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// startBook runs a book polling a simulated desk on loopback every 50ms.
func startBook(t *testing.T) (*Book, *metrics.Metrics) {
	t.Helper()
	desk, err := sim.NewDesk(sim.DeskConfig{AccountID: testAccount, APIKey: testAPIKey, Seed: 1,
		Balances: map[string]decimal.Decimal{"BTC": dec("20"), "USD": dec("2000000")},
		Prices:   map[string]decimal.Decimal{"BTC-USD": dec("65000")}})
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
	m := metrics.New("test")
	b := New(Options{Metrics: m, Desk: client, Every: 50 * time.Millisecond})
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Stop(context.Background()); err != nil {
			t.Error(err)
		}
		if err := b.Stop(context.Background()); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
	return b, m
}

func waitReady(t *testing.T, b *Book) {
	t.Helper()
	select {
	case <-b.First():
	case <-time.After(5 * time.Second):
		t.Fatal("no first balance fetch after 5s")
	}
	if !b.Ready() {
		t.Fatal("First closed but not Ready")
	}
}

func TestReadyAfterTheFirstBalanceFetch(t *testing.T) {
	b, m := startBook(t)
	waitReady(t, b)
	if got, ok := b.Balance("BTC"); !ok || !got.Equal(dec("20")) {
		t.Errorf("balance BTC = %s, %v; want 20", got, ok)
	}
	if got, ok := b.Balance("ETH"); !ok || !got.IsZero() {
		t.Errorf("balance ETH (not listed) = %s, %v; want a known 0", got, ok)
	}
	if got := testutil.ToFloat64(m.Balance.WithLabelValues("USD")); got != 2000000 {
		t.Errorf("treasuryd_balance{USD} = %v", got)
	}
}

func TestBalanceUnknownBeforeTheFirstFetch(t *testing.T) {
	b := New(Options{})
	if _, ok := b.Balance("BTC"); ok || b.Ready() {
		t.Fatal("a book that never polled reports a balance")
	}
}

// TestWithdrawalCountsAgainstTheBalanceAtOnce: a withdrawal sent between two
// balance polls lowers the balance the reserve check sees immediately, and
// the next poll that started after it takes over.
func TestWithdrawalCountsAgainstTheBalanceAtOnce(t *testing.T) {
	b, _ := startBook(t)
	waitReady(t, b)
	sent := b.Withdrawing("BTC", dec("7.5"))
	if got, ok := b.Balance("BTC"); !ok || !got.Equal(dec("12.5")) {
		t.Fatalf("balance BTC right after a 7.5 withdrawal = %s, %v; want 12.5", got, ok)
	}
	sent()
	if got, ok := b.Balance("BTC"); !ok || !got.Equal(dec("12.5")) {
		t.Fatalf("balance BTC once the POST returned = %s, %v; want 12.5 until a later poll", got, ok)
	}
}

func TestBySymbolSumsNetworks(t *testing.T) {
	got := BySymbol([]astra.Balance{{Symbol: "USDC", Amount: dec("1.5")}, {Symbol: "USDC", Amount: dec("2")},
		{Symbol: "", Amount: dec("9")}, {Symbol: "BTC", Amount: dec("0.1")}})
	if len(got) != 2 || !got["USDC"].Equal(dec("3.5")) || !got["BTC"].Equal(dec("0.1")) {
		t.Fatalf("BySymbol = %v", got)
	}
}

// TestHoldAndDropMatchRecompute proves the incremental bookkeeping of Hold
// and Drop (which keeps the accept path O(1) however many settled holds wait
// for the next poll) always equals a full recompute from the poll and the
// holds.
func TestHoldAndDropMatchRecompute(t *testing.T) {
	b := New(Options{})
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b.install([]astra.Balance{{Symbol: "BTC", Amount: dec("5")}, {Symbol: "USD", Amount: dec("250000.5")}}, at)
	assets := []string{"BTC", "USD", "ETH"} // ETH: not in the poll, a known zero
	var ids []Hold
	seed := uint64(7)
	next := func(n uint64) uint64 { seed = seed*6364136223846793005 + 1442695040888963407; return seed >> 33 % n }
	for i := 0; i < 2000; i++ {
		at = at.Add(time.Millisecond)
		switch op := next(10); {
		case op < 5 || len(ids) == 0:
			qty := decimal.New(int64(next(100000)+1), -int32(next(9)))
			ids = append(ids, b.Hold(assets[next(3)], qty))
		case op < 7:
			k := next(uint64(len(ids)))
			b.Drop(ids[k])
			b.Drop(ids[k]) // twice: the second must change nothing
			ids = append(ids[:k], ids[k+1:]...)
		case op < 9:
			b.Settle(ids[next(uint64(len(ids)))], at)
		default:
			b.install([]astra.Balance{{Symbol: "BTC", Amount: dec("4.5")}, {Symbol: "USD", Amount: dec("250000.5")}}, at.Add(-5*time.Millisecond))
		}
		b.mu.Lock()
		got := maps.Clone(b.eff)
		b.recompute()
		want := b.eff
		b.mu.Unlock()
		for _, a := range assets {
			if !got[a].Equal(want[a]) {
				t.Fatalf("step %d: %s is %s incrementally, %s recomputed", i, a, got[a], want[a])
			}
		}
	}
}
