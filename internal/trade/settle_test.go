package trade

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/strategy"
)

// TestSettledUnknownAcceptIsAppliedWhileRunning: caps and targets count an
// unknown accept as executed until it is settled (SPEC 5.2), and no longer:
// the running runner applies the reconciliation's settlement from the
// journal. Missing frees what it counted in the target or the daily cap, so
// the program trades again; ok counts it in the executed base and the
// average price. Whether the unknown accept was made by this runner (its
// daily entry carries the decision's instant) or restored from the journal
// by a restart (SentAt), the right entry is freed.
func TestSettledUnknownAcceptIsAppliedWhileRunning(t *testing.T) {
	cases := []struct {
		name    string
		result  string
		restart bool // settle after a restart: the unknown accept is restored from the journal
		limit   func(*config.Program)
		freed   string // the outcome that holds the program until the settlement frees it
	}{
		{"missing frees the target", journal.AcceptMissing, false,
			func(p *config.Program) { p.Target = dec("1") }, strategy.OutcomeTargetReached},
		{"missing frees the daily cap", journal.AcceptMissing, false,
			func(p *config.Program) { p.MaxDailyNotional = dec("70000") }, strategy.OutcomeDailyCap},
		{"missing frees the daily cap after a restart", journal.AcceptMissing, true,
			func(p *config.Program) { p.MaxDailyNotional = dec("70000") }, strategy.OutcomeDailyCap},
		{"ok counts in the executed base and the average price", journal.AcceptOK, false,
			func(p *config.Program) { p.Target = dec("1") }, strategy.OutcomeTargetReached},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rg := newRig(t, 300*time.Millisecond, nil)
			rg.desk.BlackholeNextAccepts(1) // executes at the desk, never answered: unknown
			prog := liveSell("sell-btc")    // 0.5 BTC at about 65,000 per accept
			tc.limit(&prog)
			pol := policy(prog)
			fast := func(d *Deps) { d.SettleEvery = 20 * time.Millisecond }
			e, m := rg.start(pol, fast)
			accepts := func(m *metrics.Metrics, result string) float64 {
				return testutil.ToFloat64(m.Accepts.WithLabelValues("sell-btc", result))
			}
			// The unknown accept and one ok accept use up the limit.
			waitFor(t, "an unknown and an ok accept, then the limit", 10*time.Second, func() bool {
				return accepts(m, journal.AcceptUnknown) == 1 && accepts(m, journal.AcceptOK) == 1 &&
					decisions(m, "sell-btc", tc.freed) >= 3
			})
			as := journalAccepts(t, rg.j, "sell-btc")
			if len(as) != 2 || as[0].Result != journal.AcceptUnknown || as[1].Result != journal.AcceptOK {
				t.Fatalf("journal = %+v, want an unknown accept then an ok one", as)
			}
			unknown, okAcc := as[0], as[1]
			// Held by the limit for several settle periods: nothing settles
			// an unknown accept but the journal.
			time.Sleep(100 * time.Millisecond)
			if got := accepts(m, journal.AcceptOK); got != 1 {
				t.Fatalf("%v ok accepts before the settlement, want 1: the unknown accept was not counted", got)
			}
			if tc.restart {
				stop(t, e)
				e, m = rg.start(pol, fast)
				waitFor(t, "the limit after the restart", 10*time.Second, func() bool {
					return decisions(m, "sell-btc", tc.freed) >= 3
				})
			}
			executedBase := func() float64 { return testutil.ToFloat64(m.ExecutedBase.WithLabelValues("sell-btc")) }
			avgPrice := func() float64 { return testutil.ToFloat64(m.ProgramAveragePrice.WithLabelValues("sell-btc")) }
			if got := executedBase(); !tc.restart && got != 0.5 {
				t.Fatalf("executed_base_total = %v before the settlement, want 0.5 (the ok accept)", got)
			}

			convertID := ""
			if tc.result == journal.AcceptOK {
				for _, c := range rg.desk.Converts() {
					if c.QuoteID == unknown.QuoteID {
						convertID = c.DisplayID
					}
				}
				if convertID == "" {
					t.Fatalf("the blackholed accept %s did not execute at the desk", unknown.QuoteID)
				}
			}
			if err := rg.j.SettleAccept(context.Background(), unknown.ID, tc.result, convertID); err != nil {
				t.Fatal(err)
			}

			if tc.result == journal.AcceptMissing {
				waitFor(t, "an accept in the room the settlement freed", 10*time.Second, func() bool {
					return accepts(m, journal.AcceptOK) >= 1 && len(journalAccepts(t, rg.j, "sell-btc")) == 3
				})
				status := e.Status()
				if tc.freed == strategy.OutcomeTargetReached {
					waitFor(t, "the target again", 10*time.Second, func() bool {
						return e.Status()[0].Executed == "1"
					})
					status = e.Status()
					if status[0].RemainingTarget != "0" {
						t.Fatalf("status = %+v, want the target reached by the two ok accepts", status[0])
					}
				}
				// The settled accept is not counted any more: exactly one
				// more accept fits, then the limit holds again.
				before := decisions(m, "sell-btc", tc.freed)
				waitFor(t, "the limit again", 10*time.Second, func() bool { return decisions(m, "sell-btc", tc.freed) >= before+3 })
				if n := len(journalAccepts(t, rg.j, "sell-btc")); n != 3 {
					t.Fatalf("%d accepts journaled, want 3: one more in the freed room", n)
				}
				return
			}
			waitFor(t, "the settled accept in executed_base_total", 10*time.Second, func() bool { return executedBase() == 1 })
			want := okAcc.QuoteQty.Add(unknown.QuoteQty).DivRound(okAcc.BaseQty.Add(unknown.BaseQty), 8).InexactFloat64()
			if got := avgPrice(); got != want {
				t.Fatalf("average price = %v, want %v (both accepts)", got, want)
			}
			// Still counted in the target: nothing more is sent.
			before := decisions(m, "sell-btc", tc.freed)
			waitFor(t, "the target still reached", 10*time.Second, func() bool { return decisions(m, "sell-btc", tc.freed) >= before+3 })
			if n := len(journalAccepts(t, rg.j, "sell-btc")); n != 2 {
				t.Fatalf("%d accepts journaled after an ok settlement, want 2", n)
			}
			if st := e.Status()[0]; st.Executed != "1" {
				t.Fatalf("status executed = %s, want 1", st.Executed)
			}
		})
	}
}
