package compliance

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"treasuryd/internal/astral"
	"treasuryd/internal/config"
	"treasuryd/internal/metrics"
)

const (
	// refreshTimeout bounds one refresh (list walk, re-read, retries) so a
	// hung index cannot stall the loop; the last good proof still ages out
	// on its own meanwhile, because Open computes age from the clock.
	refreshTimeout = 30 * time.Second
	// defaultRefreshInterval applies when the policy leaves it unset.
	defaultRefreshInterval = time.Minute
	// configTimeout bounds the one /api/v0/config read at start.
	configTimeout = 15 * time.Second
)

// Index is what the gate needs from the Astral index; *astral.Client
// satisfies it.
type Index interface {
	Config(ctx context.Context) (astral.Config, error)
	Proofs(ctx context.Context, q astral.Query, fn func(astral.Proof) error) error
	Proof(ctx context.Context, uid string) (astral.Proof, error)
}

// Deps are the gate's collaborators.
type Deps struct {
	Log     *zap.Logger      // default: no-op
	Metrics *metrics.Metrics // optional
	Client  Index
	// Config returns the current compliance section; it is called on every
	// decision and refresh, so a reloaded policy takes effect at once.
	Config func() config.Compliance
	Now    func() time.Time // default time.Now
	// Endpoints overrides the policy's chain RPC endpoints (the sandbox).
	Endpoints Endpoints
	// Transport carries the chains' JSON-RPC calls (default: a clone of
	// http.DefaultTransport, shared by every chain).
	Transport http.RoundTripper
}

// Status is the gate as /status shows it.
type Status struct {
	Open            bool    `json:"open"`
	Reason          string  `json:"reason"`
	ProofUID        string  `json:"proof_uid,omitempty"`
	ProofAgeSeconds float64 `json:"proof_age_seconds"`
	// MaxProofAgeSeconds is compliance.max_proof_age: the gate closes when
	// the proof's age reaches it.
	MaxProofAgeSeconds float64   `json:"max_proof_age_seconds"`
	Enabled            bool      `json:"enabled"`
	CheckedAt          time.Time `json:"checked_at"`
	LastError          string    `json:"last_error,omitempty"`
	// OnchainVerified: the proof in use was confirmed on its chain at the
	// last refresh (compliance.verify_onchain).
	OnchainVerified bool `json:"onchain_verified"`
}

// verdict is a cached identity/place result for one proof under one policy.
type verdict struct {
	proof           *astral.Proof
	pol             *policy
	identity, place string
}

// gateState is the last reported state, for change logging and the gauge.
type gateState struct {
	open   bool
	reason string
	uid    string
}

// Gate is the compliance gate. It starts closed and opens on the first good
// refresh. Open is safe for concurrent use and cheap enough for the decision
// path.
type Gate struct {
	d Deps

	pol   atomic.Pointer[policy] // compiled policy for the current config
	polMu sync.Mutex             // serialises recompiles

	refreshMu sync.Mutex // one refresh at a time

	mu          sync.RWMutex
	proof       *astral.Proof         // the proof in use: newest passing at the last good refresh
	verifiedBy  *config.OnchainVerify // the verify_onchain section proof was confirmed under; nil: not confirmed
	reason      string                // why there is no proof in use
	failUID     string                // the proof that gave reason, if any
	checkedAt   time.Time
	lastErr     string
	unreachable string // why the last refresh could not check: ReasonUnreachable (index), ReasonOnchainUnreachable, or ""

	// ver reads the chains; built when verify_onchain changes. Guarded by
	// refreshMu. lastMismatch dedupes the log of index/chain differences.
	ver          *verifier
	lastMismatch string

	last atomic.Pointer[gateState]

	// cached holds the time-independent parts of the check of the proof in
	// use under the current policy, so Open on the decision path only
	// re-checks the proof's age (region tests cost far more).
	cached atomic.Pointer[verdict]

	lifeMu  sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	stopped bool
}

// New builds a closed gate. It does no I/O.
func New(d Deps) *Gate {
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Transport == nil {
		d.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	g := &Gate{d: d, reason: ReasonNoProof}
	g.last.Store(&gateState{open: false, reason: ReasonNoProof})
	if d.Metrics != nil {
		d.Metrics.ComplianceGateOpen.Set(0)
		// Every result a check can have, at 0 until it happens: a rate or
		// an alert on a result sees a series from the start.
		for _, r := range CheckResults {
			d.Metrics.ComplianceChecks.WithLabelValues(r)
		}
	}
	return g
}

// CheckResults are the values of the result label of
// treasuryd_compliance_checks_total: what a refresh found.
var CheckResults = []string{
	ReasonPass, ReasonNoProof, ReasonTooOld, ReasonRevoked, ReasonWrongSubject, ReasonWrongChain,
	ReasonUntrustedProver, ReasonOutsideAllow, ReasonInsideDeny, ReasonNoPoint, ReasonUnreachable,
	ReasonOnchainMismatch, ReasonOnchainUnreachable, ReasonOnchainUnverified, ReasonExpired,
}

// AlwaysOpen is the gate when compliance is disabled by policy.
type AlwaysOpen struct{}

// Open always allows.
func (AlwaysOpen) Open() (bool, string) { return true, ReasonDisabled }

// policyFor returns the compiled policy for cfg, compiling only when the
// section changed.
func (g *Gate) policyFor(cfg config.Compliance) *policy {
	if p := g.pol.Load(); p != nil && p.matches(cfg) {
		return p
	}
	g.polMu.Lock()
	defer g.polMu.Unlock()
	if p := g.pol.Load(); p != nil && p.matches(cfg) {
		return p
	}
	p := compile(cfg)
	for _, err := range p.errs {
		// Validation should have refused this policy; fail closed and say so.
		g.d.Log.Error("compliance region does not compile; gate fails closed for it", zap.Error(err))
	}
	g.pol.Store(p)
	return p
}

// Open reports whether value-moving actions are allowed now, and why not.
// It re-checks the proof in use against the current policy and clock, so a
// proof that aged past max_proof_age since the last refresh closes the gate
// without waiting for the next one.
func (g *Gate) Open() (bool, string) {
	open, reason, _, _ := g.evaluate(g.d.Now())
	return open, reason
}

func (g *Gate) evaluate(now time.Time) (open bool, reason, uid string, proof *astral.Proof) {
	cfg := g.d.Config()
	if !cfg.Enabled {
		g.note(true, ReasonDisabled, "")
		return true, ReasonDisabled, "", nil
	}
	pol := g.policyFor(cfg)
	g.mu.RLock()
	proof, reason, uid, unreachable, verifiedBy := g.proof, g.reason, g.failUID, g.unreachable, g.verifiedBy
	g.mu.RUnlock()
	if proof == nil {
		g.note(false, reason, uid)
		return false, reason, uid, nil
	}
	v := g.cached.Load()
	if v == nil || v.proof != proof || v.pol != pol {
		v = &verdict{proof: proof, pol: pol, identity: pol.identity(*proof), place: pol.place(*proof)}
		g.cached.Store(v)
	}
	open, reason = verdictOf(v.identity, v.place, proof.EventTimestamp, pol.src.MaxProofAge, now)
	if !open && unreachable != "" && reason == ReasonTooOld {
		reason = unreachable
	}
	if open && cfg.VerifyOnchain != nil && !confirmedUnder(verifiedBy, cfg.VerifyOnchain) {
		open, reason = false, ReasonOnchainUnverified
	}
	g.note(open, reason, proof.UID)
	return open, reason, proof.UID, proof
}

// note logs and meters a change of the gate's state.
func (g *Gate) note(open bool, reason, uid string) {
	cur := g.last.Load()
	if cur.open == open && cur.reason == reason && cur.uid == uid {
		return
	}
	if !g.last.CompareAndSwap(cur, &gateState{open: open, reason: reason, uid: uid}) {
		return // another caller reported a newer state
	}
	if g.d.Metrics != nil {
		if open {
			g.d.Metrics.ComplianceGateOpen.Set(1)
		} else {
			g.d.Metrics.ComplianceGateOpen.Set(0)
		}
	}
	fields := []zap.Field{zap.String("reason", reason), zap.String("proof_uid", uid)}
	switch {
	case open && !cur.open:
		g.d.Log.Info("compliance gate opened", fields...)
	case open:
		g.d.Log.Info("compliance gate open on another proof", fields...)
	case cur.open:
		g.d.Log.Warn("compliance gate closed", fields...)
	default:
		g.d.Log.Warn("compliance gate still closed, reason changed", fields...)
	}
}

// Status is the gate's state now.
func (g *Gate) Status() Status {
	now := g.d.Now()
	open, reason, uid, proof := g.evaluate(now)
	g.mu.RLock()
	s := Status{Open: open, Reason: reason, ProofUID: uid, CheckedAt: g.checkedAt, LastError: g.lastErr,
		OnchainVerified: proof != nil && g.verifiedBy != nil && g.proof == proof}
	g.mu.RUnlock()
	cfg := g.d.Config()
	s.MaxProofAgeSeconds, s.Enabled = cfg.MaxProofAge.Seconds(), cfg.Enabled
	if proof != nil {
		s.ProofAgeSeconds = now.Sub(proof.EventTimestamp).Seconds()
	}
	return s
}

// Refresh fetches the subject's proofs newer than max_proof_age, picks the
// newest that passes every check, and re-reads it by uid so a revocation the
// list has not caught up with still closes the gate. With verify_onchain,
// the index only finds candidates: the newest that its chain's EAS contract
// confirms is used, with the chain's values, and the proof in use is
// re-verified on every refresh. If the index (or, with verification, the
// chain) cannot be reached, the last good proof stays in use (Open still
// ages it out). The error is for the caller to log; it never carries an RPC
// URL.
func (g *Gate) Refresh(ctx context.Context) error {
	g.refreshMu.Lock()
	defer g.refreshMu.Unlock()
	cfg := g.d.Config()
	now := g.d.Now()
	if !cfg.Enabled {
		g.evaluate(now)
		return nil
	}
	pol := g.policyFor(cfg)
	ver := g.verifierFor(cfg.VerifyOnchain)

	limit, keep := 1, ""
	if ver != nil {
		limit = maxOnchainCandidates
		g.mu.RLock()
		if g.proof != nil {
			keep = g.proof.UID // re-verified on chain every refresh, however many newer proofs there are
		}
		g.mu.RUnlock()
	}
	cands, failReason, failUID, err := g.find(ctx, cfg, pol, now, limit, keep)
	var (
		best      *astral.Proof
		chainErr  error
		chainDown = map[string]bool{} // uids whose chain could not be read
	)
	for _, c := range cands {
		if err != nil {
			break
		}
		again, rerr := g.d.Client.Proof(ctx, c.UID)
		switch {
		case errors.Is(rerr, astral.ErrNotFound):
			failReason, failUID = ReasonNoProof, c.UID
			continue
		case rerr != nil:
			err = rerr
			continue
		}
		if ok, r := pol.check(again, now); !ok {
			failReason, failUID = r, again.UID
			continue
		}
		if ver == nil {
			best = &again
			break
		}
		res, cerr := ver.verify(ctx, pol, again, now)
		if cerr != nil {
			chainErr = cerr
			chainDown[again.UID] = true
			continue
		}
		if res.reason != ReasonPass {
			g.noteMismatch(again, res)
			failReason, failUID = res.reason, again.UID
			continue
		}
		best = &res.proof
		break
	}

	g.mu.RLock()
	inUse, inUseVerified := g.proof, g.verifiedBy != nil
	g.mu.RUnlock()
	// The index is down: with verification, the proof in use is still
	// re-read from its chain, so an on-chain revocation closes the gate
	// whatever the index says or fails to say.
	var refuted *onchainResult
	if err != nil && ver != nil && inUse != nil && inUseVerified {
		res, cerr := ver.verify(ctx, pol, *inUse, now)
		switch {
		case cerr != nil:
			chainErr = cerr
		case res.reason != ReasonPass:
			g.noteMismatch(*inUse, res)
			refuted = &res
		}
	}

	result := ReasonPass
	g.mu.Lock()
	g.checkedAt = now
	switch {
	case refuted != nil:
		result = refuted.reason
		g.lastErr = err.Error()
		g.unreachable = ReasonUnreachable
		g.proof, g.verifiedBy, g.reason, g.failUID = nil, nil, refuted.reason, inUse.UID
	case err != nil:
		result = ReasonUnreachable
		g.lastErr = err.Error()
		g.unreachable = ReasonUnreachable
		if g.proof == nil {
			g.reason, g.failUID = ReasonUnreachable, ""
		}
	case best != nil:
		g.lastErr, g.unreachable = "", ""
		g.proof, g.verifiedBy = best, nil
		if ver != nil {
			g.verifiedBy = ver.src
		}
	case chainErr != nil:
		// No candidate was confirmed and some could not be read. The proof in
		// use holds (until it ages out) only if its own chain was unreadable:
		// a proof the index or the chain refuted this time does not.
		result = ReasonOnchainUnreachable
		g.lastErr = chainErr.Error()
		g.unreachable = ReasonOnchainUnreachable
		if g.proof == nil || g.verifiedBy == nil || !chainDown[g.proof.UID] {
			g.proof, g.verifiedBy = nil, nil
			g.reason, g.failUID = ReasonOnchainUnreachable, ""
		}
	default:
		g.lastErr, g.unreachable = "", ""
		g.proof, g.verifiedBy = nil, nil
		result = failReason
		g.reason, g.failUID = failReason, failUID
	}
	g.mu.Unlock()

	_, _, _, used := g.evaluate(now)
	if m := g.d.Metrics; m != nil {
		m.ComplianceChecks.WithLabelValues(result).Inc()
		age := 0.0
		if used != nil {
			age = now.Sub(used.EventTimestamp).Seconds()
		}
		m.ComplianceProofAge.Set(age)
	}
	if err == nil && chainErr != nil && best == nil {
		return chainErr
	}
	return err
}

// confirmedUnder reports whether a proof confirmed under the section by
// still counts under cur: the same section (a reload that changed the
// schema, a contract or an endpoint needs a new confirmation).
func confirmedUnder(by, cur *config.OnchainVerify) bool {
	return by != nil && (by == cur || by.Equal(cur))
}

// verifierFor returns the verifier for v (nil: verification off), building
// a new one, and closing the old, only when the section changed. Called
// under refreshMu.
func (g *Gate) verifierFor(v *config.OnchainVerify) *verifier {
	if v == nil {
		if g.ver != nil {
			g.ver.close()
			g.ver = nil
		}
		return nil
	}
	if g.ver != nil && g.ver.src.Equal(v) {
		return g.ver
	}
	if g.ver != nil {
		g.ver.close()
	}
	var observe func(endpoint, code string, d time.Duration)
	if m := g.d.Metrics; m != nil {
		observe = func(endpoint, code string, d time.Duration) { m.ObserveAPI("chain", endpoint, code, d.Seconds()) }
	}
	g.ver = newVerifier(v, g.d.Endpoints, g.d.Transport, observe)
	for _, ce := range g.ver.chains {
		if ce.err != nil {
			g.d.Log.Error("compliance chain cannot be verified; its proofs fail closed", zap.Error(ce.err))
		}
	}
	return g.ver
}

// noteMismatch logs why a proof did not count on chain, once per change.
func (g *Gate) noteMismatch(pr astral.Proof, res onchainResult) {
	key := pr.UID + "\x00" + res.reason + "\x00" + res.field
	if key == g.lastMismatch {
		return
	}
	g.lastMismatch = key
	g.d.Log.Warn("proof not confirmed on chain", zap.String("proof_uid", pr.UID), zap.String("chain", pr.Chain),
		zap.String("reason", res.reason), zap.String("detail", res.field))
}

// find walks the subject's recent proofs and returns the newest passing
// ones (at most limit, newest first, then the proof keep if it passes and
// is not among them), or the reason (and uid) of the newest failing one.
func (g *Gate) find(ctx context.Context, cfg config.Compliance, pol *policy, now time.Time, limit int, keep string) (cands []astral.Proof, failReason, failUID string, err error) {
	failReason = ReasonNoProof
	var failAt time.Time
	var kept *astral.Proof
	seen := map[string]bool{}
	for _, subject := range subjectForms(cfg.Subject) {
		q := astral.Query{Subject: subject, From: now.Add(-cfg.MaxProofAge)}
		if len(cfg.Chains) == 1 {
			q.Chain = cfg.Chains[0]
		}
		err = g.d.Client.Proofs(ctx, q, func(p astral.Proof) error {
			if seen[p.UID] {
				return nil
			}
			seen[p.UID] = true
			ok, r := pol.check(p, now)
			if ok {
				cands = keepNewest(cands, p, limit)
				if keep != "" && p.UID == keep {
					cp := p
					kept = &cp
				}
				return nil
			}
			if failUID == "" || p.EventTimestamp.After(failAt) {
				failReason, failUID, failAt = r, p.UID, p.EventTimestamp
			}
			return nil
		})
		if err != nil {
			return nil, "", "", err
		}
	}
	if kept != nil && !slices.ContainsFunc(cands, func(c astral.Proof) bool { return c.UID == kept.UID }) {
		cands = append(cands, *kept)
	}
	return cands, failReason, failUID, nil
}

// keepNewest inserts p into cands (newest first; the earlier of equals
// first) and keeps at most limit.
func keepNewest(cands []astral.Proof, p astral.Proof, limit int) []astral.Proof {
	i := len(cands)
	for i > 0 && p.EventTimestamp.After(cands[i-1].EventTimestamp) {
		i--
	}
	if i >= limit {
		return cands
	}
	cands = slices.Insert(cands, i, p)
	if len(cands) > limit {
		cands = cands[:limit]
	}
	return cands
}

// Start reads the index's configuration once (a configured chain it does not
// support is a warning), then refreshes now and every refresh_interval in a
// goroutine. It returns at once.
func (g *Gate) Start(ctx context.Context) error {
	g.lifeMu.Lock()
	defer g.lifeMu.Unlock()
	if g.cancel != nil || g.stopped {
		return errors.New("compliance: gate already started or stopped")
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.cancel = cancel
	g.done = make(chan struct{})
	first := make(chan struct{})
	go g.run(loopCtx, g.done, first)
	// The gate starts closed. Give the first refresh a bounded moment so the
	// first quotes are decided on a checked proof rather than refused for
	// compliance; a slow index only delays this, and the gate stays closed.
	wait := time.NewTimer(firstRefreshWait)
	defer wait.Stop()
	select {
	case <-first:
	case <-wait.C:
		g.d.Log.Warn("first compliance refresh still running; the gate stays closed until it passes", zap.Duration("waited", firstRefreshWait))
	case <-ctx.Done():
	}
	return nil
}

// firstRefreshWait bounds how long Start waits for the first refresh.
const firstRefreshWait = 2 * time.Second

// Stop ends the refresh loop and waits for it (bounded by ctx). Safe to call
// twice. The gate keeps answering Open from its last state.
func (g *Gate) Stop(ctx context.Context) error {
	g.lifeMu.Lock()
	g.stopped = true
	cancel, done := g.cancel, g.done
	g.lifeMu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	g.refreshMu.Lock()
	if g.ver != nil {
		g.ver.close()
		g.ver = nil
	}
	g.refreshMu.Unlock()
	return nil
}

func (g *Gate) run(ctx context.Context, done, first chan struct{}) {
	defer close(done)
	g.checkChains(ctx)
	for {
		rctx, cancel := context.WithTimeout(ctx, refreshTimeout)
		err := g.Refresh(rctx)
		cancel()
		if first != nil {
			close(first)
			first = nil
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			g.d.Log.Warn("compliance refresh failed", zap.Error(err))
		}
		interval := g.d.Config().RefreshInterval
		if interval <= 0 {
			interval = defaultRefreshInterval
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// checkChains warns about configured chains the index does not support.
func (g *Gate) checkChains(ctx context.Context) {
	cfg := g.d.Config()
	if !cfg.Enabled {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, configTimeout)
	defer cancel()
	ic, err := g.d.Client.Config(cctx)
	if err != nil {
		if ctx.Err() == nil {
			g.d.Log.Warn("astral index configuration unreadable; chains not checked", zap.Error(err))
		}
		return
	}
	supported := make(map[string]bool, len(ic.Chains))
	for k, on := range ic.Chains {
		supported[strings.ToLower(k)] = on
	}
	for _, c := range cfg.Chains {
		if !supported[strings.ToLower(c)] {
			g.d.Log.Warn("configured compliance chain is not supported by the astral index",
				zap.String("chain", c), zap.String("index_version", ic.Version))
		}
	}
}
