package astra_test

import (
	"context"
	"testing"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/sim"
)

// TestClientAgainstTheDeskSimulator runs the client against internal/sim's
// desk: balances, the streamed history and a withdrawal round trip agree
// with the simulator's own ground truth.
func TestClientAgainstTheDeskSimulator(t *testing.T) {
	const account = "0f8fad5b-d9cb-469f-a165-70867728950e"
	d, err := sim.NewDesk(sim.DeskConfig{
		AccountID: account, APIKey: testKey, Seed: 1,
		Balances: map[string]decimal.Decimal{"BTC": dec("2.5"), "USD": dec("1000.10")},
		Prices:   map[string]decimal.Decimal{"BTC-USD": dec("65000")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	c, err := astra.New(astra.Options{BaseURL: d.BaseURL(), WSURL: d.WSURL(), APIKey: testKey, AccountID: account})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	bals, err := c.Balances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bals {
		if !b.Amount.Equal(d.Balance(b.Symbol)) {
			t.Errorf("%s: client %s, simulator %s", b.Symbol, b.Amount, d.Balance(b.Symbol))
		}
	}
	if len(bals) < 2 {
		t.Errorf("%d balances, want BTC and USD", len(bals))
	}

	n := 0
	if err := c.Transactions(ctx, func(astra.Transaction) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n == 0 || int64(n) != d.TransactionCount() {
		t.Errorf("streamed %d transactions, simulator holds %d", n, d.TransactionCount())
	}

	id, err := c.CreateWithdrawal(ctx, astra.NewWithdrawal{InstrumentSymbol: "BTC", Amount: dec("0.1"), Network: "bitcoin", Address: "bc1qsimtest"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	if err := c.WithdrawalRequests(ctx, func(w astra.WithdrawalRequest) error {
		found = found || (w.ID == id && w.Amount.Equal(dec("0.1")) && w.Address == "bc1qsimtest")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Errorf("withdrawal %s not listed by the simulator", id)
	}
}
