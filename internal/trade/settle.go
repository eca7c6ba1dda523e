package trade

import (
	"context"
	"sync"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
)

// defaultSettleEvery is how often the runner looks in the journal for its
// unknown accepts that the reconciliation (its own schedule or a one-shot
// `treasuryd reconcile`) has settled since. Unknown accepts are rare, and
// each look is one read per unknown accept.
const defaultSettleEvery = 5 * time.Second

// settleReadTimeout bounds one read of an unknown accept, and so how long
// Stop can wait for the loop.
const settleReadTimeout = 5 * time.Second

// unknownAccept is an accept whose outcome is unknown: caps and target count
// it as executed until the reconciliation settles it (SPEC 5.2).
type unknownAccept struct {
	base, quote decimal.Decimal
	// countedAt is the instant its entry in the daily cap carries: the
	// decision's for an accept of this process, SentAt for one restored
	// from the journal.
	countedAt time.Time
}

// unknowns are the unknown accepts of one program, by journal id. They live
// in the program's slot, so a reload that changes the program keeps them.
type unknowns struct {
	mu sync.Mutex
	m  map[int64]unknownAccept
}

// seed replaces the set with the one read from the journal.
func (u *unknowns) seed(s map[int64]unknownAccept) {
	u.mu.Lock()
	u.m = s
	u.mu.Unlock()
}

func (u *unknowns) add(id int64, a unknownAccept) {
	u.mu.Lock()
	if u.m == nil {
		u.m = map[int64]unknownAccept{}
	}
	u.m[id] = a
	u.mu.Unlock()
}

func (u *unknowns) ids() []int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	ids := make([]int64, 0, len(u.m))
	for id := range u.m {
		ids = append(ids, id)
	}
	return ids
}

// take removes id and returns what it counted; ok=false when it is no
// longer there (settled already, or the set was reseeded without it).
func (u *unknowns) take(id int64) (unknownAccept, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	a, ok := u.m[id]
	delete(u.m, id)
	return a, ok
}

// unknownSeed is the unknown accepts among as, as Restore counted them.
func unknownSeed(as []journal.Accept) map[int64]unknownAccept {
	s := map[int64]unknownAccept{}
	for _, a := range as {
		if a.Result == journal.AcceptUnknown {
			s[a.ID] = unknownAccept{base: a.BaseQty, quote: a.QuoteQty, countedAt: a.SentAt}
		}
	}
	return s
}

// settleLoop applies, every SettleEvery until Stop, the settlements of the
// programs' unknown accepts the journal holds: without it a settled accept
// would stay counted (or uncounted in the average price) until the next
// start.
func (e *Runner) settleLoop(ctx context.Context) {
	defer close(e.settleDone)
	t := time.NewTicker(e.d.SettleEvery)
	defer t.Stop()
	for {
		select {
		case <-e.quit:
			return
		case <-t.C:
			e.applySettlements(ctx)
		}
	}
}

// applySettlements reads each unknown accept of the running programs from
// the journal and applies the result the reconciliation gave it: ok counts
// it in the executed base and the average price; missing releases what it
// counted in the caps and target (SPEC 5.2: "until settled"). Still unknown
// or unreadable, it stays counted.
func (e *Runner) applySettlements(ctx context.Context) {
	e.mu.Lock()
	slots := make(map[string]*slot, len(e.programs))
	for name := range e.programs {
		slots[name] = e.slots[name]
	}
	e.mu.Unlock()
	for name, sl := range slots {
		for _, id := range sl.unknown.ids() {
			select {
			case <-e.quit:
				return
			default:
			}
			rctx, cancel := context.WithTimeout(ctx, settleReadTimeout)
			a, err := e.d.Journal.AcceptByID(rctx, id)
			cancel()
			if err != nil {
				e.log.Warn("unknown accept not read; it stays counted as executed", zap.String("program", name),
					zap.Int64("accept_id", id), zap.Error(err))
				continue
			}
			if a.Result != journal.AcceptOK && a.Result != journal.AcceptMissing {
				continue
			}
			e.applySettlement(name, sl, a)
		}
	}
}

// applySettlement applies one settled accept. Under e.mu, so that a reload
// installing the program's next state never interleaves with it.
func (e *Runner) applySettlement(name string, sl *slot, a journal.Accept) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.programs[name]
	if r == nil || r.slot != sl {
		return // removed by a reload meanwhile; a new program reads the journal
	}
	u, ok := sl.unknown.take(a.ID)
	if !ok {
		return
	}
	fields := []zap.Field{zap.Int64("accept_id", a.ID), zap.String("quote_id", a.QuoteID), zap.String("result", a.Result),
		zap.Stringer("base_qty", u.base), zap.Stringer("quote_qty", u.quote)}
	if a.Result == journal.AcceptOK {
		// Counted as executed all along; now also in the ok totals.
		r.executed.Add(metrics.Value(u.base))
		e.meterOK(r, u.base, u.quote)
		r.log.Info("unknown accept settled as executed", append(fields, zap.String("convert", a.ConvertID))...)
		return
	}
	sl.prog.Load().Release(u.base, u.quote, u.countedAt)
	e.meterExecuted(r)
	r.log.Info("unknown accept settled as not executed; caps and target no longer count it", fields...)
}
