// Package trade is the accept path: one quote stream per program, a decision
// per quote (internal/strategy), and for an accept: journal it, send the quote
// back byte for byte, journal the result. It promises at most one accept in
// flight per program, an accept journaled before it is sent and its result
// after, and that an accept whose outcome is unknown is never sent again.
package trade

import (
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
	"treasuryd/internal/balances"
	"treasuryd/internal/config"
	"treasuryd/internal/crashpoint"
	"treasuryd/internal/journal"
	"treasuryd/internal/lifecycle"
	"treasuryd/internal/metrics"
	"treasuryd/internal/quotes"
	"treasuryd/internal/strategy"
)

// Gate is the compliance gate: closed means no accept.
type Gate interface {
	Open() (bool, string)
}

// Pauser reports the kill switch.
type Pauser interface {
	Paused() bool
}

// Journal is what the accept path needs of *journal.Journal.
type Journal interface {
	InsertAccept(ctx context.Context, a journal.Accept) (int64, error)
	SetAcceptResult(ctx context.Context, id int64, result, message string, at time.Time) error
	Accepts(ctx context.Context, f journal.AcceptFilter) ([]journal.Accept, error)
	MarkPendingAcceptsUnknown(ctx context.Context) (int, error)
	AcceptByID(ctx context.Context, id int64) (journal.Accept, error)
}

// Desk is what the accept path needs of *astra.Client.
type Desk interface {
	AcceptQuote(ctx context.Context, rawQuote []byte) error
	DialQuotes(ctx context.Context, r astra.StreamRequest) (*websocket.Conn, error)
}

// Book is what the accept path needs of the balance book (*balances.Book):
// the balance of the asset sold for the reserve check, and a hold on it per
// accept from the decision until a poll shows the trade.
type Book interface {
	Balance(asset string) (decimal.Decimal, bool)
	Hold(asset string, qty decimal.Decimal) balances.Hold
	Settle(h balances.Hold, at time.Time)
	Drop(h balances.Hold)
	First() <-chan struct{}
}

// Deps are the runner's dependencies. Gate and Pause may be nil (always
// open, never paused).
type Deps struct {
	Log     *zap.Logger
	Metrics *metrics.Metrics
	Journal Journal
	Desk    Desk
	Book    Book
	Gate    Gate
	Pause   Pauser
	Now     func() time.Time
	Policy  *config.Policy
	// StreamOptions is the template of every stream's options; Dialer, Log,
	// Metrics and Now are filled in from the fields above when unset.
	StreamOptions quotes.Options
	// Recorder, when set, receives every frame with the outside state its
	// decision saw and the outcome, for replay. It is called on the stream's
	// goroutine and must never block.
	Recorder strategy.RecordFunc
	// MayAct, when set, is asked right before each POST, after the accept
	// was journaled: false (a leader that lost or cannot confirm its
	// leadership, SPEC 11) means the accept is not sent.
	MayAct func() bool
	// SettleEvery is how often the journal is read for unknown accepts the
	// reconciliation has settled (defaultSettleEvery when zero).
	SettleEvery time.Duration
}

// firstBalanceWait bounds how long Start waits for the book's first balance
// fetch before opening the streams: long enough for a healthy desk, short
// enough that a slow one does not hold up the start.
const firstBalanceWait = 2 * time.Second

// Runner runs every program of the policy: one quote stream each, a decision
// per quote, and the accept path.
type Runner struct {
	d   Deps
	log *zap.Logger
	m   *metrics.Metrics
	now func() time.Time

	policy   atomic.Pointer[config.Policy]
	stopping atomic.Bool // set first thing in Stop: handlers return without deciding
	// deciding is held (read) by a handler from its stopping check until
	// its accept, if any, is launched; Stop takes it (write) once to know
	// no decision is under way.
	deciding sync.RWMutex
	// accepts owns the accept goroutines. Its context is the context of
	// every accept POST: cancelled only when Stop runs out of time.
	accepts *lifecycle.Group
	// idle hands an accept to a goroutine of accepts that finished one and
	// waits for the next (work), so that an accept runs on a stack already
	// grown to what the journal's SQLite needs rather than on a new 8 KB one
	// grown by copying each time. There are at most as many of them as
	// accepts ever in flight at once, one per program; quit (closed by Stop)
	// and workerIdle end them.
	idle     chan acceptJob
	quit     chan struct{}
	quitOnce sync.Once
	// settleDone is closed when settleLoop, started by Start, has ended.
	settleDone chan struct{}

	mu       sync.Mutex // guards the fields below
	state    int        // 0 new, 1 started, 2 stopped
	programs map[string]*program
	slots    map[string]*slot // per program name; survives a reload of the program
}

// slot is what outlives a reload of a program: its in-flight flag (so a
// changed program never has two accepts in flight) and its current decision
// state (so an accept that finishes after the change releases its progress
// where it is now counted).
type slot struct {
	inFlight atomic.Bool
	prog     atomic.Pointer[strategy.Program]
	ok       okTotals // ok accepts, for the average price gauge and /status
	unknown  unknowns // unknown accepts, counted as executed until settled
}

// program is one program's stream and decision state.
type program struct {
	name     string
	cfg      config.Program
	prog     *strategy.Program
	slot     *slot
	inFlight *atomic.Bool // &slot.inFlight
	req      quotes.Request
	stream   *quotes.Stream
	sold     string // the asset the program sells
	okSeed   *okSum // ok accepts read from the journal by newProgram; nil for a changed program (keeps its slot's)
	// unknownSeed are the unknown accepts newProgram read with okSeed.
	unknownSeed map[int64]unknownAccept
	log         *zap.Logger
	stopped     atomic.Bool

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
	last      strategy.Decision
	current   *acceptRec // the accept in flight, once journaled
}

// acceptRec is one accept in flight. resolved makes sure exactly one of the
// accept goroutine and Stop records its result.
type acceptRec struct {
	id       int64
	quoteID  string
	resolved atomic.Bool
	// written is closed once whoever resolved the accept (its goroutine or
	// Stop's abandon) has journaled the result.
	written chan struct{}
}

// acceptJob is one decided accept, run by a worker of the accepts group.
type acceptJob struct {
	r          *program
	a          journal.Accept
	decidedAt  time.Time
	receivedAt time.Time
	hold       balances.Hold
}

// workerIdle is how long an accept goroutine waits for the next accept
// before it ends: longer than the gap between a busy program's quotes, so
// that under load accepts reuse goroutines, short enough that the
// goroutines of programs a reload removed do not linger.
const workerIdle = 10 * time.Second

// resultWriteWait bounds how long Stop, out of time, waits for a result
// the accept's own goroutine is journaling at that moment (it won the race
// to resolve it): one journal commit, microseconds to milliseconds, rather
// than leave the accept pending for the next start to read as unknown.
const resultWriteWait = 250 * time.Millisecond

// New builds a runner. It does no I/O.
func New(d Deps) *Runner {
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New("")
	}
	if d.Now == nil {
		d.Now = time.Now
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
	if d.SettleEvery <= 0 {
		d.SettleEvery = defaultSettleEvery
	}
	e := &Runner{
		d:        d,
		log:      d.Log,
		m:        d.Metrics,
		now:      d.Now,
		accepts:  lifecycle.New("trade: accepts"),
		idle:     make(chan acceptJob),
		quit:     make(chan struct{}),
		programs: map[string]*program{},
		slots:    map[string]*slot{},
	}
	e.policy.Store(d.Policy)
	return e
}

// Start settles the journal's pending accepts as unknown, restores every
// program's progress from the journal, waits a bounded moment for the
// book's first balance fetch, opens one quote stream per program, and
// returns. Nothing is decided before the journal has been read.
func (e *Runner) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != 0 {
		return errors.New("trade: runner already started")
	}
	if e.d.Journal == nil || e.d.Desk == nil || e.d.Book == nil {
		return errors.New("trade: runner needs a journal, a desk and a balance book")
	}
	n, err := e.d.Journal.MarkPendingAcceptsUnknown(ctx)
	if err != nil {
		return err
	}
	if n > 0 {
		e.log.Warn("accepts pending at start are now unknown; reconciliation settles them", zap.Int("accepts", n))
	}
	pol := e.policy.Load()
	programs := make([]*program, 0, len(pol.Programs))
	for _, cfg := range pol.Programs {
		p, err := e.newProgram(ctx, pol.AccountID, cfg)
		if err != nil {
			return err
		}
		programs = append(programs, p)
	}
	if err := e.accepts.Start(); err != nil {
		return err
	}
	e.state = 1
	e.settleDone = make(chan struct{})
	go e.settleLoop(context.WithoutCancel(ctx))
	// The first quotes arrive as soon as the streams open: give the first
	// balance fetch a bounded moment, so they are decided on a known
	// balance rather than refused for reserve. A slow desk only delays
	// this; the book keeps polling in the background.
	wait := time.NewTimer(firstBalanceWait)
	select {
	case <-e.d.Book.First():
	case <-wait.C:
		e.log.Warn("first balance fetch still running; streams open anyway", zap.Duration("waited", firstBalanceWait))
	case <-ctx.Done():
	}
	wait.Stop()
	for _, p := range programs {
		e.install(p, nil)
		if err := p.stream.Start(ctx); err != nil {
			return err
		}
	}
	e.log.Info("trading started", zap.Int("programs", len(programs)))
	return nil
}

// newProgram builds a program with its progress restored from the journal.
// It does not start its stream nor make it current.
func (e *Runner) newProgram(ctx context.Context, accountID string, cfg config.Program) (*program, error) {
	as, err := e.d.Journal.Accepts(ctx, journal.AcceptFilter{Program: cfg.Name})
	if err != nil {
		return nil, err
	}
	past := make([]strategy.PastAccept, len(as))
	for i, a := range as {
		past[i] = strategy.PastAccept{QuoteID: a.QuoteID, BaseQty: a.BaseQty, QuoteQty: a.QuoteQty,
			SentAt: a.SentAt, ExpiryMicros: a.ExpiryMicros, Counts: a.Counts()}
	}
	p := e.buildProgram(accountID, cfg)
	p.prog.Restore(past)
	p.okSeed = okSums(as)
	p.unknownSeed = unknownSeed(as)
	return p, nil
}

// buildProgram builds a program's stream, decision state and metric
// handles, with no progress. It does no I/O.
func (e *Runner) buildProgram(accountID string, cfg config.Program) *program {
	p := &program{
		name:      cfg.Name,
		cfg:       cfg,
		prog:      strategy.NewProgram(accountID, cfg),
		req:       quotes.RequestFor(accountID, cfg),
		sold:      cfg.Base,
		log:       e.log.With(zap.String("program", cfg.Name)),
		decisions: map[string]prometheus.Counter{},
		accepts:   map[string]prometheus.Counter{},
		price:     e.m.QuotePrice.WithLabelValues(cfg.Name),
		latency:   e.m.DecisionLatency.WithLabelValues(cfg.Name),
		validity:  e.m.AcceptRemainingValidity.WithLabelValues(cfg.Name),
		executed:  e.m.ExecutedBase.WithLabelValues(cfg.Name),
	}
	if cfg.Side == config.SideBuy {
		p.sold = cfg.Quote
	}
	for _, o := range strategy.Outcomes {
		p.decisions[o] = e.m.QuoteDecisions.WithLabelValues(cfg.Name, o)
	}
	for _, res := range metrics.AcceptResults {
		p.accepts[res] = e.m.Accepts.WithLabelValues(cfg.Name, res)
	}
	p.stream = quotes.NewStream(p.req, func(ev *quotes.Event) { e.handle(p, ev) }, e.d.StreamOptions)
	return p
}

// install makes p the current program of its name: it takes over the
// progress of from (a changed program) and shares the slot of the name.
// Called with e.mu held, before p's stream starts.
func (e *Runner) install(p *program, from *program) {
	if from != nil {
		// After from's stream stopped: its state no longer changes but for
		// an accept still in flight, which releases through the slot.
		p.prog.Adopt(from.prog)
	}
	sl := e.slots[p.name]
	if sl == nil {
		sl = new(slot)
		e.slots[p.name] = sl
	}
	p.slot, p.inFlight = sl, &sl.inFlight
	sl.prog.Store(p.prog)
	if p.okSeed != nil {
		sl.ok.seed(p.okSeed) // restored from the journal: a new program
		sl.unknown.seed(p.unknownSeed)
	}
	e.programs[p.name] = p
	e.meterProgram(p)
}

// handle decides one frame, on the stream's goroutine.
func (e *Runner) handle(r *program, ev *quotes.Event) {
	e.deciding.RLock()
	defer e.deciding.RUnlock()
	if e.stopping.Load() || r.stopped.Load() {
		return
	}
	now := e.now()
	env := e.env(r)
	d := r.prog.Decide(ev.Quote, ev.Err, env, now)
	if d.Outcome == strategy.OutcomeAccepted && !r.inFlight.CompareAndSwap(false, true) {
		// Cannot happen while this goroutine is the only one setting the
		// flag; kept so that two accepts can never be in flight.
		d = strategy.Decision{Outcome: strategy.OutcomeInFlight, Reason: "an accept of this program is in flight"}
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
	}
	if d.Outcome == strategy.OutcomeAccepted {
		// The accept first: everything else waits until it is on its way.
		r.prog.Commit(ev.Quote, now)
		e.launch(r, ev, base, quote, now)
	}
	if valid {
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
	case strategy.OutcomeAccepted:
	case strategy.OutcomeDryRun:
		r.prog.CommitDryRun(now)
		r.latency.Observe(e.now().Sub(ev.ReceivedAt).Seconds())
	default:
		r.latency.Observe(e.now().Sub(ev.ReceivedAt).Seconds())
	}
}

// launch starts the accept of a decided quote on its own goroutine, so the
// stream keeps reading. The in-flight flag is set; the accept clears it.
func (e *Runner) launch(r *program, ev *quotes.Event, base, quote decimal.Decimal, now time.Time) {
	a := journal.Accept{
		Program: r.name,
		QuoteID: ev.Quote.QuoteID,
		// Raw aliases the frame, a fresh buffer the stream hands over to
		// this handler and never touches again (quotes.Event): no copy.
		RawQuote:     ev.Quote.Raw,
		BaseAsset:    r.cfg.Base,
		QuoteAsset:   r.cfg.Quote,
		Side:         r.cfg.Side,
		BaseQty:      base,
		QuoteQty:     quote,
		ExpiryMicros: ev.Quote.ExpiryMicros,
	}
	job := acceptJob{r: r, a: a, decidedAt: now, receivedAt: ev.ReceivedAt, hold: e.d.Book.Hold(r.sold, r.soldQty(base, quote))}
	select {
	case e.idle <- job: // a worker waiting for the next accept took it
		return
	default:
	}
	if !e.accepts.Go(func(ctx context.Context) { e.work(ctx, job) }) {
		// Stopped between the decision and here: nothing was journaled.
		r.slot.prog.Load().Release(base, quote, now)
		e.d.Book.Drop(job.hold)
		r.inFlight.Store(false)
	}
}

// work runs job, then each accept handed to it while it waits (idle), until
// it has waited workerIdle for one or Stop closed quit. It runs on a
// goroutine of the accepts group.
func (e *Runner) work(ctx context.Context, job acceptJob) {
	wait := time.NewTimer(workerIdle)
	defer wait.Stop()
	for {
		e.accept(ctx, job.r, job.a, job.decidedAt, job.receivedAt, job.hold)
		wait.Reset(workerIdle)
		select {
		case job = <-e.idle:
		case <-e.quit:
			return
		case <-wait.C:
			return
		}
	}
}

func (r *program) soldQty(base, quote decimal.Decimal) decimal.Decimal {
	if r.cfg.Side == config.SideBuy {
		return quote
	}
	return base
}

// env is the outside state of r's next decision.
func (e *Runner) env(r *program) strategy.Env {
	env := strategy.Env{GateOpen: true, DryRun: e.policy.Load().DryRun, InFlight: r.inFlight.Load()}
	if e.d.Pause != nil {
		env.Paused = e.d.Pause.Paused()
	}
	if e.d.Gate != nil {
		env.GateOpen, env.GateReason = e.d.Gate.Open()
	}
	env.Balance, env.BalanceKnown = e.d.Book.Balance(r.sold)
	return env
}

// accept is the accept path of one decided quote: journal (pending) → send
// the raw quote → journal the result. The in-flight flag is held from the
// decision until it returns. ctx (the accepts group's) ends only when Stop
// runs out of time. Nothing before the send logs or waits on anything but
// the journal.
func (e *Runner) accept(ctx context.Context, r *program, a journal.Accept, decidedAt, receivedAt time.Time, hold balances.Hold) {
	defer r.inFlight.Store(false)
	// The progress gauge follows once the accept is settled (or released),
	// never before the send: nothing but journaling is on that path.
	defer e.meterExecuted(r)
	jctx := context.WithoutCancel(ctx)
	a.SentAt = e.now()
	id, err := e.d.Journal.InsertAccept(jctx, a)
	if err != nil {
		// Not journaled, so not sent: nothing happened.
		e.release(r, a, decidedAt, hold)
		r.log.Error("accept not sent: journal failed", zap.String("quote_id", a.QuoteID), zap.Error(err))
		return
	}
	crashpoint.Hit("accept-after-journal")
	rec := &acceptRec{id: id, quoteID: a.QuoteID, written: make(chan struct{})}
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
		// Known not sent: an error result, and not counted in
		// accepts_total, which counts accepts sent.
		e.notSent(jctx, r, a, rec, decidedAt, hold, "not sent: shutting down")
		return
	}
	if e.d.MayAct != nil && !e.d.MayAct() {
		// Journaled under a term this process may no longer act under: a
		// leader that froze between the journal and the POST never sends.
		if e.notSent(jctx, r, a, rec, decidedAt, hold, "not sent: leadership not confirmed") {
			r.log.Warn("accept not sent: leadership not confirmed",
				zap.String("quote_id", a.QuoteID), zap.Int64("accept_id", id))
		}
		return
	}
	sentAt := e.now()
	left := strategy.Remaining(a.ExpiryMicros, sentAt)
	if left <= 0 {
		// The journal write outlived the quote (a stalled disk): the desk
		// would refuse it anyway, and SPEC 7.1 says never send it.
		if e.notSent(jctx, r, a, rec, decidedAt, hold, "not sent: the quote expired while it was journaled") {
			r.log.Warn("accept not sent: the quote expired while it was journaled",
				zap.String("quote_id", a.QuoteID), zap.Int64("accept_id", id))
		}
		return
	}
	err = e.d.Desk.AcceptQuote(ctx, a.RawQuote)
	crashpoint.Hit("accept-after-post")
	r.validity.Observe(left.Seconds())
	r.latency.Observe(sentAt.Sub(receivedAt).Seconds())
	result, msg := classify(err)
	if !rec.resolved.CompareAndSwap(false, true) {
		return // Stop gave up waiting and journaled it unknown
	}
	at := e.now()
	if jerr := e.d.Journal.SetAcceptResult(jctx, id, result, msg, at); jerr != nil {
		// Still pending in the journal: the next start reads it as unknown.
		r.log.Error("journal accept result", zap.String("quote_id", a.QuoteID), zap.String("result", result), zap.Error(jerr))
	}
	close(rec.written)
	r.accepts[result].Inc()
	fields := []zap.Field{zap.String("quote_id", a.QuoteID), zap.String("result", result), zap.Int64("accept_id", id),
		zap.Stringer("base_qty", a.BaseQty), zap.Stringer("quote_qty", a.QuoteQty), zap.Duration("took", at.Sub(sentAt))}
	switch result {
	case journal.AcceptOK:
		r.executed.Add(metrics.Value(a.BaseQty))
		e.meterOK(r, a.BaseQty, a.QuoteQty)
		e.d.Book.Settle(hold, at)
		r.log.Info("quote accepted", fields...)
	case journal.AcceptUnknown:
		// Counted as executed until reconciliation settles it; never re-sent.
		r.slot.unknown.add(id, unknownAccept{base: a.BaseQty, quote: a.QuoteQty, countedAt: decidedAt})
		e.d.Book.Settle(hold, at)
		r.log.Warn("accept outcome unknown; reconciliation settles it", append(fields, zap.String("error", msg))...)
	default:
		e.release(r, a, decidedAt, hold)
		r.log.Warn("accept not executed", append(fields, zap.String("message", msg))...)
	}
}

// release takes back what an accept that did not execute counted: its
// progress (where the program is counted now) and its balance hold.
func (e *Runner) release(r *program, a journal.Accept, decidedAt time.Time, hold balances.Hold) {
	r.slot.prog.Load().Release(a.BaseQty, a.QuoteQty, decidedAt)
	e.d.Book.Drop(hold)
}

// notSent journals a journaled accept that is not sent as an error and
// releases it, unless Stop resolved it first. It reports whether it did.
func (e *Runner) notSent(ctx context.Context, r *program, a journal.Accept, rec *acceptRec, decidedAt time.Time, hold balances.Hold, why string) bool {
	if !rec.resolved.CompareAndSwap(false, true) {
		return false
	}
	if err := e.d.Journal.SetAcceptResult(ctx, rec.id, journal.AcceptError, why, e.now()); err != nil {
		r.log.Error("journal accept result", zap.String("quote_id", a.QuoteID), zap.Error(err))
	}
	close(rec.written)
	e.release(r, a, decidedAt, hold)
	return true
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
func (e *Runner) Stop(ctx context.Context) error {
	e.stopping.Store(true)
	// Wait out a decision under way: after this no accept is launched.
	e.deciding.Lock()
	e.deciding.Unlock() //nolint:staticcheck // an empty critical section is the point
	// So accept goroutines waiting for the next accept end, and those
	// running one end after it.
	e.quitOnce.Do(func() { close(e.quit) })
	e.mu.Lock()
	if e.state != 1 {
		e.state = 2
		e.mu.Unlock()
		return nil
	}
	e.state = 2
	settled := e.settleDone
	programs := make([]*program, 0, len(e.programs))
	for _, r := range e.programs {
		r.stopped.Store(true)
		programs = append(programs, r)
	}
	e.mu.Unlock()

	var wg sync.WaitGroup
	for _, r := range programs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.stream.Stop(ctx); err != nil {
				e.log.Warn("stream did not stop in time", zap.String("program", r.name), zap.Error(err))
			}
		}()
	}
	if e.accepts.Wait(ctx) != nil {
		// Out of time: cancel the POSTs still waiting (ctx is done, so Stop
		// returns at once) and journal them unknown (SPEC 7.10).
		_ = e.accepts.Stop(ctx)
		e.abandon(ctx, programs)
	}
	wg.Wait()
	_ = e.accepts.Stop(ctx)
	select {
	case <-settled: // quit is closed: it ends after the read under way, if any
	case <-ctx.Done():
	}
	return nil
}

// abandon journals every accept still unanswered as unknown (SPEC 7.10).
func (e *Runner) abandon(ctx context.Context, programs []*program) {
	wctx := context.WithoutCancel(ctx)
	for _, r := range programs {
		r.mu.Lock()
		rec := r.current
		r.mu.Unlock()
		if rec == nil {
			continue
		}
		if !rec.resolved.CompareAndSwap(false, true) {
			// Its goroutine has the answer and is journaling it.
			wait := time.NewTimer(resultWriteWait)
			select {
			case <-rec.written:
			case <-wait.C:
				e.log.Warn("accept result still being journaled at shutdown; the next start reads it as unknown",
					zap.String("program", r.name), zap.Int64("accept_id", rec.id))
			}
			wait.Stop()
			continue
		}
		if err := e.d.Journal.SetAcceptResult(wctx, rec.id, journal.AcceptUnknown, "shutdown before the desk answered", e.now()); err != nil {
			e.log.Error("journal accept result", zap.String("program", r.name), zap.Error(err))
		}
		close(rec.written)
		r.accepts[journal.AcceptUnknown].Inc()
		e.log.Warn("accept outcome unknown at shutdown; reconciliation settles it",
			zap.String("program", r.name), zap.String("quote_id", rec.quoteID), zap.Int64("accept_id", rec.id))
	}
}

// prepareTimeout bounds the journal reads a reload makes for new programs.
const prepareTimeout = 10 * time.Second

// Prepare builds what the policy next needs — a program, with its progress
// read from the journal, for every program added — before next becomes
// current, and returns the commit that switches to it. An error leaves
// everything running as it was (the reload is refused). See Apply.
func (e *Runner) Prepare(next *config.Policy) (commit func(), err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.policy.Load()
	if e.state != 1 {
		return func() { e.policy.Store(next) }, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
	defer cancel()
	built := map[string]*program{}
	for _, cfg := range next.Programs {
		cur, ok := e.programs[cfg.Name]
		switch {
		case ok && next.AccountID == old.AccountID && reflect.DeepEqual(cfg, cur.cfg):
			continue // unchanged: keeps running
		case ok:
			// Changed: takes over the running program's progress at commit.
			built[cfg.Name] = e.buildProgram(next.AccountID, cfg)
		default:
			p, err := e.newProgram(ctx, next.AccountID, cfg)
			if err != nil {
				return nil, err
			}
			built[cfg.Name] = p
		}
	}
	return func() { e.commit(old, next, built) }, nil
}

// commit switches to next: streams stop for programs removed or changed and
// start for programs added or changed; an unchanged program keeps its state.
// An accept in flight finishes on its own; the program's in-flight flag is
// shared across the change, so a changed program never has two.
func (e *Runner) commit(old, next *config.Policy, built map[string]*program) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != 1 || e.policy.Load() != old {
		e.policy.Store(next)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
	defer cancel()
	want := make(map[string]bool, len(next.Programs))
	for _, cfg := range next.Programs {
		want[cfg.Name] = true
	}
	replaced := map[string]*program{}
	for name, r := range e.programs {
		if want[name] && built[name] == nil {
			continue
		}
		r.stopped.Store(true)
		if err := r.stream.Stop(ctx); err != nil {
			e.log.Warn("stream did not stop in time", zap.String("program", name), zap.Error(err))
		}
		delete(e.programs, name)
		if want[name] {
			replaced[name] = r
		}
		if !want[name] {
			e.unmeterProgram(name)
		}
		e.log.Info("program stopped by reload", zap.String("program", name), zap.Bool("changed", want[name]))
	}
	e.policy.Store(next)
	for _, cfg := range next.Programs {
		p := built[cfg.Name]
		if p == nil {
			continue
		}
		e.install(p, replaced[cfg.Name])
		if err := p.stream.Start(ctx); err != nil {
			e.log.Error("program not started after reload", zap.String("program", cfg.Name), zap.Error(err))
			continue
		}
		e.log.Info("program started by reload", zap.String("program", cfg.Name))
	}
}

// Apply switches to a new (validated) policy: Prepare, then commit. An
// error preparing leaves the running policy in force and is returned.
func (e *Runner) Apply(p *config.Policy) error {
	commit, err := e.Prepare(p)
	if err != nil {
		return err
	}
	commit()
	return nil
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
func (e *Runner) Status() []ProgramStatus {
	pol := e.policy.Load()
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.now()
	out := make([]ProgramStatus, 0, len(pol.Programs))
	for _, cfg := range pol.Programs {
		r := e.programs[cfg.Name]
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
