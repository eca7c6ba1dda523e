package ledger_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"treasuryd/internal/ledger"
	"treasuryd/internal/metrics"
)

// TestStartRestoresTheLastReport: a reconciler that starts on a journal
// holding a report shows it in /status and in the gauges before its first
// run, so the stale alert does not fire after every restart and the breaks
// of the last run are still visible. A journal without a report leaves the
// gauges at 0 and /status empty.
func TestStartRestoresTheLastReport(t *testing.T) {
	f := newFixture(t)
	f.desk.DriftBalance("BTC", dec("0.001"))
	rep, err := f.rec.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Clean() {
		t.Fatal("the drifted balance gave no break")
	}

	// A new process on the same journal: fresh metrics, no run yet.
	m := metrics.New("test")
	rec := ledger.New(ledger.Deps{Log: zaptest.NewLogger(t), Metrics: m, Desk: f.client, Journal: f.journal, Epoch: f.journal.Epoch})
	if err := rec.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer rec.Stop(context.Background())
	if got, want := testutil.ToFloat64(m.ReconcileLastSuccess), float64(rep.At.Unix()); got != want {
		t.Errorf("last success after start %v; want the journaled report's %v", got, want)
	}
	if got := testutil.ToFloat64(m.ReconcileBreaks.WithLabelValues(ledger.BalanceDrift)); got != 1 {
		t.Errorf("balance_drift breaks after start %v; want 1 from the journaled report", got)
	}
	if got := testutil.ToFloat64(m.ReconcileDrift.WithLabelValues("BTC")); got != 0.001 {
		t.Errorf("BTC drift after start %v; want 0.001", got)
	}
	if got := testutil.ToFloat64(m.ReconcileRuns.WithLabelValues("breaks")); got != 0 {
		t.Errorf("restoring counted a run: %v", got)
	}
	st, ok := rec.Status().(ledger.Summary)
	if !ok || st.Clean || st.Breaks[ledger.BalanceDrift] != 1 || !st.At.Equal(rep.At) {
		t.Errorf("/status after start: %+v; want the journaled report", rec.Status())
	}

	// An empty journal: nothing to restore.
	empty := newFixture(t)
	m2 := metrics.New("test")
	rec2 := ledger.New(ledger.Deps{Log: zaptest.NewLogger(t), Metrics: m2, Desk: empty.client, Journal: empty.journal, Epoch: empty.journal.Epoch})
	if err := rec2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m2.ReconcileLastSuccess); got != 0 {
		t.Errorf("last success on an empty journal %v; want 0", got)
	}
	if rec2.Status() != nil {
		t.Errorf("/status on an empty journal: %+v; want nothing", rec2.Status())
	}
}
