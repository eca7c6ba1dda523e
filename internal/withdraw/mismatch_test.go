package withdraw

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/journal"
	"treasuryd/internal/operator"
	"treasuryd/internal/sim"
)

// switchFor is the real kill switch over the env's journal, as the daemon
// wires it: the rebalancer's Pauser and Halter.
func (e *env) switchFor() *operator.Switch {
	e.t.Helper()
	sw := operator.NewSwitch(e.journal, e.m)
	if err := sw.Load(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return sw
}

func (e *env) startWith(sw *operator.Switch) *Rebalancer {
	e.t.Helper()
	d := e.deps()
	d.Pause, d.Halt = sw, sw
	r := New(d)
	if err := r.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { r.Stop(context.Background()) })
	return r
}

// TestSubstitutedWithdrawalPausesTreasuryd: the desk books one of our
// withdrawals with another address, or another amount (SPEC 5.3, 7.14).
// Following its status finds the difference: treasuryd pauses itself with
// the reason persisted, sends nothing more (the desk's ground truth), stays
// paused across a restart, and only an operator's resume lets the rule run
// again — without the same sighting pausing it again.
func TestSubstitutedWithdrawalPausesTreasuryd(t *testing.T) {
	for _, tc := range []struct {
		name string
		sub  sim.Substitution
	}{
		{"address", sim.Substitution{Address: sim.SubstituteAddress}},
		{"amount", sim.Substitution{Amount: dec("1.5")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, map[string]string{"BTC": "10"})
			ctx := context.Background()
			e.desk.SubstituteNextWithdrawals(1, tc.sub)
			sw := e.switchFor()
			r := e.startWith(sw)
			e.run(r) // the POST: answered with an id, booked otherwise
			if n := len(e.desk.Withdrawals()); n != 1 || sw.Paused() {
				t.Fatalf("after the first run: %d desk withdrawals, paused %v; want 1, not paused", n, sw.Paused())
			}
			e.clk.Advance(time.Second)
			err := r.RunOnce(ctx) // follows it: the desk reports the substitution
			if !errors.Is(err, ErrMismatch) {
				t.Fatalf("run after the substitution: %v; want ErrMismatch", err)
			}
			if !sw.Paused() || sw.Reason() != ReasonMismatch {
				t.Fatalf("paused %v, reason %q; want paused for %s", sw.Paused(), sw.Reason(), ReasonMismatch)
			}
			if reason, err := e.journal.PauseReason(ctx); err != nil || reason != ReasonMismatch {
				t.Fatalf("persisted reason %q (%v)", reason, err)
			}
			if got := e.counted(ReasonMismatch); got != 1 {
				t.Fatalf("withdrawals_total{status=withdrawal_mismatch} = %v; want 1", got)
			}
			// Nothing else is sent while paused, however often it runs.
			for range 3 {
				e.clk.Advance(5 * time.Minute)
				r.RunOnce(ctx)
			}
			if n := len(e.desk.Withdrawals()); n != 1 {
				t.Fatalf("desk holds %d withdrawals after the mismatch; want still 1", n)
			}

			// Restart: still paused, for the same reason.
			if err := r.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			e.journal.Close()
			e.openJournal()
			sw = e.switchFor()
			if !sw.Paused() || sw.Reason() != ReasonMismatch {
				t.Fatalf("after a restart: paused %v, reason %q", sw.Paused(), sw.Reason())
			}
			r = e.startWith(sw)
			e.run(r)
			if n := len(e.desk.Withdrawals()); n != 1 {
				t.Fatalf("desk holds %d withdrawals after the restart; want still 1", n)
			}

			// An operator resumes: the recorded mismatch does not pause again;
			// the rule sweeps on, to the right address this time.
			if err := sw.Set(ctx, false, "test"); err != nil {
				t.Fatal(err)
			}
			e.clk.Advance(time.Minute)
			e.run(r)
			if sw.Paused() {
				t.Fatal("paused again by the mismatch already handled")
			}
			ws := e.desk.Withdrawals()
			if len(ws) != 2 || ws[1].Address != coldBTC {
				t.Fatalf("desk withdrawals after the resume: %+v; want a second one to %s", ws, coldBTC)
			}
		})
	}
}

func TestResolvingToADeskRequestWithOtherDetailsPauses(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	ctx := context.Background()
	id := e.unresolvedIntent(dec("1"))
	deskID, err := e.client.CreateWithdrawal(ctx, astra.NewWithdrawal{InstrumentSymbol: "BTC", Amount: dec("1"),
		Network: "bitcoin", Address: sim.SubstituteAddress})
	if err != nil {
		t.Fatal(err)
	}
	sw := e.switchFor()
	r := e.startWith(sw)
	err = r.Resolve(ctx, id, deskID, "test")
	if !errors.Is(err, ErrMismatch) || !sw.Paused() || sw.Reason() != ReasonMismatch {
		t.Fatalf("resolve to a request with another address: %v, paused %v (%q); want ErrMismatch and paused", err, sw.Paused(), sw.Reason())
	}
	if w, _ := e.journal.WithdrawalByID(ctx, id); w.State != journal.WithdrawalUnresolved {
		t.Fatalf("withdrawal is %s after a refused resolution; want unresolved", w.State)
	}
	// After a resume the same answer is still refused, without a new pause.
	if err := sw.Set(ctx, false, "test"); err != nil {
		t.Fatal(err)
	}
	if err := r.Resolve(ctx, id, deskID, "test"); !errors.Is(err, ErrMismatch) || sw.Paused() {
		t.Fatalf("the same resolution after a resume: %v, paused %v; want ErrMismatch, not paused", err, sw.Paused())
	}
	if w, _ := e.journal.WithdrawalByID(ctx, id); w.State != journal.WithdrawalUnresolved {
		t.Fatalf("withdrawal is %s; want still unresolved", w.State)
	}
}

// unresolvedIntent journals an intent of the rule, now, and marks it
// unresolved, as a lost POST ends after the match grace.
func (e *env) unresolvedIntent(amount decimal.Decimal) int64 {
	e.t.Helper()
	ctx := context.Background()
	id, err := e.journal.InsertWithdrawalIntent(ctx, journal.Withdrawal{Rule: ruleName, Asset: "BTC",
		Network: "bitcoin", Address: coldBTC, Amount: amount, CreatedAt: e.clk.Now()})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.journal.UpdateWithdrawal(ctx, id, journal.WithdrawalUnresolved, "", "", "no match"); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// TestNeverExecutedIsRefusedWhileTheDeskListsAMatch: an operator's
// never_executed answer is checked against the desk's list first.
func TestNeverExecutedIsRefusedWhileTheDeskListsAMatch(t *testing.T) {
	create := func(e *env, amount, address string) string {
		id, err := e.client.CreateWithdrawal(context.Background(), astra.NewWithdrawal{InstrumentSymbol: "BTC",
			Amount: dec(amount), Network: "bitcoin", Address: address})
		if err != nil {
			e.t.Fatal(err)
		}
		return id
	}
	tests := []struct {
		name    string
		setup   func(e *env) int64 // returns the unresolved withdrawal's id
		refused bool
	}{
		{"no request at the desk", func(e *env) int64 { return e.unresolvedIntent(dec("1")) }, false},
		{"a matching request after the intent", func(e *env) int64 {
			id := e.unresolvedIntent(dec("1"))
			e.clk.Advance(time.Second)
			create(e, "1", coldBTC)
			return id
		}, true},
		{"a matching request long before the intent", func(e *env) int64 {
			create(e, "1", coldBTC)
			e.clk.Advance(time.Hour)
			return e.unresolvedIntent(dec("1"))
		}, false},
		{"a request of another amount", func(e *env) int64 {
			id := e.unresolvedIntent(dec("1"))
			create(e, "0.5", coldBTC)
			return id
		}, false},
		{"a matching request another withdrawal holds", func(e *env) int64 {
			id := e.unresolvedIntent(dec("1"))
			deskID := create(e, "1", coldBTC)
			other, err := e.journal.InsertWithdrawalIntent(context.Background(), journal.Withdrawal{Rule: ruleName,
				Asset: "BTC", Network: "bitcoin", Address: coldBTC, Amount: dec("1"), CreatedAt: e.clk.Now()})
			if err != nil {
				e.t.Fatal(err)
			}
			if err := e.journal.UpdateWithdrawal(context.Background(), other, journal.WithdrawalSubmitted, deskID, "", ""); err != nil {
				e.t.Fatal(err)
			}
			return id
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, map[string]string{"BTC": "10"})
			ctx := context.Background()
			id := tt.setup(e)
			r := e.startWith(e.switchFor())
			err := r.Resolve(ctx, id, "", "test")
			w, _ := e.journal.WithdrawalByID(ctx, id)
			if tt.refused {
				if !errors.Is(err, ErrMayHaveExecuted) || w.State != journal.WithdrawalUnresolved {
					t.Fatalf("never_executed: %v, withdrawal %s; want ErrMayHaveExecuted and still unresolved", err, w.State)
				}
				return
			}
			if err != nil || w.State != journal.WithdrawalFailed {
				t.Fatalf("never_executed: %v, withdrawal %s; want accepted (failed)", err, w.State)
			}
		})
	}
}

func TestDifferences(t *testing.T) {
	w := journal.Withdrawal{Asset: "BTC", Amount: dec("1.0"), Network: "bitcoin", Address: coldBTC}
	same := astra.WithdrawalRequest{Symbol: "BTC", Amount: dec("1"), Network: "bitcoin", Address: coldBTC}
	tests := []struct {
		name string
		edit func(*astra.WithdrawalRequest)
		want int
	}{
		{"same (1 equals 1.0)", func(*astra.WithdrawalRequest) {}, 0},
		{"symbol", func(r *astra.WithdrawalRequest) { r.Symbol = "ETH" }, 1},
		{"amount", func(r *astra.WithdrawalRequest) { r.Amount = dec("1.00000001") }, 1},
		{"network", func(r *astra.WithdrawalRequest) { r.Network = "lightning" }, 1},
		{"address", func(r *astra.WithdrawalRequest) { r.Address = sim.SubstituteAddress }, 1},
		{"address case", func(r *astra.WithdrawalRequest) { r.Address = "BC1QXY2KGDYGJRSQTZQ2N0YRF2493P83KKFJHX0WLH" }, 1},
		{"all", func(r *astra.WithdrawalRequest) {
			*r = astra.WithdrawalRequest{Symbol: "ETH", Amount: dec("2"), Network: "ethereum", Address: "0xabc"}
		}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := same
			tt.edit(&req)
			if got := Differences(w, req); len(got) != tt.want {
				t.Fatalf("Differences = %v; want %d", got, tt.want)
			}
		})
	}
}

// TestResumedMismatchStillOpenIsFollowedQuietly: after an operator resumed,
// a substituted withdrawal still in flight is followed to its end without
// pausing again or failing every run, and keeps its rule waiting.
func TestResumedMismatchStillOpenIsFollowedQuietly(t *testing.T) {
	e := newEnv(t, map[string]string{"BTC": "10"})
	ctx := context.Background()
	e.desk.SubstituteNextWithdrawals(1, sim.Substitution{})
	sw := e.switchFor()
	r := e.startWith(sw)
	e.run(r)
	e.clk.Advance(time.Second)
	if err := r.RunOnce(ctx); !errors.Is(err, ErrMismatch) || !sw.Paused() {
		t.Fatalf("first sighting: %v, paused %v", err, sw.Paused())
	}
	if err := sw.Set(ctx, false, "test"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		e.clk.Advance(10 * time.Second) // still short of the desk's one-minute step
		if err := r.RunOnce(ctx); err != nil {
			t.Fatalf("run after the resume: %v", err)
		}
	}
	if sw.Paused() {
		t.Fatal("paused again by the mismatch an operator already saw")
	}
	if n := len(e.desk.Withdrawals()); n != 1 {
		t.Fatalf("desk holds %d withdrawals; want 1: the rule waits for the open one", n)
	}
	// The substituted request belongs to its withdrawal: no other can take it.
	id := e.unresolvedIntent(dec("1"))
	if err := r.Resolve(ctx, id, e.desk.Withdrawals()[0].ID, "test"); err == nil {
		t.Fatal("resolved to a request another withdrawal holds")
	}
}
