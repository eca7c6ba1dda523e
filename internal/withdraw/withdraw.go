// Package withdraw runs the rebalancing rules of SPEC 5.3: on the rebalance
// schedule it sweeps a hot balance above a rule's high-water mark down to its
// keep level, by a withdrawal request to an allowlisted address.
//
// It promises never to pay twice (SPEC 7, invariants 5, 6, 7):
//   - every withdrawal is journaled as an intent, flushed to disk, before its
//     POST, and a rule with an open withdrawal (intent, unknown, submitted)
//     starts nothing new;
//   - a POST whose outcome is unknown is never sent again: it is settled by
//     reading the desk's withdrawal requests, and one that cannot be found is
//     marked unresolved for an operator;
//   - on start, every open intent in the journal is resolved before the
//     schedule runs;
//   - the gate, the pause switch, dry-run and the allowlist of the current
//     policy are checked again immediately before each POST;
//   - max_daily is computed from the journal, so it holds across restarts.
package withdraw

import (
	"context"
	"errors"
	"fmt"
	"github.com/shopspring/decimal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
)

// Gate is the compliance gate as withdrawals see it.
type Gate interface {
	Open() (bool, string)
}

// Pauser is the operator's kill switch.
type Pauser interface {
	Paused() bool
}

// Desk is the part of the Astra client withdrawals use (*astra.Client).
type Desk interface {
	Balances(ctx context.Context) ([]astra.Balance, error)
	// CreateWithdrawal: nil error is success; errors.Is(err,
	// astra.ErrUnknownOutcome) means it may have been created; an
	// *astra.APIError with a 4xx status means refused; any other error means
	// it was not delivered.
	CreateWithdrawal(ctx context.Context, w astra.NewWithdrawal) (string, error)
	// WithdrawalRequests streams the account's requests, newest first, and
	// stops with fn's error when fn returns one.
	WithdrawalRequests(ctx context.Context, fn func(astra.WithdrawalRequest) error) error
}

// Store is the part of the journal withdrawals use (*journal.Journal).
type Store interface {
	InsertWithdrawalIntent(ctx context.Context, w journal.Withdrawal) (int64, error)
	UpdateWithdrawal(ctx context.Context, id int64, state, deskID, deskStatus, errMsg string) error
	// ResolveWithdrawal is UpdateWithdrawal for an operator's answer, which
	// the audit chain records as theirs.
	ResolveWithdrawal(ctx context.Context, id int64, state, deskID, errMsg, by string) error
	Withdrawals(ctx context.Context, f journal.WithdrawalFilter) ([]journal.Withdrawal, error)
	OpenWithdrawals(ctx context.Context) ([]journal.Withdrawal, error)
	WithdrawalByID(ctx context.Context, id int64) (journal.Withdrawal, error)
	MismatchRecorded(ctx context.Context, id int64) (bool, error)
	RecordMismatch(ctx context.Context, id int64, detail string) error
}

// Deps is what a Rebalancer needs.
type Deps struct {
	Log     *zap.Logger
	Metrics *metrics.Metrics
	Desk    Desk
	Journal Store
	Gate    Gate
	Pause   Pauser
	// Halt pauses treasuryd when the desk reports a withdrawal of ours with
	// other details than its intent (withdrawal_mismatch).
	Halt Halter
	// Policy returns the current policy (it changes on reload). When nil,
	// the policy last given to Apply is used.
	Policy func() *config.Policy
	Now    func() time.Time // default time.Now
	// FollowEvery is how often open withdrawals are matched and followed
	// between scheduled runs (default 5s).
	FollowEvery time.Duration
	// MatchGrace is how long an intent whose outcome is unknown may stay
	// unmatched at the desk (counted from when it was journaled) before it
	// is marked unresolved (default 2m).
	MatchGrace time.Duration
	// OnSend, when set, is told of every withdrawal about to be POSTed, so
	// the accept path's reserve check counts the amount as gone at once
	// rather than at its next balance poll; the func it returns is called
	// when the POST has returned.
	OnSend func(asset string, amount decimal.Decimal) (sent func())
	// MayAct, when set, is asked right before each POST, after the intent
	// was journaled: false (a leader that lost or cannot confirm its
	// leadership, SPEC 11) means the withdrawal is not sent. The intent
	// stays open, so whoever leads next matches it at the desk and never
	// pays it twice.
	MayAct func() bool
}

const (
	defaultFollowEvery = 5 * time.Second
	defaultMatchGrace  = 2 * time.Minute
)

// ErrStopped is returned by RunOnce and Start once Stop has been called.
var ErrStopped = errors.New("withdraw: rebalancer stopped")

// Rebalancer runs the rebalance rules on their schedule and follows the
// withdrawals it made. Safe for concurrent use.
type Rebalancer struct {
	log         *zap.Logger
	m           *metrics.Metrics
	desk        Desk
	store       Store
	gate        Gate
	pause       Pauser
	halt        Halter
	policyFn    func() *config.Policy
	applied     atomic.Pointer[config.Policy]
	now         func() time.Time
	followEvery time.Duration
	matchGrace  time.Duration
	onSend      func(asset string, amount decimal.Decimal) (sent func())
	mayAct      func() bool // nil: always

	// work serialises every pass that reads or writes withdrawal state
	// (RunOnce, the follow tick, the start-up resolution): two passes never
	// decide at once, so a rule can never get two intents.
	work sync.Mutex
	// running skips a scheduled run while the previous one still runs.
	running atomic.Bool

	// life bounds every desk call; kill cancels it when Stop's context ends.
	life context.Context
	kill context.CancelFunc

	cmu      sync.Mutex // guards the fields below
	started  bool
	stopping atomic.Bool
	sched    *cron.Cron
	entry    cron.EntryID
	spec     string
	quit     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	st statusBook
}

// New builds a Rebalancer. It does no I/O.
func New(d Deps) *Rebalancer {
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New("")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.FollowEvery <= 0 {
		d.FollowEvery = defaultFollowEvery
	}
	if d.MatchGrace <= 0 {
		d.MatchGrace = defaultMatchGrace
	}
	life, kill := context.WithCancel(context.Background())
	return &Rebalancer{
		log:         d.Log,
		m:           d.Metrics,
		desk:        d.Desk,
		store:       d.Journal,
		gate:        d.Gate,
		pause:       d.Pause,
		halt:        d.Halt,
		policyFn:    d.Policy,
		now:         d.Now,
		followEvery: d.FollowEvery,
		matchGrace:  d.MatchGrace,
		onSend:      d.OnSend,
		mayAct:      d.MayAct,
		life:        life,
		kill:        kill,
		quit:        make(chan struct{}),
		done:        make(chan struct{}),
		st:          statusBook{rules: map[string]RuleStatus{}, gaugeRules: map[string]bool{}},
	}
}

// policy is the policy in force now.
func (r *Rebalancer) policy() *config.Policy {
	if r.policyFn != nil {
		if p := r.policyFn(); p != nil {
			return p
		}
	}
	return r.applied.Load()
}

// Start resolves every open withdrawal of the journal (an intent left by a
// crash is treated as unknown and matched at the desk, never re-sent), then
// schedules the rules on rebalance.schedule and follows open withdrawals
// every FollowEvery. It returns once that is set up. An unreadable journal is
// an error; an unreachable desk is not (open intents stay unknown, block
// their rules, and are matched on a later tick).
func (r *Rebalancer) Start(ctx context.Context) error {
	r.cmu.Lock()
	defer r.cmu.Unlock()
	if r.stopping.Load() {
		return ErrStopped
	}
	if r.started {
		return errors.New("withdraw: rebalancer already started")
	}
	pol := r.policy()
	if pol == nil {
		return errors.New("withdraw: no policy")
	}

	r.work.Lock()
	err := r.startupResolve(ctx)
	r.work.Unlock()
	if err != nil {
		return err
	}

	r.sched = cron.New()
	if err := r.scheduleLocked(pol.Rebalance.Schedule); err != nil {
		return err
	}
	r.sched.Start()
	r.started = true

	r.wg.Add(1)
	go r.followLoop()
	return nil
}

// startupResolve loads the open withdrawals and settles what it can before
// anything new is decided. Called with r.work held.
func (r *Rebalancer) startupResolve(ctx context.Context) error {
	ctx, cancel := r.bind(ctx)
	defer cancel()
	open, err := r.store.OpenWithdrawals(ctx)
	if err != nil {
		return fmt.Errorf("withdraw: load open withdrawals: %w", err)
	}
	if len(open) > 0 {
		r.log.Info("resolving open withdrawals before the schedule starts", zap.Int("open", len(open)))
	}
	if err := r.settle(ctx); err != nil {
		// Unknown intents stay unknown and block their rules; the follow tick
		// retries. Not fatal: nothing can be paid twice from here.
		r.log.Warn("open withdrawals not resolved yet", zap.Error(err))
	}
	if err := r.refresh(ctx); err != nil {
		return fmt.Errorf("withdraw: load withdrawals: %w", err)
	}
	return nil
}

// scheduleLocked (re)places the cron entry for spec. Called with r.cmu held.
func (r *Rebalancer) scheduleLocked(spec string) error {
	if r.sched == nil || spec == r.spec && r.entry != 0 {
		return nil
	}
	var next cron.Schedule
	if spec != "" {
		s, err := cron.ParseStandard(spec)
		if err != nil {
			return fmt.Errorf("withdraw: rebalance.schedule %q: %w", spec, err)
		}
		next = s
	}
	if r.entry != 0 {
		r.sched.Remove(r.entry)
		r.entry = 0
	}
	r.spec = spec
	if next != nil {
		r.entry = r.sched.Schedule(next, cron.FuncJob(r.scheduledRun))
	}
	return nil
}

// scheduledRun is one run fired by the schedule.
func (r *Rebalancer) scheduledRun() {
	if !r.running.CompareAndSwap(false, true) {
		r.log.Debug("rebalance run skipped: the previous one is still running")
		return
	}
	defer r.running.Store(false)
	if err := r.RunOnce(r.life); err != nil && !errors.Is(err, ErrStopped) && r.life.Err() == nil {
		r.log.Warn("rebalance run", zap.Error(err))
	}
}

// followLoop matches unknown withdrawals and follows submitted ones between
// scheduled runs.
func (r *Rebalancer) followLoop() {
	defer r.wg.Done()
	t := time.NewTicker(r.followEvery)
	defer t.Stop()
	for {
		select {
		case <-r.quit:
			return
		case <-t.C:
		}
		if err := r.Follow(r.life); err != nil && r.life.Err() == nil {
			r.log.Warn("follow withdrawals", zap.Error(err))
		}
	}
}

// Follow matches unknown withdrawals and follows submitted ones now, without
// starting anything new. The follow tick calls it; it does nothing when no
// withdrawal is open.
func (r *Rebalancer) Follow(ctx context.Context) error {
	if r.stopping.Load() {
		return ErrStopped
	}
	ctx, cancel := r.bind(ctx)
	defer cancel()
	r.work.Lock()
	defer r.work.Unlock()
	open, err := r.store.OpenWithdrawals(ctx)
	if err != nil {
		return fmt.Errorf("withdraw: load open withdrawals: %w", err)
	}
	if len(open) == 0 {
		return nil
	}
	err = r.settle(ctx)
	return errors.Join(err, r.refresh(context.WithoutCancel(ctx)))
}

// Apply takes a reloaded policy: the schedule is replaced when its spec
// changed. Rules, amounts and the allowlist are read from the current policy
// at each run, so nothing else needs doing.
func (r *Rebalancer) Apply(p *config.Policy) {
	if p == nil {
		return
	}
	r.applied.Store(p)
	r.cmu.Lock()
	defer r.cmu.Unlock()
	if r.stopping.Load() || r.sched == nil || p.Rebalance.Schedule == r.spec {
		return
	}
	old := r.spec
	if err := r.scheduleLocked(p.Rebalance.Schedule); err != nil {
		// A validated policy always parses; keep the running schedule.
		r.log.Error("rebalance schedule not changed", zap.Error(err))
		return
	}
	r.log.Info("rebalance schedule changed", zap.String("from", old), zap.String("to", p.Rebalance.Schedule))
}

// Stop stops new runs at once, lets a run in progress finish until ctx ends,
// then cancels it: a POST cut short is journaled unknown (its final write
// does not depend on ctx). Safe to call twice, and without Start.
func (r *Rebalancer) Stop(ctx context.Context) error {
	r.stopOnce.Do(func() {
		r.cmu.Lock()
		r.stopping.Store(true)
		close(r.quit)
		var cronDone <-chan struct{}
		if r.sched != nil {
			cronDone = r.sched.Stop().Done()
		}
		r.cmu.Unlock()
		go func() {
			if cronDone != nil {
				<-cronDone
			}
			r.wg.Wait()
			// A RunOnce called from outside the schedule may still hold work.
			r.work.Lock()
			r.work.Unlock() //nolint:staticcheck // an empty critical section: waiting for the holder
			close(r.done)
		}()
	})
	select {
	case <-r.done:
		r.kill()
		return nil
	case <-ctx.Done():
	}
	r.kill()
	<-r.done
	return nil
}

// bind derives a context that ends when ctx ends or the rebalancer is killed.
func (r *Rebalancer) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.life, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}
