// Package authority decides which policy is in force (SPEC 10): whoever can
// write the policy file must not be able to drain the account with it. A
// change that widens what treasuryd may do with funds (a new allowlist
// address, a looser compliance gate) takes effect only authority.hold after
// treasuryd first saw it; a change that narrows applies at once.
//
// The Keeper is the config.Reloader's admission hook: every policy read from
// the file passes through it, and what the Reloader hands out as Current is
// what the Keeper admitted. The settings in force (the baseline) and every
// widening change with its first sight are journaled, so a restart neither
// restarts nor skips a change's clock.
package authority

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/lifecycle"
	"treasuryd/internal/metrics"
)

// Store is the part of the journal the keeper uses (*journal.Journal).
type Store interface {
	AuthorityState(ctx context.Context) (baseline []byte, ok bool, pending []journal.AuthorityChange, err error)
	SaveAuthority(ctx context.Context, u journal.AuthorityUpdate) ([]int64, error)
}

// Admitter runs the admission hook on the file's policy and puts the result
// in force (*config.Reloader).
type Admitter interface {
	SetAdmit(fn func(file *config.Policy) (*config.Policy, error))
	Admit() error
}

const (
	// journalTimeout bounds one admission's journal reads and write.
	journalTimeout = 10 * time.Second
	// retryEvery: a maturity whose admission failed (journal unavailable)
	// is tried again this often; until then the running policy stays.
	retryEvery = 5 * time.Second
	// defaultRecheck: the timer looks at the clock at least this often.
	defaultRecheck = time.Minute
)

// Deps is what a Keeper needs.
type Deps struct {
	Log      *zap.Logger
	Metrics  *metrics.Metrics
	Journal  Store
	Reloader Admitter
	Now      func() time.Time // default time.Now
	// Recheck: how often the timer looks at the clock at least (default
	// 1m); tests with an injected clock make it short.
	Recheck time.Duration
}

// Keeper holds widening changes for authority.hold. Safe for concurrent use.
type Keeper struct {
	log     *zap.Logger
	m       *metrics.Metrics
	store   Store
	rl      Admitter
	now     func() time.Time
	recheck time.Duration

	mu        sync.Mutex // guards the fields below
	hold      time.Duration
	pending   []journal.AuthorityChange
	announced bool // the pending changes found at start were logged

	wake chan struct{}
	life *lifecycle.Group // owns the maturity timer's goroutine
}

// New builds a Keeper and installs it as the Reloader's admission hook, so
// nothing reads a policy it has not admitted. It does no I/O.
func New(d Deps) *Keeper {
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New("")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Recheck <= 0 {
		d.Recheck = defaultRecheck
	}
	k := &Keeper{log: d.Log, m: d.Metrics, store: d.Journal, rl: d.Reloader, now: d.Now, recheck: d.Recheck,
		wake: make(chan struct{}, 1), life: lifecycle.New("authority keeper")}
	if k.rl != nil {
		k.rl.SetAdmit(k.Admit)
	}
	return k
}

// Start admits the file's policy (journaling a new baseline or the changes
// first seen), puts the result in force, and starts the timer that admits it
// again when a held change matures. Run it after the journal opened and
// before anything that acts on the policy starts. An unreadable journal is an
// error: the daemon does not start on a policy it cannot judge.
func (k *Keeper) Start(ctx context.Context) error {
	if err := k.rl.Admit(); err != nil {
		return fmt.Errorf("authority: %w", err)
	}
	if err := k.life.Start(); err != nil {
		return err
	}
	k.life.Go(k.loop)
	return nil
}

// Stop ends the timer. Safe to call twice, and without Start.
func (k *Keeper) Stop(ctx context.Context) error { return k.life.Stop(ctx) }

// loop admits the policy again when the earliest pending change matures.
// It looks at the clock at least every recheck, so a clock that jumps (or a
// test's injected one) is followed without a long-armed timer.
func (k *Keeper) loop(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		wait := k.recheck
		if next, ok := k.nextMaturity(); ok {
			if d := next.Sub(k.now()); d <= 0 {
				wait = 0
			} else if d < wait {
				wait = d
			}
		}
		if wait == 0 {
			err := k.rl.Admit()
			if err != nil {
				k.log.Error("authority: a held change matured but could not be admitted; the running policy stays, retrying",
					zap.Error(err), zap.Duration("retry_in", retryEvery))
			}
			if next, ok := k.nextMaturity(); err == nil && (!ok || next.After(k.now())) {
				continue
			}
			wait = retryEvery
		}
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-k.wake: // Reset above drops a pending fire (Go 1.23 timers)
		case <-t.C:
		}
	}
}

func (k *Keeper) nextMaturity() (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var next time.Time
	for _, c := range k.pending {
		if next.IsZero() || c.EffectiveAt.Before(next) {
			next = c.EffectiveAt
		}
	}
	return next, !next.IsZero()
}

// Admit is the admission hook: it compares file with the settings in force,
// item by item, journals what it decides and returns the policy in force.
// Narrowing changes join the settings at once; a widening change is pending
// from its first sight until first_seen + hold, then joins them; a pending
// change gone from the file is cancelled. A journal error is returned and
// nothing changes (the caller keeps the running policy).
func (k *Keeper) Admit(file *config.Policy) (*config.Policy, error) {
	ctx, cancel := context.WithTimeout(context.Background(), journalTimeout)
	defer cancel()
	raw, ok, pending, err := k.store.AuthorityState(ctx)
	if err != nil {
		return nil, err
	}
	now := k.now()
	if !ok {
		// A new journal: the policy it starts with is in force at once.
		s := settingsOf(file)
		b, err := json.Marshal(s)
		if err != nil {
			return nil, fmt.Errorf("authority baseline: %w", err)
		}
		if _, err := k.store.SaveAuthority(ctx, journal.AuthorityUpdate{Baseline: b}); err != nil {
			return nil, err
		}
		// At warn, with the destinations: a new journal trusts its first
		// policy whole, so a person should see what it was.
		k.log.Warn("authority: a new journal starts with the file's policy in force",
			zap.Any("allowlist", s.Allowlist), zap.Bool("compliance", s.Compliance.Enabled))
		k.mu.Lock()
		k.announced = true // nothing was held before
		k.mu.Unlock()
		k.publish(nil, file.Authority.Hold)
		return Effective(file, s), nil
	}
	in, err := decodeSettings(raw)
	if err != nil {
		return nil, err
	}
	if sandbox := file.Sandbox != nil; in.Sandbox != sandbox {
		return nil, fmt.Errorf("%w: the journal was started by a %s policy and this one is a %s policy; "+
			"give it a journal of its own (state.path)", ErrJournalMode, mode(in.Sandbox), mode(sandbox))
	}
	hold := max(in.Hold, file.Authority.Hold)
	d := decide(in, file, pending, now, hold)
	var update journal.AuthorityUpdate
	b, err := json.Marshal(d.settings)
	if err != nil {
		return nil, fmt.Errorf("authority baseline: %w", err)
	}
	if string(b) != string(raw) {
		update.Baseline = b
	}
	update.Insert = d.inserted
	update.Resolve = d.resolved
	ids, err := k.store.SaveAuthority(ctx, update)
	if err != nil {
		return nil, err
	}
	// Persisted; now tell.
	still := d.still
	for i, c := range d.inserted {
		c.ID = ids[i]
		if c.State == journal.AuthorityPending {
			still = append(still, c)
		}
		k.logChange(c)
	}
	for _, c := range d.narrowed {
		k.log.Info("authority: narrowing change in force at once", zap.String("kind", c.Kind), zap.String("diff", c.Diff))
	}
	for _, r := range d.resolvedChanges {
		k.logChange(r)
	}
	k.mu.Lock()
	announce := !k.announced
	k.announced = true
	k.mu.Unlock()
	if announce {
		for _, c := range d.still {
			k.log.Warn("authority: widening change still held", changeFields(c)...)
		}
	}
	slices.SortFunc(still, func(a, b journal.AuthorityChange) int { return a.EffectiveAt.Compare(b.EffectiveAt) })
	k.publish(still, file.Authority.Hold)
	return Effective(file, d.settings), nil
}

func changeFields(c journal.AuthorityChange) []zap.Field {
	return []zap.Field{zap.String("kind", c.Kind), zap.String("item", c.Item), zap.String("diff", c.Diff),
		zap.Time("first_seen", c.FirstSeen), zap.Time("effective_at", c.EffectiveAt)}
}

func (k *Keeper) logChange(c journal.AuthorityChange) {
	switch c.State {
	case journal.AuthorityPending:
		k.log.Warn("authority: widening change held until effective_at", changeFields(c)...)
	case journal.AuthorityMatured:
		k.log.Info("authority: widening change matured and is in force", changeFields(c)...)
	case journal.AuthorityCancelled:
		k.log.Info("authority: held change cancelled (gone from the policy file before it matured)", changeFields(c)...)
	}
}

// publish records the pending changes for Status and the metric, and wakes
// the timer.
func (k *Keeper) publish(pending []journal.AuthorityChange, hold time.Duration) {
	counts := map[string]int{}
	for _, c := range pending {
		counts[c.Kind]++
	}
	k.mu.Lock()
	k.pending = pending
	k.hold = hold
	k.mu.Unlock()
	for _, kind := range metrics.AuthorityKinds {
		k.m.AuthorityPending.WithLabelValues(kind).Set(float64(counts[kind]))
	}
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// decision is what one admission decided.
type decision struct {
	settings        Settings                  // in force after it
	inserted        []journal.AuthorityChange // first seen now (pending, or matured at once with a zero hold)
	resolved        []journal.AuthorityResolve
	resolvedChanges []journal.AuthorityChange // the same, for the log
	still           []journal.AuthorityChange // journaled earlier, still pending
	narrowed        []Change
}

// decide is Admit without I/O: pure, so the tests can walk every case.
func decide(in Settings, file *config.Policy, pending []journal.AuthorityChange, now time.Time, hold time.Duration) decision {
	var d decision
	s := in
	s.Allowlist = slices.Clone(in.Allowlist)
	s.Hold = file.Authority.Hold
	changes := Compare(in, file)
	for _, c := range changes {
		if !c.Widening {
			c.apply(&s)
			d.narrowed = append(d.narrowed, c)
		}
	}
	byItem := map[string]journal.AuthorityChange{}
	for _, p := range pending {
		byItem[p.Item] = p
	}
	wanted := map[string]bool{}
	for _, c := range changes {
		if !c.Widening || wanted[c.Item] { // a value listed twice is one change
			continue
		}
		wanted[c.Item] = true
		p, seen := byItem[c.Item]
		if !seen {
			p = journal.AuthorityChange{Kind: c.Kind, Item: c.Item, Diff: c.Diff, FirstSeen: now,
				EffectiveAt: now.Add(hold), State: journal.AuthorityPending}
			if !p.EffectiveAt.After(now) {
				p.State, p.ResolvedAt = journal.AuthorityMatured, now
				c.apply(&s)
			}
			d.inserted = append(d.inserted, p)
			continue
		}
		if p.EffectiveAt.After(now) {
			d.still = append(d.still, p)
			continue
		}
		c.apply(&s)
		d.resolved = append(d.resolved, journal.AuthorityResolve{ID: p.ID, State: journal.AuthorityMatured, At: now})
		p.State, p.ResolvedAt = journal.AuthorityMatured, now
		d.resolvedChanges = append(d.resolvedChanges, p)
	}
	for _, p := range pending {
		if !wanted[p.Item] {
			d.resolved = append(d.resolved, journal.AuthorityResolve{ID: p.ID, State: journal.AuthorityCancelled, At: now})
			p.State, p.ResolvedAt = journal.AuthorityCancelled, now
			d.resolvedChanges = append(d.resolvedChanges, p)
		}
	}
	settle(&s, file)
	d.settings = s
	return d
}

// Pending is one held change as /status shows it.
type Pending struct {
	Kind        string    `json:"kind"`
	Item        string    `json:"item"`
	Diff        string    `json:"diff"`
	FirstSeen   time.Time `json:"first_seen"`
	EffectiveAt time.Time `json:"effective_at"`
}

// Status is the keeper's part of /status.
type Status struct {
	Hold    string    `json:"hold"`
	Pending []Pending `json:"pending"`
}

// Status returns the hold and every change still held, soonest first.
func (k *Keeper) Status() Status {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := Status{Hold: k.hold.String(), Pending: []Pending{}}
	for _, c := range k.pending {
		st.Pending = append(st.Pending, Pending{Kind: c.Kind, Item: c.Item, Diff: c.Diff,
			FirstSeen: c.FirstSeen, EffectiveAt: c.EffectiveAt})
	}
	return st
}

// ErrJournalMode: a sandbox policy on a journal a real policy started, or
// the reverse. Admission refuses it (the daemon does not start).
var ErrJournalMode = errors.New("authority: sandbox and real policies never share a journal")

func mode(sandbox bool) string {
	if sandbox {
		return "sandbox"
	}
	return "real (non-sandbox)"
}
