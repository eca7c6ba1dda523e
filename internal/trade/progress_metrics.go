package trade

import (
	"sync"

	"github.com/shopspring/decimal"

	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
)

// averagePricePlaces is the precision of the average price gauge: a display
// value, never read back by a decision.
const averagePricePlaces = 8

// okTotals are a program's ok accepts summed, for its average price. They
// live in the program's slot, so a reload that changes the program keeps
// them.
type okTotals struct {
	mu    sync.Mutex
	base  decimal.Decimal
	quote decimal.Decimal
}

// okSums sums the ok accepts among as: what a program restored from the
// journal seeds its slot's totals with.
func okSums(as []journal.Accept) *okSum {
	s := new(okSum)
	for _, a := range as {
		if a.Result == journal.AcceptOK {
			s.base, s.quote = s.base.Add(a.BaseQty), s.quote.Add(a.QuoteQty)
		}
	}
	return s
}

// okSum is the ok accepts of a program as the journal holds them.
type okSum struct{ base, quote decimal.Decimal }

// seed replaces the totals with the journal's.
func (t *okTotals) seed(s *okSum) {
	t.mu.Lock()
	t.base, t.quote = s.base, s.quote
	t.mu.Unlock()
}

// add counts one ok accept and returns the average price, ok=false while
// nothing has been executed.
func (t *okTotals) add(base, quote decimal.Decimal) (decimal.Decimal, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.base, t.quote = t.base.Add(base), t.quote.Add(quote)
	return t.averageLocked()
}

func (t *okTotals) average() (decimal.Decimal, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.averageLocked()
}

func (t *okTotals) averageLocked() (decimal.Decimal, bool) {
	if !t.base.IsPositive() {
		return decimal.Zero, false
	}
	return t.quote.DivRound(t.base, averagePricePlaces), true
}

// meterProgram sets every progress gauge of a (re)started program: its
// target (absent without one), executed base and average price.
func (e *Runner) meterProgram(r *program) {
	if r.cfg.Target.IsPositive() {
		e.m.ProgramTargetBase.WithLabelValues(r.name).Set(metrics.Value(r.cfg.Target))
	} else {
		e.m.ProgramTargetBase.DeleteLabelValues(r.name)
	}
	e.meterExecuted(r)
	if avg, ok := r.slot.ok.average(); ok {
		e.m.ProgramAveragePrice.WithLabelValues(r.name).Set(metrics.Value(avg))
	}
}

// meterExecuted sets the executed gauge from the program's progress (what
// the caps and the target count).
func (e *Runner) meterExecuted(r *program) {
	pr := r.slot.prog.Load().Progress(e.now())
	e.m.ProgramExecutedBase.WithLabelValues(r.name).Set(metrics.Value(pr.Executed))
}

// meterOK counts an ok accept in the average price.
func (e *Runner) meterOK(r *program, base, quote decimal.Decimal) {
	if avg, ok := r.slot.ok.add(base, quote); ok {
		e.m.ProgramAveragePrice.WithLabelValues(r.name).Set(metrics.Value(avg))
	}
}

// unmeterProgram drops the progress gauges of a program a reload removed.
func (e *Runner) unmeterProgram(name string) {
	e.m.ProgramExecutedBase.DeleteLabelValues(name)
	e.m.ProgramTargetBase.DeleteLabelValues(name)
	e.m.ProgramAveragePrice.DeleteLabelValues(name)
}
