package strategy

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/crashpoint"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/quotes"
)

// Gate is the compliance gate: closed means no accept.
type Gate interface {
	Open() (bool, string)
}

// Pauser reports the kill switch.
type Pauser interface {
	Paused() bool
}

// Journal is what the engine needs of *journal.Journal.
type Journal interface {
	InsertAccept(ctx context.Context, a journal.Accept) (int64, error)
	SetAcceptResult(ctx context.Context, id int64, result, message string, at time.Time) error
	Accepts(ctx context.Context, f journal.AcceptFilter) ([]journal.Accept, error)
	MarkPendingAcceptsUnknown(ctx context.Context) (int, error)
}

// Desk is what the engine needs of *astra.Client.
type Desk interface {
	AcceptQuote(ctx context.Context, rawQuote []byte) error
	Balances(ctx context.Context) ([]astra.Balance, error)
	DialQuotes(ctx context.Context, r astra.StreamRequest) (*websocket.Conn, error)
}

// Deps are the engine's dependencies. Gate and Pause may be nil (always
// open, never paused).
type Deps struct {
	Log          *zap.Logger
	Metrics      *metrics.Metrics
	Journal      Journal
	Desk         Desk
	Gate         Gate
	Pause        Pauser
	Now          func() time.Time
	Policy       *config.Policy
	BalanceEvery time.Duration // default 5s
	// StreamOptions is the template of every stream's options; Dialer, Log,
	// Metrics and Now are filled in from the fields above when unset.
	StreamOptions quotes.Options
	// Recorder, when set, receives every frame with the outside state its
	// decision saw and the outcome, for replay. It is called on the stream's
	// goroutine and must never block.
	Recorder func(program string, frame []byte, at time.Time, env Env, outcome string)
}

// DefaultBalanceEvery is how often balances are polled when Deps does not say.
const DefaultBalanceEvery = 5 * time.Second

// Engine runs every program of the policy: one quote stream each, a decision
// per quote, and the accept path. It promises at most one accept in flight
// per program, an accept journaled before it is sent and its result after,
// and that an accept whose outcome is unknown is never sent again.
type Engine struct {
	d   Deps
	log *zap.Logger
	m   *metrics.Metrics
	now func() time.Time

	policy   atomic.Pointer[config.Policy]
	stopping atomic.Bool // set first thing in Stop: handlers return without deciding
	ready    atomic.Bool
	// deciding is held (read) by a handler from its stopping check until
	// its accept, if any, is counted in accepts; Stop takes it (write) once
	// to know no decision is under way.
	deciding sync.RWMutex

	mu       sync.Mutex // guards the fields below
	state    int        // 0 new, 1 started, 2 stopped
	runners  map[string]*runner
	slots    map[string]*slot   // per program name; survives a reload of the program
	cancel   context.CancelFunc // the balance poller
	pollDone chan struct{}
	// acceptCtx is the context of every accept POST: cancelled only when
	// Stop runs out of time.
	acceptCtx    context.Context
	acceptCancel context.CancelFunc
	accepts      sync.WaitGroup

	bal balances
}

// slot is what outlives a reload of a program: its in-flight flag (so a
// changed program never has two accepts in flight) and its current decision
// state (so an accept that finishes after the change releases its progress
// where it is now counted).
type slot struct {
	inFlight atomic.Bool
	prog     atomic.Pointer[Program]
	ok       okTotals // ok accepts, for the average price gauge
}

// runner is one program's stream and decision state.
type runner struct {
	name     string
	cfg      config.Program
	prog     *Program
	slot     *slot
	inFlight *atomic.Bool // &slot.inFlight
	req      quotes.Request
	stream   *quotes.Stream
	sold     string // the asset the program sells
	stopped  atomic.Bool

	decisions map[string]prometheus.Counter
	accepts   map[string]prometheus.Counter
	price     prometheus.Gauge
	latency   prometheus.Observer
	validity  prometheus.Observer
	executed  prometheus.Counter

	mu        sync.Mutex // guards the fields below
	lastAt    time.Time
	lastBase  decimal.Decimal
	lastQuote decimal.Decimal
	last      Decision
	current   *acceptRec // the accept in flight, once journaled
}

// acceptRec is one accept in flight. resolved makes sure exactly one of the
// accept goroutine and Stop records its result.
type acceptRec struct {
	id       int64
	quoteID  string
	resolved atomic.Bool
}

// New builds an engine. It does no I/O.
func New(d Deps) *Engine {
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New("")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.BalanceEvery <= 0 {
		d.BalanceEvery = DefaultBalanceEvery
	}
	if d.Policy == nil {
		d.Policy = &config.Policy{}
	}
	if d.StreamOptions.Dialer == nil {
		d.StreamOptions.Dialer = d.Desk
	}
	if d.StreamOptions.Log == nil {
		d.StreamOptions.Log = d.Log
	}
	if d.StreamOptions.Metrics == nil {
		d.StreamOptions.Metrics = d.Metrics
	}
	if d.StreamOptions.Now == nil {
		d.StreamOptions.Now = d.Now
	}
	e := &Engine{
		d:       d,
		log:     d.Log,
		m:       d.Metrics,
		now:     d.Now,
		runners: map[string]*runner{},
		slots:   map[string]*slot{},
	}
	e.policy.Store(d.Policy)
	e.acceptCtx, e.acceptCancel = context.WithCancel(context.Background())
	e.bal.init(d.Metrics)
	return e
}

// Start settles the journal's pending accepts as unknown, restores every
// program's progress from the journal, starts the balance poller (Ready once
// the first fetch succeeded) and one quote stream per program, and returns.
// Nothing is decided before the journal has been read.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != 0 {
		return errors.New("strategy: engine already started")
	}
	if e.d.Journal == nil || e.d.Desk == nil {
		return errors.New("strategy: engine needs a journal and a desk")
	}
	n, err := e.d.Journal.MarkPendingAcceptsUnknown(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		e.log.Warn("accepts pending at start are now unknown; reconciliation settles them", zap.Int("accepts", n))
	}
	pol := e.policy.Load()
	runners := make([]*runner, 0, len(pol.Programs))
	for _, cfg := range pol.Programs {
		r, err := e.newRunner(ctx, pol.AccountID, cfg, nil)
		if err != nil {
			return err
		}
		runners = append(runners, r)
	}
	e.state = 1
	runCtx, cancel := context.WithCancel(context.Background())
	e.cancel, e.pollDone = cancel, make(chan struct{})
	first := make(chan struct{})
	go e.pollBalances(runCtx, first)
	// The first quotes arrive as soon as the streams open: give the first
	// balance fetch a bounded moment, so they are decided on a known
	// balance rather than refused for reserve. A slow desk only delays
	// this; the poller carries on in the background.
	wait := time.NewTimer(firstBalanceWait)
	select {
	case <-first:
	case <-wait.C:
		e.log.Warn("first balance fetch still running; streams open anyway", zap.Duration("waited", firstBalanceWait))
	case <-ctx.Done():
	}
	wait.Stop()
	for _, r := range runners {
		e.runners[r.name] = r
		if err := r.stream.Start(ctx); err != nil {
			return err
		}
	}
	e.log.Info("strategy started", zap.Int("programs", len(runners)))
	return nil
}

// newRunner builds a program's runner. Its progress is taken over from
// `from` (a changed program: the in-memory state already counts an accept
// that is still being journaled) or, when from is nil, restored from the
// journal. Called with e.mu held.
func (e *Engine) newRunner(ctx context.Context, accountID string, cfg config.Program, from *Program) (*runner, error) {
	p := NewProgram(accountID, cfg)
	sl := e.slots[cfg.Name]
	if sl == nil {
		sl = new(slot)
		e.slots[cfg.Name] = sl
	}
	if from != nil {
		p.adopt(from)
	} else {
		as, err := e.d.Journal.Accepts(ctx, journal.AcceptFilter{Program: cfg.Name})
		if err != nil {
			return nil, err
		}
		p.Restore(as)
		sl.ok.seed(as)
	}
	sl.prog.Store(p)
	r := &runner{
		name:      cfg.Name,
		cfg:       cfg,
		prog:      p,
		slot:      sl,
		inFlight:  &sl.inFlight,
		req:       quotes.RequestFor(accountID, cfg),
		sold:      cfg.Base,
		decisions: map[string]prometheus.Counter{},
		accepts:   map[string]prometheus.Counter{},
		price:     e.m.QuotePrice.WithLabelValues(cfg.Name),
		latency:   e.m.DecisionLatency.WithLabelValues(cfg.Name),
		validity:  e.m.AcceptRemainingValidity.WithLabelValues(cfg.Name),
		executed:  e.m.ExecutedBase.WithLabelValues(cfg.Name),
	}
	if cfg.Side == config.SideBuy {
		r.sold = cfg.Quote
	}
	for _, o := range Outcomes {
		r.decisions[o] = e.m.QuoteDecisions.WithLabelValues(cfg.Name, o)
	}
	for _, res := range []string{journal.AcceptOK, journal.AcceptRejected, journal.AcceptError, journal.AcceptUnknown} {
		r.accepts[res] = e.m.Accepts.WithLabelValues(cfg.Name, res)
	}
	r.stream = quotes.NewStream(r.req, func(ev *quotes.Event) { e.handle(r, ev) }, e.d.StreamOptions)
	e.meterProgram(r)
	return r, nil
}

// handle decides one frame, on the stream's goroutine.
func (e *Engine) handle(r *runner, ev *quotes.Event) {
	e.deciding.RLock()
	defer e.deciding.RUnlock()
	if e.stopping.Load() || r.stopped.Load() {
		return
	}
	now := e.now()
	env := e.env(r)
	d := r.prog.Decide(ev.Quote, ev.Err, env, now)
	if d.Outcome == OutcomeAccepted && !r.inFlight.CompareAndSwap(false, true) {
		// Cannot happen while this goroutine is the only one setting the
		// flag; kept so that two accepts can never be in flight.
		d = Decision{OutcomeInFlight, "an accept of this program is in flight"}
	}
	r.decisions[d.Outcome].Inc()
	if e.d.Recorder != nil {
		// Recorded at the decision's own clock reading, microseconds after
		// the frame was read, so that replay decides at exactly the same
		// instant and reproduces every time-dependent check.
		e.d.Recorder(r.name, ev.Frame, now, env, d.Outcome)
	}
	var base, quote decimal.Decimal
	valid := ev.Err == nil && ev.Quote != nil
	if valid {
		base, quote = r.prog.Quantities(ev.Quote)
		if b := metrics.Value(base); b > 0 {
			r.price.Set(metrics.Value(quote) / b) // gauge only
		}
	}
	r.mu.Lock()
	if valid {
		r.lastAt, r.lastBase, r.lastQuote = ev.ReceivedAt, base, quote
	}
	r.last = d
	r.mu.Unlock()

	switch d.Outcome {
	case OutcomeAccepted:
		r.prog.Commit(ev.Quote, now)
		a := journal.Accept{
			Program:      r.name,
			QuoteID:      ev.Quote.QuoteID,
			RawQuote:     bytes.Clone(ev.Quote.Raw),
			BaseAsset:    r.cfg.Base,
			QuoteAsset:   r.cfg.Quote,
			Side:         r.cfg.Side,
			BaseQty:      base,
			QuoteQty:     quote,
			ExpiryMicros: ev.Quote.ExpiryMicros,
		}
		hold := e.bal.hold(r.sold, r.soldQty(base, quote))
		e.accepts.Add(1)
		go e.accept(r, a, now, ev.ReceivedAt, hold)
	case OutcomeDryRun:
		r.prog.CommitDryRun(now)
		r.latency.Observe(e.now().Sub(ev.ReceivedAt).Seconds())
	default:
		r.latency.Observe(e.now().Sub(ev.ReceivedAt).Seconds())
	}
}

func (r *runner) soldQty(base, quote decimal.Decimal) decimal.Decimal {
	if r.cfg.Side == config.SideBuy {
		return quote
	}
	return base
}

// env is the outside state of r's next decision.
func (e *Engine) env(r *runner) Env {
	env := Env{GateOpen: true, DryRun: e.policy.Load().DryRun, InFlight: r.inFlight.Load()}
	if e.d.Pause != nil {
		env.Paused = e.d.Pause.Paused()
	}
	if e.d.Gate != nil {
		env.GateOpen, env.GateReason = e.d.Gate.Open()
	}
	env.Balance, env.BalanceKnown = e.bal.get(r.sold)
	return env
}

// accept is the accept path of one decided quote, on its own goroutine so
// the stream keeps reading: journal (pending) → send the raw quote → journal
// the result. The in-flight flag is held from the decision until it returns.
func (e *Engine) accept(r *runner, a journal.Accept, decidedAt, receivedAt time.Time, hold uint64) {
	defer e.accepts.Done()
	defer r.inFlight.Store(false)
	// The progress gauge follows once the accept is settled (or released),
	// never before the send: nothing but journaling is on that path.
	defer e.meterExecuted(r)
	log := e.log.With(zap.String("program", r.name), zap.String("quote_id", a.QuoteID))
	release := func() {
		r.slot.prog.Load().Release(a.BaseQty, a.QuoteQty, decidedAt)
		e.bal.drop(hold)
	}
	jctx := context.WithoutCancel(e.acceptCtx)
	a.SentAt = e.now()
	id, err := e.d.Journal.InsertAccept(jctx, a)
	if err != nil {
		// Not journaled, so not sent: nothing happened.
		log.Error("accept not sent: journal failed", zap.Error(err))
		release()
		return
	}
	crashpoint.Hit("accept-after-journal")
	rec := &acceptRec{id: id, quoteID: a.QuoteID}
	r.mu.Lock()
	r.current = rec
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.current == rec {
			r.current = nil
		}
		r.mu.Unlock()
	}()
	if e.stopping.Load() {
		if rec.resolved.CompareAndSwap(false, true) {
			// Known not sent: an error result, and not counted in
			// accepts_total, which counts accepts sent.
			if err := e.d.Journal.SetAcceptResult(jctx, id, journal.AcceptError, "not sent: shutting down", e.now()); err != nil {
				log.Error("journal accept result", zap.Error(err))
			}
			release()
		}
		return
	}
	if remainingNanos(a.ExpiryMicros, e.now().UnixNano()) <= 0 {
		// The journal write outlived the quote (a stalled disk): the desk
		// would refuse it anyway, and SPEC 7.1 says never send it.
		if rec.resolved.CompareAndSwap(false, true) {
			if err := e.d.Journal.SetAcceptResult(jctx, id, journal.AcceptError, "not sent: the quote expired while it was journaled", e.now()); err != nil {
				log.Error("journal accept result", zap.Error(err))
			}
			release()
			log.Warn("accept not sent: the quote expired while it was journaled", zap.Int64("accept_id", id))
		}
		return
	}
	sentAt := e.now()
	r.validity.Observe(time.Duration(remainingNanos(a.ExpiryMicros, sentAt.UnixNano())).Seconds())
	r.latency.Observe(sentAt.Sub(receivedAt).Seconds())
	log.Info("accepting quote",
		zap.Stringer("base_qty", a.BaseQty), zap.Stringer("quote_qty", a.QuoteQty),
		zap.Int64("accept_id", id), zap.Time("expiry", time.UnixMicro(a.ExpiryMicros)))
	err = e.d.Desk.AcceptQuote(e.acceptCtx, a.RawQuote)
	crashpoint.Hit("accept-after-post")
	result, msg := classify(err)
	if !rec.resolved.CompareAndSwap(false, true) {
		return // Stop gave up waiting and journaled it unknown
	}
	at := e.now()
	if jerr := e.d.Journal.SetAcceptResult(jctx, id, result, msg, at); jerr != nil {
		// Still pending in the journal: the next start reads it as unknown.
		log.Error("journal accept result", zap.String("result", result), zap.Error(jerr))
	}
	r.accepts[result].Inc()
	fields := []zap.Field{zap.String("result", result), zap.Int64("accept_id", id), zap.Duration("took", at.Sub(sentAt))}
	switch result {
	case journal.AcceptOK:
		r.executed.Add(metrics.Value(a.BaseQty))
		e.meterOK(r, a.BaseQty, a.QuoteQty)
		e.bal.settle(hold, at)
		log.Info("quote accepted", fields...)
	case journal.AcceptUnknown:
		// Counted as executed until reconciliation settles it; never re-sent.
		e.bal.settle(hold, at)
		log.Warn("accept outcome unknown; reconciliation settles it", append(fields, zap.String("error", msg))...)
	default:
		release()
		log.Warn("accept not executed", append(fields, zap.String("message", msg))...)
	}
}

// classify maps an AcceptQuote error to a journal result and message.
func classify(err error) (result, msg string) {
	if err == nil {
		return journal.AcceptOK, ""
	}
	var apiErr *astra.APIError
	switch {
	case errors.Is(err, astra.ErrUnknownOutcome),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return journal.AcceptUnknown, err.Error()
	case errors.As(err, &apiErr):
		if apiErr.Message != "" {
			return journal.AcceptRejected, apiErr.Message
		}
		return journal.AcceptRejected, apiErr.Error()
	}
	return journal.AcceptError, err.Error()
}

// Stop stops deciding at once, stops the streams, and waits for accepts in
// flight until ctx is done; any still unanswered then is journaled unknown.
// Safe to call twice.
func (e *Engine) Stop(ctx context.Context) error {
	e.stopping.Store(true)
	// Wait out a decision under way: after this no accept is launched.
	e.deciding.Lock()
	e.deciding.Unlock() //nolint:staticcheck // an empty critical section is the point
	e.mu.Lock()
	if e.state != 1 {
		e.state = 2
		e.mu.Unlock()
		return nil
	}
	e.state = 2
	runners := make([]*runner, 0, len(e.runners))
	for _, r := range e.runners {
		r.stopped.Store(true)
		runners = append(runners, r)
	}
	e.cancel()
	e.mu.Unlock()

	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.stream.Stop(ctx); err != nil {
				e.log.Warn("stream did not stop in time", zap.String("program", r.name), zap.Error(err))
			}
		}()
	}
	accepted := make(chan struct{})
	go func() {
		e.accepts.Wait()
		close(accepted)
	}()
	select {
	case <-accepted:
	case <-ctx.Done():
		e.acceptCancel()
		e.abandon(ctx, runners)
	}
	wg.Wait()
	select {
	case <-e.pollDone:
	case <-ctx.Done():
	}
	e.acceptCancel()
	return nil
}

// abandon journals every accept still unanswered as unknown (SPEC 7.10).
func (e *Engine) abandon(ctx context.Context, runners []*runner) {
	wctx := context.WithoutCancel(ctx)
	for _, r := range runners {
		r.mu.Lock()
		rec := r.current
		r.mu.Unlock()
		if rec == nil || !rec.resolved.CompareAndSwap(false, true) {
			continue
		}
		if err := e.d.Journal.SetAcceptResult(wctx, rec.id, journal.AcceptUnknown, "shutdown before the desk answered", e.now()); err != nil {
			e.log.Error("journal accept result", zap.String("program", r.name), zap.Error(err))
		}
		r.accepts[journal.AcceptUnknown].Inc()
		e.log.Warn("accept outcome unknown at shutdown; reconciliation settles it",
			zap.String("program", r.name), zap.String("quote_id", rec.quoteID), zap.Int64("accept_id", rec.id))
	}
}

// Apply switches to a new (validated) policy. Streams are stopped and
// started only for programs that were added, removed or changed; an unchanged
// program keeps its state, a changed one restarts with its progress restored
// from the journal. An accept in flight finishes on its own; the program's
// in-flight flag is shared across the change, so a changed program never has
// two.
func (e *Engine) Apply(p *config.Policy) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.policy.Load()
	e.policy.Store(p)
	if e.state != 1 {
		return
	}
	want := make(map[string]config.Program, len(p.Programs))
	for _, cfg := range p.Programs {
		want[cfg.Name] = cfg
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changed := map[string]*Program{}
	for name, r := range e.runners {
		cfg, ok := want[name]
		if ok && p.AccountID == old.AccountID && reflect.DeepEqual(cfg, r.cfg) {
			continue
		}
		r.stopped.Store(true)
		if err := r.stream.Stop(ctx); err != nil {
			e.log.Warn("stream did not stop in time", zap.String("program", name), zap.Error(err))
		}
		delete(e.runners, name)
		if ok {
			changed[name] = r.prog
		} else {
			e.unmeterProgram(name)
		}
		e.log.Info("program stopped by reload", zap.String("program", name), zap.Bool("changed", ok))
	}
	for _, cfg := range p.Programs {
		if _, ok := e.runners[cfg.Name]; ok {
			continue
		}
		r, err := e.newRunner(ctx, p.AccountID, cfg, changed[cfg.Name])
		if err != nil {
			e.log.Error("program not started after reload", zap.String("program", cfg.Name), zap.Error(err))
			continue
		}
		if err := r.stream.Start(ctx); err != nil {
			e.log.Error("program not started after reload", zap.String("program", cfg.Name), zap.Error(err))
			continue
		}
		e.runners[cfg.Name] = r
		e.log.Info("program started by reload", zap.String("program", cfg.Name))
	}
}

// Ready reports whether the first balance fetch has succeeded.
func (e *Engine) Ready() bool { return e.ready.Load() }

// Balance is the last polled balance of asset less what accepts since have
// sold (or may have: in flight and unknown ones count). ok is false before
// the first successful poll.
func (e *Engine) Balance(asset string) (decimal.Decimal, bool) { return e.bal.get(asset) }

// Withdrawing tells the engine that qty of asset is about to leave the
// account by a withdrawal request. The reserve check counts it as gone from
// now on; the returned func, called when the POST has returned (whatever its
// outcome), starts the wait for a balance poll that began after that moment
// and so shows the debit. Sells decided meanwhile cannot take the balance
// below reserve on a stale figure.
func (e *Engine) Withdrawing(asset string, qty decimal.Decimal) (sent func()) {
	id := e.bal.hold(asset, qty)
	return func() { e.bal.settle(id, e.now()) }
}

// pollBalances fetches the balances now and every BalanceEvery.
// firstBalanceWait bounds how long Start waits for the first balance fetch
// before opening the streams: long enough for a healthy desk, short enough
// that a slow one does not hold up the start.
const firstBalanceWait = 2 * time.Second

// pollBalances fetches balances every BalanceEvery; first is closed after the
// first successful fetch.
func (e *Engine) pollBalances(ctx context.Context, first chan struct{}) {
	defer close(e.pollDone)
	t := time.NewTicker(e.d.BalanceEvery)
	defer t.Stop()
	failures := 0
	for {
		start := e.now()
		bs, err := e.d.Desk.Balances(ctx)
		switch {
		case err == nil:
			e.bal.install(bs, start)
			if !e.ready.Swap(true) {
				e.log.Info("first balance fetch done", zap.Int("assets", len(bs)))
				close(first)
			}
			failures = 0
		case ctx.Err() != nil:
			return
		default:
			failures++
			// A failure now and then is normal; say so once per streak and
			// then every 12th (once a minute at the default period).
			if failures == 1 || failures%12 == 0 {
				e.log.Warn("balance fetch failed", zap.Int("consecutive", failures), zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ProgramStatus is one program in /status.
type ProgramStatus struct {
	Name            string     `json:"name"`
	StreamUp        bool       `json:"stream_up"`
	LastQuotePrice  string     `json:"last_quote_price,omitempty"`
	LastQuoteAt     *time.Time `json:"last_quote_at,omitempty"`
	LastOutcome     string     `json:"last_outcome,omitempty"`
	LastReason      string     `json:"last_reason,omitempty"`
	Executed        string     `json:"executed"`
	RemainingTarget string     `json:"remaining_target,omitempty"` // absent when the program has no target
	DailyNotional   string     `json:"daily_notional"`
	InFlight        bool       `json:"in_flight"`
	DryRun          bool       `json:"dry_run"`
	// The policy's side of the comparison, for the console: what the
	// program trades, its limit, target and cap, and what it achieved.
	Side             string `json:"side"`
	Base             string `json:"base"`
	Quote            string `json:"quote"`
	LimitPrice       string `json:"limit_price"`
	Target           string `json:"target,omitempty"`             // absent without a target
	MaxDailyNotional string `json:"max_daily_notional,omitempty"` // absent without a cap
	AveragePrice     string `json:"average_price,omitempty"`      // of ok accepts; absent before the first
}

// statusPricePlaces is the precision of the price shown in /status: the
// price is a display value there, never used to decide.
const statusPricePlaces = 8

// Status is every program's state, in policy order.
func (e *Engine) Status() []ProgramStatus {
	pol := e.policy.Load()
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	out := make([]ProgramStatus, 0, len(pol.Programs))
	for _, cfg := range pol.Programs {
		r := e.runners[cfg.Name]
		if r == nil {
			continue
		}
		pr := r.prog.Progress(now)
		st := ProgramStatus{
			Name:          r.name,
			StreamUp:      r.stream.Status().Up,
			Executed:      pr.Executed.String(),
			DailyNotional: pr.DailyNotional.String(),
			InFlight:      r.inFlight.Load(),
			DryRun:        pol.DryRun || r.cfg.DryRun,
			Side:          r.cfg.Side,
			Base:          r.cfg.Base,
			Quote:         r.cfg.Quote,
			LimitPrice:    r.cfg.LimitPrice.String(),
		}
		if !r.cfg.Target.IsZero() {
			st.RemainingTarget = decimal.Max(r.cfg.Target.Sub(pr.Executed), decimal.Zero).String()
			st.Target = r.cfg.Target.String()
		}
		if !r.cfg.MaxDailyNotional.IsZero() {
			st.MaxDailyNotional = r.cfg.MaxDailyNotional.String()
		}
		if avg, ok := r.slot.ok.average(); ok {
			st.AveragePrice = avg.String()
		}
		r.mu.Lock()
		if !r.lastAt.IsZero() {
			at := r.lastAt
			st.LastQuoteAt = &at
			st.LastQuotePrice = r.lastQuote.DivRound(r.lastBase, statusPricePlaces).String()
		}
		st.LastOutcome, st.LastReason = r.last.Outcome, r.last.Reason
		r.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// balances is the polled balance per asset, less holds: the amounts sold by
// accepts in flight, and by accepts settled ok or unknown after the poll
// started (the poll may not show them yet). Bought amounts are not added
// until a poll shows them: the reserve check may only ever see too little.
type balances struct {
	gauge *prometheus.GaugeVec

	mu     sync.RWMutex
	known  bool
	polled map[string]decimal.Decimal
	eff    map[string]decimal.Decimal // polled − holds
	holds  map[uint64]*balanceHold
	seq    uint64
}

type balanceHold struct {
	asset   string
	qty     decimal.Decimal
	settled time.Time // zero while in flight
}

func (b *balances) init(m *metrics.Metrics) {
	b.gauge = m.Balance
	b.holds = map[uint64]*balanceHold{}
	b.polled = map[string]decimal.Decimal{}
	b.eff = map[string]decimal.Decimal{}
}

func (b *balances) get(asset string) (decimal.Decimal, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if !b.known {
		return decimal.Zero, false
	}
	// An asset the desk does not list is a known zero.
	return b.eff[asset], true
}

func (b *balances) hold(asset string, qty decimal.Decimal) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	b.holds[b.seq] = &balanceHold{asset: asset, qty: qty}
	// Incremental, not recompute(): the decision path takes a hold per
	// accept, and holds settled since the last poll can number thousands.
	b.eff[asset] = b.eff[asset].Sub(qty)
	return b.seq
}

// settle marks a hold's accept as executed (or maybe executed) at `at`; it
// stays until a poll that started after `at` shows the trade.
func (b *balances) settle(id uint64, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h := b.holds[id]; h != nil {
		h.settled = at
	}
}

// drop removes the hold of an accept that did not execute.
func (b *balances) drop(id uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h := b.holds[id]; h != nil {
		delete(b.holds, id)
		b.eff[h.asset] = b.eff[h.asset].Add(h.qty)
	}
}

// sumBySymbol adds up the balances of each symbol (an asset may be held on
// several networks).
func sumBySymbol(bs []astra.Balance) map[string]decimal.Decimal {
	m := make(map[string]decimal.Decimal, len(bs))
	for _, x := range bs {
		if x.Symbol == "" {
			continue
		}
		m[x.Symbol] = m[x.Symbol].Add(x.Amount)
	}
	return m
}

// install installs a poll that started at start.
func (b *balances) install(bs []astra.Balance, start time.Time) {
	m := sumBySymbol(bs)
	for asset, amt := range m {
		b.gauge.WithLabelValues(asset).Set(metrics.Value(amt))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.known, b.polled = true, m
	for id, h := range b.holds {
		if !h.settled.IsZero() && h.settled.Before(start) {
			delete(b.holds, id)
		}
	}
	b.recompute()
}

// recompute rebuilds eff from the poll and every hold; hold and drop keep it
// up to date between polls.
func (b *balances) recompute() {
	eff := make(map[string]decimal.Decimal, len(b.polled))
	for a, v := range b.polled {
		eff[a] = v
	}
	for _, h := range b.holds {
		eff[h.asset] = eff[h.asset].Sub(h.qty)
	}
	b.eff = eff
}
