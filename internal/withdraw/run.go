package withdraw

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/balances"
	"treasuryd/internal/config"
	"treasuryd/internal/crashpoint"
	"treasuryd/internal/journal"
)

// dailyWindow is the rolling window of max_daily.
const dailyWindow = 24 * time.Hour

// Statuses of treasuryd_withdrawals_total. A bounded set: the journal states
// plus the desk statuses followed, and dry_run.
const (
	statusIntent     = "intent"
	statusSubmitted  = "submitted"
	statusPending    = astra.StatusPending
	statusProcessing = astra.StatusProcessing
	statusSent       = astra.StatusSent
	statusCompleted  = astra.StatusCompleted
	statusFailed     = astra.StatusFailed
	statusRejected   = "rejected"
	statusUnknown    = "unknown"
	statusUnresolved = "unresolved"
	statusDryRun     = "dry_run"
	statusMismatch   = ReasonMismatch // the desk reports it with other details (mismatch.go)
)

// Actions recorded per rule in Status.
const (
	ActionSubmitted = "submitted" // POST answered with an id
	ActionUnknown   = "unknown"   // POST outcome unknown: being matched
	ActionRejected  = "rejected"  // the desk refused it, or it was never delivered
	ActionDryRun    = "dry_run"   // would have withdrawn
	ActionSkipped   = "skipped"   // nothing to do, or not allowed now (see Reason)
	ActionError     = "error"     // the run could not decide (see Reason)
)

// Reasons a rule did nothing.
const (
	ReasonPaused         = "paused"
	ReasonCompliance     = "compliance"
	ReasonInFlight       = "in_flight"
	ReasonUnresolved     = "unresolved"
	ReasonBelowHighWater = "below_high_water"
	ReasonBelowMinAmount = "below_min_amount"
	ReasonDailyCap       = "daily_cap"
	ReasonNothingToSend  = "nothing_to_withdraw"
	ReasonNotAllowlisted = "not_allowlisted"
	ReasonRuleChanged    = "rule_changed"
	ReasonStopped        = "stopped"
	ReasonBalance        = "balance_unavailable"
	ReasonJournal        = "journal_unavailable"
)

// ReasonAuthorityHold: the rule's destination is a new allowlist entry not
// yet in force; it waits authority.hold (SPEC 10).
const ReasonAuthorityHold = "authority_hold"

// RunOnce settles open withdrawals, then runs every rule of the current
// policy once (SPEC 5.3). The schedule calls it; tests and the CLI may too.
func (r *Rebalancer) RunOnce(ctx context.Context) error {
	if r.stopping.Load() {
		return ErrStopped
	}
	ctx, cancel := r.bind(ctx)
	defer cancel()
	r.work.Lock()
	defer r.work.Unlock()
	if r.stopping.Load() {
		return ErrStopped
	}
	pol := r.policy()
	if pol == nil {
		return errors.New("withdraw: no policy")
	}
	now := r.now()
	var errs []error

	// Resolve what is open first: an unknown intent is matched before
	// anything else happens for its rule.
	if err := r.settle(ctx); err != nil {
		errs = append(errs, err)
	}
	open, err := r.store.OpenWithdrawals(ctx)
	if err != nil {
		// Without the open set no rule can know it has nothing in flight.
		for _, rule := range pol.Rebalance.Rules {
			r.note(rule.Name, ActionError, ReasonJournal, "")
		}
		r.st.setLastRun(now)
		return errors.Join(append(errs, fmt.Errorf("withdraw: load open withdrawals: %w", err))...)
	}
	// A withdrawal nobody could match stays the rule's until an operator
	// resolves it (Resolve): it may exist at the desk, so the rule must not
	// pay the same excess again (SPEC 5.3: wait for completed or failed).
	unresolved, err := r.store.Withdrawals(ctx, journal.WithdrawalFilter{States: []string{journal.WithdrawalUnresolved}})
	if err != nil {
		for _, rule := range pol.Rebalance.Rules {
			r.note(rule.Name, ActionError, ReasonJournal, "")
		}
		r.st.setLastRun(now)
		return errors.Join(append(errs, fmt.Errorf("withdraw: load unresolved withdrawals: %w", err))...)
	}
	blocked := make(map[string]bool, len(unresolved))
	for _, w := range unresolved {
		blocked[w.Rule] = true
	}
	inFlight := make(map[string]bool, len(open))
	for _, w := range open {
		inFlight[w.Rule] = true
	}

	bal := balanceCache{desk: r.desk}
	for _, rule := range pol.Rebalance.Rules {
		if blocked[rule.Name] {
			r.skip(rule, ReasonUnresolved, "a withdrawal of this rule needs an operator (POST /withdrawals/{id}/resolve)")
			continue
		}
		if err := r.runRule(ctx, pol, rule, inFlight[rule.Name], &bal); err != nil {
			errs = append(errs, fmt.Errorf("rule %s: %w", rule.Name, err))
		}
	}
	// Local reads: done even when a Stop cut the run short, so the gauges
	// and /status show what was journaled.
	if err := r.refresh(context.WithoutCancel(ctx)); err != nil {
		errs = append(errs, err)
	}
	r.st.setLastRun(now)
	return errors.Join(errs...)
}

// balanceCache fetches the balances at most once per run.
type balanceCache struct {
	desk    Desk
	fetched bool
	err     error
	by      map[string]decimal.Decimal
}

func (b *balanceCache) get(ctx context.Context, asset string) (decimal.Decimal, error) {
	if !b.fetched {
		b.fetched = true
		list, err := b.desk.Balances(ctx)
		if err != nil {
			b.err = fmt.Errorf("withdraw: fetch balances: %w", err)
		} else {
			// An asset may have entries on several networks; its balance is
			// their sum.
			b.by = balances.BySymbol(list)
		}
	}
	if b.err != nil {
		return decimal.Zero, b.err
	}
	return b.by[asset], nil
}

// debit lowers the cached balance of asset by amount.
func (b *balanceCache) debit(asset string, amount decimal.Decimal) {
	if b.by != nil {
		b.by[asset] = b.by[asset].Sub(amount)
	}
}

// runRule runs one rule. Only errors the operator must see are returned.
func (r *Rebalancer) runRule(ctx context.Context, pol *config.Policy, rule config.Rule, inFlight bool, bal *balanceCache) error {
	if r.pause != nil && r.pause.Paused() {
		r.skip(rule, ReasonPaused, "")
		return nil
	}
	if ok, why := r.gateOpen(); !ok {
		r.skip(rule, ReasonCompliance, why)
		return nil
	}
	if inFlight {
		r.skip(rule, ReasonInFlight, "")
		return nil
	}
	// A validated file lists every rule's destination, so one missing from
	// the allowlist in force is a new entry the authority hold still holds.
	if !pol.Allowed(rule.Asset, rule.Network, rule.Address) {
		r.skip(rule, ReasonAuthorityHold, "the destination is a new allowlist entry, not payable until authority.hold has passed (see /status authority.pending)")
		return nil
	}
	wasFetched := bal.fetched
	balance, err := bal.get(ctx, rule.Asset)
	if err != nil {
		r.note(rule.Name, ActionError, ReasonBalance, "")
		if !wasFetched {
			return err // once per run, not once per rule
		}
		return nil
	}
	if balance.Cmp(rule.HighWater) <= 0 {
		r.skip(rule, ReasonBelowHighWater, "balance "+balance.String())
		return nil
	}

	amount := balance.Sub(rule.Keep)
	if rule.MaxAmount.IsPositive() && amount.Cmp(rule.MaxAmount) > 0 {
		amount = rule.MaxAmount
	}
	capped := false
	if rule.MaxDaily.IsPositive() {
		used, err := r.usedToday(ctx, rule.Asset)
		if err != nil {
			r.note(rule.Name, ActionError, ReasonJournal, "")
			return err
		}
		left := rule.MaxDaily.Sub(used)
		if amount.Cmp(left) > 0 {
			amount, capped = left, true
		}
	}
	// No rounding: every term is an exact decimal from the desk or the
	// policy, and the reference states no precision of its own.
	if !amount.IsPositive() {
		if capped {
			r.skip(rule, ReasonDailyCap, "")
		} else {
			r.skip(rule, ReasonNothingToSend, "")
		}
		return nil
	}
	if rule.MinAmount.IsPositive() && amount.Cmp(rule.MinAmount) < 0 {
		reason := ReasonBelowMinAmount
		if capped {
			reason = ReasonDailyCap
		}
		r.skip(rule, reason, "amount "+amount.String())
		return nil
	}
	if pol.DryRun {
		r.dryRun(rule, amount)
		return nil
	}
	debited, err := r.withdraw(ctx, rule, amount)
	if debited {
		// The desk debits a request when it creates it; a later rule of the
		// same asset in this run must not sweep the same excess again.
		bal.debit(rule.Asset, amount)
	}
	return err
}

// usedToday is what the asset's withdrawals of the last 24h take from
// max_daily: every journaled one except those that certainly moved nothing
// (rejected, failed). Unknown and unresolved ones count: they may have paid.
func (r *Rebalancer) usedToday(ctx context.Context, asset string) (decimal.Decimal, error) {
	ws, err := r.store.Withdrawals(ctx, journal.WithdrawalFilter{Asset: asset, Since: r.now().Add(-dailyWindow)})
	if err != nil {
		return decimal.Zero, fmt.Errorf("withdraw: withdrawals of %s in the last 24h: %w", asset, err)
	}
	used := decimal.Zero
	for _, w := range ws {
		if w.State == journal.WithdrawalRejected || w.State == journal.WithdrawalFailed {
			continue
		}
		used = used.Add(w.Amount)
	}
	return used, nil
}

func (r *Rebalancer) gateOpen() (bool, string) {
	if r.gate == nil {
		return false, "no compliance gate"
	}
	return r.gate.Open()
}

func (r *Rebalancer) dryRun(rule config.Rule, amount decimal.Decimal) {
	r.log.Info("dry run: would withdraw", ruleFields(rule, amount)...)
	r.m.Withdrawals.WithLabelValues(rule.Name, statusDryRun).Inc()
	r.note(rule.Name, ActionDryRun, "", amount.String())
}

// withdraw checks everything again on the current policy, journals the
// intent, sends the POST and records what came of it. debited reports that
// the desk may have taken the amount (a POST was sent and not refused).
func (r *Rebalancer) withdraw(ctx context.Context, rule config.Rule, amount decimal.Decimal) (debited bool, err error) {
	// The last checks, immediately before the POST, against the policy in
	// force now (a reload may have happened during this run).
	cur := r.policy()
	switch {
	case r.stopping.Load() || ctx.Err() != nil:
		r.skip(rule, ReasonStopped, "")
		return false, nil
	case cur == nil:
		r.skip(rule, ReasonRuleChanged, "no policy")
		return false, nil
	case cur.DryRun:
		r.dryRun(rule, amount)
		return false, nil
	case r.pause != nil && r.pause.Paused():
		r.skip(rule, ReasonPaused, "")
		return false, nil
	}
	if ok, why := r.gateOpen(); !ok {
		r.skip(rule, ReasonCompliance, why)
		return false, nil
	}
	if !cur.Allowed(rule.Asset, rule.Network, rule.Address) {
		r.log.Error("withdrawal refused: destination is not on the allowlist", ruleFields(rule, amount)...)
		r.note(rule.Name, ActionSkipped, ReasonNotAllowlisted, amount.String())
		return false, nil
	}
	if now, ok := findRule(cur, rule.Name); !ok || !sameRule(now, rule) {
		r.skip(rule, ReasonRuleChanged, "")
		return false, nil
	}

	id, err := r.store.InsertWithdrawalIntent(ctx, journal.Withdrawal{
		Rule: rule.Name, Asset: rule.Asset, Network: rule.Network, Address: rule.Address,
		Amount: amount, CreatedAt: r.now(),
	})
	if err != nil {
		r.note(rule.Name, ActionError, ReasonJournal, amount.String())
		return false, fmt.Errorf("journal withdrawal intent: %w", err)
	}
	r.m.Withdrawals.WithLabelValues(rule.Name, statusIntent).Inc()
	fields := append(ruleFields(rule, amount), zap.Int64("id", id))
	r.log.Info("withdrawal intent journaled", fields...)

	if r.mayAct != nil && !r.mayAct() {
		r.note(rule.Name, ActionUnknown, "not sent: leadership not confirmed", amount.String())
		r.log.Error("withdrawal intent journaled but not sent: leadership not confirmed; "+
			"whoever leads next matches it at the desk", fields...)
		return true, errors.New("withdrawal not sent: leadership not confirmed")
	}
	sent := func() {}
	if r.onSend != nil {
		sent = r.onSend(rule.Asset, amount)
	}
	crashpoint.Hit("withdraw-after-intent")
	deskID, postErr := r.desk.CreateWithdrawal(ctx, astra.NewWithdrawal{
		InstrumentSymbol: rule.Asset, Amount: amount, Network: rule.Network, Address: rule.Address,
	})
	sent()
	crashpoint.Hit("withdraw-after-post")
	// The result is recorded whatever happened to ctx meanwhile (Stop, a
	// caller's deadline): an unrecorded POST would only be matched later.
	wctx := context.WithoutCancel(ctx)
	state, msg := classify(deskID, postErr, ctx.Err() != nil)
	if err := r.store.UpdateWithdrawal(wctx, id, state, deskID, "", msg); err != nil {
		// The record stays "intent": the next pass treats it as unknown and
		// matches it at the desk. Never re-sent.
		r.note(rule.Name, ActionUnknown, ReasonJournal, amount.String())
		return true, fmt.Errorf("journal withdrawal %d as %s: %w", id, state, err)
	}
	r.m.Withdrawals.WithLabelValues(rule.Name, state).Inc()
	switch state {
	case journal.WithdrawalSubmitted:
		r.log.Info("withdrawal submitted", append(fields, zap.String("desk_id", deskID))...)
		r.note(rule.Name, ActionSubmitted, "", amount.String())
	case journal.WithdrawalUnknown:
		r.log.Warn("withdrawal outcome unknown; matching it at the desk, never re-sending",
			append(fields, zap.String("error", msg))...)
		r.note(rule.Name, ActionUnknown, msg, amount.String())
	default:
		r.log.Warn("withdrawal rejected", append(fields, zap.String("error", msg))...)
		r.note(rule.Name, ActionRejected, msg, amount.String())
	}
	return state != journal.WithdrawalRejected, nil
}

// classify maps a POST result to the journal state it leaves the intent in.
// Only a definite refusal (4xx) or an error that certainly never reached the
// desk is "rejected"; anything that may have been created is "unknown".
func classify(deskID string, err error, ctxEnded bool) (state, msg string) {
	if err == nil {
		if deskID == "" {
			return journal.WithdrawalUnknown, "desk answered without an id"
		}
		return journal.WithdrawalSubmitted, ""
	}
	msg = err.Error()
	var apiErr *astra.APIError
	switch {
	case errors.Is(err, astra.ErrUnknownOutcome):
		return journal.WithdrawalUnknown, msg
	case errors.As(err, &apiErr):
		if apiErr.Status >= http.StatusBadRequest && apiErr.Status < http.StatusInternalServerError {
			return journal.WithdrawalRejected, msg
		}
		return journal.WithdrawalUnknown, msg
	case ctxEnded, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// Cut short while in flight: it may have reached the desk.
		return journal.WithdrawalUnknown, msg
	}
	return journal.WithdrawalRejected, msg
}

func findRule(p *config.Policy, name string) (config.Rule, bool) {
	for _, r := range p.Rebalance.Rules {
		if r.Name == name {
			return r, true
		}
	}
	return config.Rule{}, false
}

func sameRule(a, b config.Rule) bool {
	return a.Name == b.Name && a.Asset == b.Asset && a.Network == b.Network && a.Address == b.Address &&
		a.HighWater.Equal(b.HighWater) && a.Keep.Equal(b.Keep) && a.MinAmount.Equal(b.MinAmount) &&
		a.MaxAmount.Equal(b.MaxAmount) && a.MaxDaily.Equal(b.MaxDaily)
}

func ruleFields(rule config.Rule, amount decimal.Decimal) []zap.Field {
	return []zap.Field{
		zap.String("rule", rule.Name), zap.String("asset", rule.Asset), zap.String("network", rule.Network),
		zap.String("address", rule.Address), zap.Stringer("amount", amount),
	}
}

// skip records that a rule did nothing and why; logged at info when the
// reason changes, so a schedule of @every 5s does not repeat itself.
func (r *Rebalancer) skip(rule config.Rule, reason, detail string) {
	full := reason
	if detail != "" && (reason == ReasonCompliance || reason == ReasonAuthorityHold) {
		full = reason + ": " + detail
	}
	log := r.log.Debug
	if r.st.changed(rule.Name, ActionSkipped, full) {
		log = r.log.Info
	}
	log("rebalance rule skipped", zap.String("rule", rule.Name), zap.String("reason", reason),
		zap.String("detail", detail))
	r.note(rule.Name, ActionSkipped, full, "")
}
