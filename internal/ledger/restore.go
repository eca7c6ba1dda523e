package ledger

import (
	"context"
	"encoding/json"

	"go.uber.org/zap"

	"treasuryd/internal/metrics"
)

// restoreLast takes the newest journaled report as the last run, so that
// /status and the reconciliation gauges (last success, breaks, drift) say
// after a restart what they said before it, rather than 0: a stale alert on
// the last-success timestamp would otherwise fire after every restart. A
// journal without a report, or one that cannot be read, leaves them as they
// are; nothing here can stop the daemon.
func (r *Reconciler) restoreLast(ctx context.Context) {
	saved, ok, err := r.d.Journal.LastReport(ctx)
	if err != nil {
		r.d.Log.Warn("last reconciliation report not read; gauges start empty", zap.Error(err))
		return
	}
	if !ok {
		return
	}
	var rep Report
	if err := json.Unmarshal(saved.Body, &rep); err != nil {
		r.d.Log.Warn("last reconciliation report does not decode; gauges start empty", zap.Int64("report_id", saved.ID), zap.Error(err))
		return
	}
	if rep.At.IsZero() {
		rep.At = saved.At
	}
	r.mu.Lock()
	if r.last == nil {
		r.last = &rep
	}
	r.mu.Unlock()
	r.meter(&rep)
	r.d.Log.Info("last reconciliation restored from the journal", zap.Time("at", rep.At), zap.Bool("clean", rep.Clean()))
}

// meter reflects a completed report in the gauges.
func (r *Reconciler) meter(rep *Report) {
	m := r.d.Metrics
	if m == nil {
		return
	}
	for k, n := range rep.Counts() {
		m.ReconcileBreaks.WithLabelValues(k).Set(float64(n))
	}
	for _, a := range rep.Assets {
		m.ReconcileDrift.WithLabelValues(a.Asset).Set(metrics.Value(a.Drift))
	}
	m.ReconcileLastSuccess.Set(float64(rep.At.Unix()))
}
