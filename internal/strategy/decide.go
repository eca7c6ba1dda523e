// Package strategy decides, for every quote a program's stream delivers,
// whether to accept it (SPEC 5.2): the decision alone, pure, with no I/O.
// The accept path (internal/trade) and replay (internal/replay) both run it.
//
// The decision (Program.Decide) is a pure function of the program's state,
// the quote, the outside state in Env and the clock, so that `replay` runs the
// very same code over recorded frames. It promises: every quote gets exactly
// one outcome, checked in a fixed order; nothing expiring, outside the limit
// or the reference rule, within cooldown, beyond the target, the daily cap or
// the reserve is ever accepted; and it never divides (price comparisons are
// cross-multiplied), so it stays within the SPEC 8 budget.
package strategy

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
)

// Outcomes of a decision, checked in exactly this order; the first failing
// check names the outcome (SPEC 5.2). They are the values of the outcome
// label of treasuryd_quote_decisions_total.
const (
	OutcomeInvalid       = "invalid"
	OutcomePaused        = "paused"
	OutcomeCompliance    = "compliance"
	OutcomeExpiring      = "expiring"
	OutcomeLimitPrice    = "limit_price"
	OutcomeReference     = "reference"
	OutcomeCooldown      = "cooldown"
	OutcomeTargetReached = "target_reached"
	OutcomeDailyCap      = "daily_cap"
	OutcomeReserve       = "reserve"
	OutcomeInFlight      = "in_flight"
	OutcomeAccepted      = "accepted"
	OutcomeDryRun        = "dry_run"
)

// Outcomes lists every outcome in check order.
var Outcomes = []string{
	OutcomeInvalid, OutcomePaused, OutcomeCompliance, OutcomeExpiring, OutcomeLimitPrice,
	OutcomeReference, OutcomeCooldown, OutcomeTargetReached, OutcomeDailyCap, OutcomeReserve,
	OutcomeInFlight, OutcomeAccepted, OutcomeDryRun,
}

// Env is the outside state a decision sees. The daemon fills it from the
// pause flag, the compliance gate, the polled balance and its in-flight flag;
// replay fills it from the recording.
type Env struct {
	Paused       bool
	GateOpen     bool
	GateReason   string
	Balance      decimal.Decimal // balance of the asset the program sells
	BalanceKnown bool
	InFlight     bool // an accept of this program is in flight
	DryRun       bool // the policy's global dry_run
}

// Decision is the outcome of one quote and why. Reason is static text (or
// the gate's own reason), so deciding formats nothing.
type Decision struct {
	Outcome string
	Reason  string
}

// Accepted reports whether the decision is to send the accept.
func (d Decision) Accepted() bool { return d.Outcome == OutcomeAccepted }

const (
	// refCapacity bounds a program's reference window. The median of the
	// newest 1024 quotes is as good a reference as the median of more (the
	// sandbox streams 1 quote/s, so a 5m window holds 300), and keeping the
	// sorted copy this small keeps an insert's memmove at a few hundred
	// nanoseconds. When the window holds more quotes than this, the oldest
	// are dropped early.
	refCapacity = 1024
	// maxDailyAccepts bounds the rolling-24h notional entries of a program
	// (about one accept every 1.3 s all day long). The entries cannot be
	// dropped without undercounting the cap, so a full list refuses further
	// accepts with daily_cap instead: the safe side.
	maxDailyAccepts = 1 << 16
	// dailyWindow is the rolling window of max_daily_notional.
	dailyWindow = 24 * time.Hour
	// MaxExpiryAhead is how far ahead a quote's expiry may lie (SPEC 5.2):
	// the desk quotes for seconds, so a quote valid for longer is not one
	// of its quotes, and the bound is what lets the accepted-id set below
	// forget ids.
	MaxExpiryAhead = config.MaxQuoteExpiryAhead
	// maxAcceptedIDs bounds a program's set of recently accepted quote ids
	// (invariant 15). An id is kept until its quote's expiry lies
	// MaxExpiryAhead in the past, so the set holds the accepts of some
	// 10 minutes: 65,536 is over 100 accepts a second. The ids cannot be
	// dropped early without risking a second accept of one, so a full set
	// refuses quotes as invalid instead: the safe side.
	maxAcceptedIDs = 1 << 16
)

// bpsExp scales basis points to a fraction: a basis point is 10^-4.
const bpsExp = -4

var (
	half = decimal.New(5, -1)
	two  = decimal.NewFromInt(2)
)

// Program is one trading program's decision state: its policy, the bounds
// precomputed from it, and its progress (last accept, executed base, rolling
// 24h notional, reference window). Decide runs on the stream's goroutine,
// Commit and Release on the accept path's; a mutex orders them.
type Program struct {
	cfg       config.Program
	sell      bool
	fixedBase bool // size program: the base quantity is fixed; else notional: the quote quantity is
	// limitBound is limit × size for a size program: the quote quantity a
	// quote must reach (sell) or not exceed (buy), so no price is computed.
	limitBound decimal.Decimal
	// sizeReserve is size + reserve for a size sell program: the balance the
	// base asset must have.
	sizeReserve decimal.Decimal
	// The same bounds with their fixed forms, compared as integers.
	limitBoundN, sizeN, notionalN, sizeReserveN, reserveN num

	refOn     bool
	refFactor decimal.Decimal // 1 ± min_improvement_bps/10000
	refHalf   decimal.Decimal // refFactor / 2, for an even window's median
	// refFactorF is refFactor × 10^18 when that is a whole number below
	// 2^64 (refFactorOK): the reference test then runs on fixed forms.
	refFactorF  uint64
	refFactorOK bool
	minValidity int64 // nanoseconds

	mu         sync.Mutex
	hasAccept  bool
	lastAccept time.Time
	executed   decimal.Decimal
	daily      []dailyEntry // oldest first, from dailyHead on
	dailyHead  int
	dailySum   decimal.Decimal
	// targetRoom (target − executed) and dailyRoom (cap − dailySum) change
	// only when progress does, so a decision compares instead of adding.
	targetRoom num
	dailyRoom  num
	ref        refWindow
	// nums caches the fixed forms of the base and quote quantities and the
	// balance last decided on: the fixed side of a stream's quotes and the
	// polled balance are the same decimal quote after quote.
	nums [3]numCache
	// The reference threshold of a size program for the median keys
	// thrA, thrB (equal for an odd count): the median rarely moves between
	// two quotes, and then the multiplication is skipped.
	thrOK      bool
	thrA, thrB decimal.Decimal
	thr        decimal.Decimal
	// ids holds the ids of the quotes this program accepted (or, restored
	// from the journal, an earlier process did) whose expiry lies less than
	// MaxExpiryAhead in the past, each with its expiry in microseconds;
	// idOrder is their insertion order from idHead on, for eviction.
	ids     map[string]int64
	idOrder []acceptedID
	idHead  int
}

type acceptedID struct {
	id           string
	expiryMicros int64
}

type dailyEntry struct {
	at       int64 // unix nanoseconds
	notional decimal.Decimal
}

// NewProgram builds the decision state of one program. accountID is kept for
// symmetry with the stream request; the decision itself does not need it.
func NewProgram(accountID string, cfg config.Program) *Program {
	_ = accountID
	p := &Program{
		cfg:         cfg,
		sell:        cfg.Side == config.SideSell,
		fixedBase:   !cfg.Size.IsZero(),
		minValidity: int64(cfg.MinValidity),
		ids:         map[string]int64{},
	}
	if p.fixedBase {
		p.limitBound = cfg.LimitPrice.Mul(cfg.Size)
		p.sizeReserve = cfg.Size.Add(cfg.Reserve)
	}
	p.limitBoundN, p.sizeN, p.notionalN = newNum(p.limitBound), newNum(cfg.Size), newNum(cfg.Notional)
	p.sizeReserveN, p.reserveN = newNum(p.sizeReserve), newNum(cfg.Reserve)
	if cfg.Reference != nil && cfg.Reference.Window > 0 {
		p.refOn = true
		imp := cfg.Reference.MinImprovementBps.Shift(bpsExp)
		if p.sell {
			p.refFactor = decimal.NewFromInt(1).Add(imp)
		} else {
			p.refFactor = decimal.NewFromInt(1).Sub(imp)
		}
		p.refHalf = p.refFactor.Mul(half)
		if f, ok := toFixed(p.refFactor); ok && f.hi == 0 {
			p.refFactorF, p.refFactorOK = f.lo, true
		}
		p.ref.window = int64(cfg.Reference.Window)
	}
	p.rooms()
	return p
}

// Config is the program's policy.
func (p *Program) Config() config.Program { return p.cfg }

// Quantities returns the base and quote asset quantities of q for this
// program: a sell program sells base (the quote's "to") for quote (its
// "from"), a buy program the reverse (SPEC 2).
func (p *Program) Quantities(q *astra.Quote) (base, quote decimal.Decimal) {
	if p.sell {
		return q.ToQty, q.FromQty
	}
	return q.FromQty, q.ToQty
}

// Decide gives q exactly one outcome (SPEC 5.2). qErr is the stream's
// validation error for q (nil when valid). now is the decision time. A valid
// quote joins the reference window after it is decided. Decide never commits
// an accept: the caller calls Commit when it acts on an accepted (or, for
// replay, would-be) decision.
func (p *Program) Decide(q *astra.Quote, qErr error, env Env, now time.Time) Decision {
	if qErr != nil || q == nil {
		return Decision{OutcomeInvalid, "quote failed validation"}
	}
	b, qt := p.Quantities(q)
	p.mu.Lock()
	defer p.mu.Unlock()
	base, quote := p.nums[0].of(b), p.nums[1].of(qt)
	if b.Sign() <= 0 || qt.Sign() <= 0 || (p.fixedBase && base.cmp(&p.sizeN) != 0) ||
		(!p.fixedBase && quote.cmp(&p.notionalN) != 0) {
		// quotes.Validate refuses these; checked again because the
		// precomputed bounds below rely on the fixed side.
		return Decision{OutcomeInvalid, "quote quantities do not match the program"}
	}
	nowNanos := now.UnixNano()
	if remainingNanos(q.ExpiryMicros, nowNanos) > int64(MaxExpiryAhead) {
		return Decision{OutcomeInvalid, "quote expiry lies more than 10 minutes ahead"}
	}
	if _, dup := p.ids[q.QuoteID]; dup {
		return Decision{OutcomeInvalid, "quote id already accepted"}
	}
	if len(p.ids) >= maxAcceptedIDs {
		p.evictIDs(nowNanos)
		if len(p.ids) >= maxAcceptedIDs {
			return Decision{OutcomeInvalid, "too many recently accepted quote ids to track"}
		}
	}
	// The window's key: the quantity that varies.
	key := base
	if p.fixedBase {
		key = quote
	}
	if p.refOn {
		p.ref.evict(nowNanos, key)
	}
	d := p.decideLocked(q, base, quote, env, now, nowNanos)
	if p.refOn {
		p.ref.insert(nowNanos, key)
	}
	return d
}

func (p *Program) decideLocked(q *astra.Quote, base, quote *num, env Env, now time.Time, nowNanos int64) Decision {
	if env.Paused {
		return Decision{OutcomePaused, "paused by the kill switch"}
	}
	if !env.GateOpen {
		if env.GateReason != "" {
			return Decision{OutcomeCompliance, env.GateReason}
		}
		return Decision{OutcomeCompliance, "compliance gate closed"}
	}
	// An expired quote is never accepted, even with min_validity 0.
	if left := remainingNanos(q.ExpiryMicros, nowNanos); left < p.minValidity || left <= 0 {
		return Decision{OutcomeExpiring, "less than min_validity left before expiry"}
	}
	if !p.withinLimit(base, quote) {
		if p.sell {
			return Decision{OutcomeLimitPrice, "price below limit_price"}
		}
		return Decision{OutcomeLimitPrice, "price above limit_price"}
	}
	if p.refOn && !p.beatsReference(base, quote) {
		return Decision{OutcomeReference, "price does not beat the median of recent quotes by min_improvement_bps"}
	}
	if p.hasAccept && now.Sub(p.lastAccept) < p.cfg.Cooldown {
		return Decision{OutcomeCooldown, "within cooldown of the last accept"}
	}
	if !p.cfg.Target.IsZero() && base.cmp(&p.targetRoom) > 0 {
		return Decision{OutcomeTargetReached, "executed base plus this quote would exceed target"}
	}
	if !p.cfg.MaxDailyNotional.IsZero() {
		p.evictDaily(nowNanos)
		if len(p.daily)-p.dailyHead >= maxDailyAccepts {
			return Decision{OutcomeDailyCap, "too many accepts in the last 24h to track"}
		}
		if quote.cmp(&p.dailyRoom) > 0 {
			return Decision{OutcomeDailyCap, "24h notional plus this quote would exceed max_daily_notional"}
		}
	}
	if !env.BalanceKnown {
		return Decision{OutcomeReserve, "balance of the asset sold is not known yet"}
	}
	if !p.keepsReserve(base, quote, p.nums[2].of(env.Balance)) {
		return Decision{OutcomeReserve, "balance of the asset sold would fall below reserve"}
	}
	if env.InFlight {
		return Decision{OutcomeInFlight, "an accept of this program is in flight"}
	}
	if env.DryRun || p.cfg.DryRun {
		return Decision{OutcomeDryRun, "would accept; dry run"}
	}
	return Decision{OutcomeAccepted, "all checks passed"}
}

// Remaining is the time left before a quote expiring at expiryMicros (Unix
// microseconds), as the decision computes it: negative once expired.
func Remaining(expiryMicros int64, now time.Time) time.Duration {
	return time.Duration(remainingNanos(expiryMicros, now.UnixNano()))
}

// remainingNanos is expiry − now in nanoseconds, saturating instead of
// overflowing for absurd expiries.
func remainingNanos(expiryMicros, nowNanos int64) int64 {
	const maxMicros = (1<<63 - 1) / 1000
	if expiryMicros > maxMicros {
		return 1<<63 - 1
	}
	if expiryMicros < -maxMicros {
		return -1 << 63
	}
	return expiryMicros*1000 - nowNanos
}

// withinLimit: sell accepts price >= limit, buy price <= limit, with price =
// quote/base compared as quote vs limit × base.
func (p *Program) withinLimit(base, quote *num) bool {
	var c int
	if p.fixedBase {
		c = quote.cmp(&p.limitBoundN)
	} else {
		c = cmp(quote.d, p.cfg.LimitPrice.Mul(base.d))
	}
	if p.sell {
		return c >= 0
	}
	return c <= 0
}

// beatsReference: sell needs price >= median × (1 + bps/10000), buy price <=
// median × (1 − bps/10000), over the valid quotes of the window before this
// one; an empty window passes. Prices are never computed:
//   - size program (base fixed at B): price_i = Q_i/B, so the median price is
//     median(Q)/B and the test is Q against median(Q) × factor;
//   - notional program (quote fixed at N): price_i = N/b_i, ordered inversely
//     to b_i, so the median price is N/b_m (odd count) or
//     N(b_a+b_b)/(2·b_a·b_b) (even count), and the test cross-multiplies.
func (p *Program) beatsReference(baseN, quoteN *num) bool {
	w := &p.ref
	n := w.Len()
	if n == 0 {
		return true
	}
	base, quote := baseN.d, quoteN.d
	var c int
	if ea, eb := w.keyNum((n-1)/2), w.keyNum(n/2); p.fixedBase && p.refFactorOK && ea.ok && eb.ok && quoteN.ok {
		// In fixed forms: Q ≥ (a+b)/2 × factor (a = b for an odd count)
		// is 2·Q·10^18 ≥ (a+b)·factor·10^18, exact in 192 bits.
		c = quoteN.f.mul(2 * fixedOne).cmp(ea.f.add(eb.f).mul(p.refFactorF))
	} else if p.fixedBase {
		a, b := w.key((n-1)/2), w.key(n/2)
		if !p.thrOK || cmp(a, p.thrA) != 0 || cmp(b, p.thrB) != 0 {
			if n%2 == 1 {
				p.thr = a.Mul(p.refFactor)
			} else {
				p.thr = a.Add(b).Mul(p.refHalf)
			}
			p.thrOK, p.thrA, p.thrB = true, a, b
		}
		c = cmp(quote, p.thr)
	} else {
		// c compares price with median × factor: N/b vs factor·N/b_m is
		// b_m vs factor·b, and the even case multiplies both sides out.
		if n%2 == 1 {
			c = cmp(w.key(n/2), base.Mul(p.refFactor))
		} else {
			a, b := w.key(n/2-1), w.key(n/2)
			c = cmp(two.Mul(a).Mul(b), base.Mul(p.refFactor).Mul(a.Add(b)))
		}
	}
	if p.sell {
		return c >= 0
	}
	return c <= 0
}

// keepsReserve: the balance of the asset sold minus the amount sold must stay
// at or above reserve.
func (p *Program) keepsReserve(base, quote, bal *num) bool {
	if p.sell && p.fixedBase {
		return bal.cmp(&p.sizeReserveN) >= 0
	}
	sold := quote
	if p.sell {
		sold = base
	}
	if bal.ok && sold.ok && p.reserveN.ok {
		return bal.f.cmp(sold.f.add(p.reserveN.f)) >= 0
	}
	return cmp(bal.d, sold.d.Add(p.cfg.Reserve)) >= 0
}

// Commit counts an accept (real or, in replay, would-be) of q decided at now:
// it starts the cooldown and adds to the executed base and the rolling 24h
// notional, so the caps count it while its result is pending or unknown.
func (p *Program) Commit(q *astra.Quote, now time.Time) {
	base, quote := p.Quantities(q)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.startCooldown(now)
	p.addProgress(base, quote, now.UnixNano())
	p.evictIDs(now.UnixNano())
	p.addID(q.QuoteID, q.ExpiryMicros)
}

// CommitDryRun starts the cooldown for a dry-run would-be accept, in memory
// only, so dry-run decisions look like the real ones would; it never touches
// progress.
func (p *Program) CommitDryRun(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.startCooldown(now)
}

// Release takes back the progress of an accept committed at `at` that turned
// out rejected, error or missing: nothing was executed. The cooldown stays.
func (p *Program) Release(baseQty, quoteQty decimal.Decimal, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.executed = p.executed.Sub(baseQty)
	atNanos := at.UnixNano()
	for i := len(p.daily) - 1; i >= p.dailyHead; i-- {
		e := p.daily[i]
		if e.at == atNanos && e.notional.Equal(quoteQty) {
			copy(p.daily[i:], p.daily[i+1:])
			p.daily[len(p.daily)-1] = dailyEntry{}
			p.daily = p.daily[:len(p.daily)-1]
			p.dailySum = p.dailySum.Sub(quoteQty)
			break
		}
	}
	p.rooms()
}

// PastAccept is an accept made before, as Restore reads it from the journal.
type PastAccept struct {
	QuoteID           string
	BaseQty, QuoteQty decimal.Decimal
	SentAt            time.Time
	ExpiryMicros      int64
	// Counts: the accept executed or may have (ok, pending, unknown), so
	// caps and targets count it.
	Counts bool
}

// Restore rebuilds the progress from the program's journaled accepts at
// start: executed base and 24h notional from those that count (ok, pending,
// unknown), the cooldown from the newest accept whatever its result, and
// the recently accepted quote ids.
func (p *Program) Restore(accepts []PastAccept) {
	as := make([]PastAccept, len(accepts))
	copy(as, accepts)
	sort.SliceStable(as, func(i, j int) bool { return as[i].SentAt.Before(as[j].SentAt) })
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hasAccept, p.lastAccept = false, time.Time{}
	p.executed, p.dailySum = decimal.Zero, decimal.Zero
	p.daily, p.dailyHead = nil, 0
	p.ids, p.idOrder, p.idHead = map[string]int64{}, nil, 0
	defer p.rooms()
	if len(as) == 0 {
		return
	}
	newest := as[len(as)-1].SentAt
	p.startCooldown(newest)
	horizon := newest.Add(-dailyWindow).UnixNano()
	// Every journaled accept's id, whatever its result, blocks the id: an
	// unknown one may have executed, and a refused one is not tried again.
	// Those that expired MaxExpiryAhead before the newest accept are
	// refused by the expiry rules anyway; the rest are evicted by time later.
	idHorizon := newest.Add(-MaxExpiryAhead).UnixMicro()
	for _, a := range as {
		if a.QuoteID != "" && a.ExpiryMicros >= idHorizon {
			p.addID(a.QuoteID, a.ExpiryMicros)
		}
	}
	for _, a := range as {
		if !a.Counts {
			continue
		}
		at := a.SentAt.UnixNano()
		if at <= horizon {
			// Older than 24h before the newest accept: only the target counts it.
			p.executed = p.executed.Add(a.BaseQty)
			continue
		}
		p.addProgress(a.BaseQty, a.QuoteQty, at)
	}
}

func (p *Program) startCooldown(now time.Time) {
	if !p.hasAccept || now.After(p.lastAccept) {
		p.hasAccept, p.lastAccept = true, now
	}
}

func (p *Program) addProgress(base, quote decimal.Decimal, atNanos int64) {
	p.executed = p.executed.Add(base)
	if p.dailyHead > 0 && p.dailyHead >= len(p.daily)/2 {
		n := copy(p.daily, p.daily[p.dailyHead:])
		clear(p.daily[n:])
		p.daily, p.dailyHead = p.daily[:n], 0
	}
	p.daily = append(p.daily, dailyEntry{at: atNanos, notional: quote})
	p.dailySum = p.dailySum.Add(quote)
	p.rooms()
}

// addID remembers an accepted quote id.
func (p *Program) addID(id string, expiryMicros int64) {
	if _, ok := p.ids[id]; ok {
		return
	}
	// A copy of its own: a decoded id shares its memory with the ids and
	// signatures of other quotes of its stream (astra.QuoteDecoder).
	id = strings.Clone(id)
	p.ids[id] = expiryMicros
	p.idOrder = append(p.idOrder, acceptedID{id: id, expiryMicros: expiryMicros})
}

// evictIDs forgets the accepted ids, oldest first, whose expiry lies
// MaxExpiryAhead or more in the past: a quote carrying one again is refused
// by the expiry rules (SPEC 5.2). Insertion order is near enough to expiry
// order; an id behind a later-expiring one is kept a little longer.
func (p *Program) evictIDs(nowNanos int64) {
	horizon := (nowNanos - int64(MaxExpiryAhead)) / 1000
	for p.idHead < len(p.idOrder) && p.idOrder[p.idHead].expiryMicros < horizon {
		delete(p.ids, p.idOrder[p.idHead].id)
		p.idOrder[p.idHead] = acceptedID{}
		p.idHead++
	}
	if p.idHead > 0 && p.idHead >= len(p.idOrder)/2 {
		n := copy(p.idOrder, p.idOrder[p.idHead:])
		clear(p.idOrder[n:])
		p.idOrder, p.idHead = p.idOrder[:n], 0
	}
}

// rooms recomputes targetRoom and dailyRoom after progress changed.
func (p *Program) rooms() {
	p.targetRoom = newNum(p.cfg.Target.Sub(p.executed))
	p.dailyRoom = newNum(p.cfg.MaxDailyNotional.Sub(p.dailySum))
}

// Adopt takes over old's progress (cooldown, executed base, 24h notional,
// accepted quote ids): a program changed by a reload keeps what it has done.
// The reference window starts empty, as its rules may have changed.
func (p *Program) Adopt(old *Program) {
	old.mu.Lock()
	hasAccept, lastAccept, executed, dailySum := old.hasAccept, old.lastAccept, old.executed, old.dailySum
	daily := append([]dailyEntry(nil), old.daily[old.dailyHead:]...)
	idOrder := append([]acceptedID(nil), old.idOrder[old.idHead:]...)
	old.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hasAccept, p.lastAccept, p.executed, p.dailySum = hasAccept, lastAccept, executed, dailySum
	p.daily, p.dailyHead = daily, 0
	p.ids, p.idOrder, p.idHead = make(map[string]int64, len(idOrder)), nil, 0
	for _, a := range idOrder {
		p.addID(a.id, a.expiryMicros)
	}
	p.rooms()
}

// evictDaily drops notional entries 24h or older.
func (p *Program) evictDaily(nowNanos int64) {
	horizon := nowNanos - int64(dailyWindow)
	evicted := false
	for p.dailyHead < len(p.daily) && p.daily[p.dailyHead].at <= horizon {
		p.dailySum = p.dailySum.Sub(p.daily[p.dailyHead].notional)
		p.daily[p.dailyHead] = dailyEntry{}
		p.dailyHead++
		evicted = true
	}
	if evicted {
		p.rooms()
	}
}

// Progress is a program's progress at a point in time.
type Progress struct {
	Executed      decimal.Decimal // base executed (ok, pending and unknown accepts)
	DailyNotional decimal.Decimal // quote-asset notional of the last 24h
	LastAccept    time.Time       // zero when none
}

// Progress returns the program's progress as of now.
func (p *Program) Progress(now time.Time) Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.evictDaily(now.UnixNano())
	pr := Progress{Executed: p.executed, DailyNotional: p.dailySum}
	if p.hasAccept {
		pr.LastAccept = p.lastAccept
	}
	return pr
}
