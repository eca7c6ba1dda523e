package trade

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/shopspring/decimal"

	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
)

// TestProgramGaugesFollowTheJournal: executed base, target and average price
// per program are set from the journal when the engine starts (so a restart
// does not zero them), follow every accept, and agree with /status. A
// program without a target has no target series.
func TestProgramGaugesFollowTheJournal(t *testing.T) {
	rg := newRig(t, 5*time.Second, nil)
	target := liveSell("target")
	target.Target = dec("1.5") // 3 accepts of 0.5
	target.Cooldown = 20 * time.Millisecond
	free := liveSell("free")
	free.Size = dec("0.25")
	free.Cooldown = time.Hour // one accept
	pol := policy(target, free)

	okAverage := func(program string) (executed, avg decimal.Decimal) {
		var base, quote decimal.Decimal
		for _, a := range journalAccepts(t, rg.j, program) {
			if a.Counts() {
				executed = executed.Add(a.BaseQty)
			}
			if a.Result == journal.AcceptOK {
				base, quote = base.Add(a.BaseQty), quote.Add(a.QuoteQty)
			}
		}
		if base.IsPositive() {
			avg = quote.DivRound(base, averagePricePlaces)
		}
		return executed, avg
	}
	gauges := func(m *metrics.Metrics, program string) (executed, avg float64) {
		return testutil.ToFloat64(m.ProgramExecutedBase.WithLabelValues(program)),
			testutil.ToFloat64(m.ProgramAveragePrice.WithLabelValues(program))
	}
	agree := func(m *metrics.Metrics, program string) bool {
		ex, avg := okAverage(program)
		gEx, gAvg := gauges(m, program)
		return ex.IsPositive() && metrics.Value(ex) == gEx && metrics.Value(avg) == gAvg
	}

	e1, m1 := rg.start(pol, nil)
	if got := testutil.ToFloat64(m1.ProgramTargetBase.WithLabelValues("target")); got != 1.5 {
		t.Errorf("target gauge %v; want 1.5", got)
	}
	waitFor(t, "the target reached and one accept of free", 15*time.Second, func() bool {
		return agree(m1, "target") && agree(m1, "free") && testutil.ToFloat64(m1.ProgramExecutedBase.WithLabelValues("target")) == 1.5
	})
	for _, st := range e1.Status() {
		ex, avg := okAverage(st.Name)
		if st.Executed != ex.String() || st.AveragePrice != avg.String() {
			t.Errorf("/status of %s: executed %s average %s; the journal says %s and %s", st.Name, st.Executed, st.AveragePrice, ex, avg)
		}
		if (st.Name == "target") != (st.Target == "1.5") || st.LimitPrice != "60000" {
			t.Errorf("/status of %s: target %q limit %q", st.Name, st.Target, st.LimitPrice)
		}
	}
	stop(t, e1)

	// A restart: fresh metrics, set from the journal before any new accept.
	rg.desk.Close() // no desk: nothing new can happen
	_, m2 := rg.start(pol, nil)
	for _, p := range []string{"target", "free"} {
		ex, avg := okAverage(p)
		gEx, gAvg := gauges(m2, p)
		if gEx != metrics.Value(ex) || gAvg != metrics.Value(avg) {
			t.Errorf("%s after restart: gauges executed %v average %v; the journal says %s and %s", p, gEx, gAvg, ex, avg)
		}
	}
	// The program without a target exports no target series.
	if out := exposition(t, m2); strings.Contains(out, `treasuryd_program_target_base{program="free"}`) {
		t.Error("a program without a target has a target series")
	}
}

func exposition(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			b.WriteString(mf.GetName() + "{")
			for _, l := range mt.GetLabel() {
				b.WriteString(l.GetName() + `="` + l.GetValue() + `"`)
			}
			b.WriteString("}\n")
		}
	}
	return b.String()
}
