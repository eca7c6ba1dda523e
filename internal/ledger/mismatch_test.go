package ledger_test

import (
	"context"
	"testing"

	"go.uber.org/zap/zaptest"

	"treasuryd/internal/astra"
	"treasuryd/internal/journal"
	"treasuryd/internal/ledger"
	"treasuryd/internal/sim"
)

// TestReconcileHandsEveryMismatchToItsHandler: the daemon pauses through
// Deps.Mismatch; it gets the journaled intent and what the desk reports.
func TestReconcileHandsEveryMismatchToItsHandler(t *testing.T) {
	f := newFixture(t)
	f.withdraw(t, "0.1") // honest
	f.desk.SubstituteNextWithdrawals(1, sim.Substitution{Address: sim.SubstituteAddress})
	f.withdraw(t, "0.2")
	type call struct {
		w   journal.Withdrawal
		req astra.WithdrawalRequest
	}
	var calls []call
	rec := ledger.New(ledger.Deps{Log: zaptest.NewLogger(t), Desk: f.client, Journal: f.journal, Epoch: f.journal.Epoch,
		Mismatch: func(_ context.Context, w journal.Withdrawal, req astra.WithdrawalRequest) error {
			calls = append(calls, call{w, req})
			return nil
		}})
	rep, err := rec.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(rep)[ledger.WithdrawalMismatch]; got != 1 {
		t.Fatalf("%d withdrawal_mismatch breaks; want 1: %+v", got, rep.Breaks)
	}
	if len(calls) != 1 || !calls[0].w.Amount.Equal(dec("0.2")) || calls[0].req.Address != sim.SubstituteAddress ||
		calls[0].req.ID != calls[0].w.DeskID {
		t.Fatalf("handler calls %+v; want one for the substituted withdrawal", calls)
	}
}
