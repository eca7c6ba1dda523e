package withdraw

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"treasuryd/internal/journal"
)

// Status is what /status shows of the rebalancer.
type Status struct {
	LastRun    *time.Time         `json:"last_run,omitempty"`
	Rules      []RuleStatus       `json:"rules"`
	InFlight   []WithdrawalStatus `json:"in_flight"`
	Unresolved []WithdrawalStatus `json:"unresolved"`
}

// RuleStatus is a rule's last outcome.
type RuleStatus struct {
	Name   string    `json:"name"`
	At     time.Time `json:"at"`
	Action string    `json:"action"`           // one of the Action constants
	Reason string    `json:"reason,omitempty"` // why it did nothing, or the desk's message
	Amount string    `json:"amount,omitempty"` // decimal string
}

// WithdrawalStatus is one open or unresolved withdrawal.
type WithdrawalStatus struct {
	ID         int64     `json:"id"`
	Rule       string    `json:"rule"`
	Asset      string    `json:"asset"`
	Amount     string    `json:"amount"`
	Network    string    `json:"network"`
	Address    string    `json:"address"`
	State      string    `json:"state"`
	DeskID     string    `json:"desk_id,omitempty"`
	DeskStatus string    `json:"desk_status,omitempty"`
	Error      string    `json:"error,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// statusBook holds what Status reports; its own lock, so /status never
// waits on a POST.
type statusBook struct {
	mu         sync.Mutex
	lastRun    time.Time
	rules      map[string]RuleStatus
	inFlight   []WithdrawalStatus
	unresolved []WithdrawalStatus
	gaugeRules map[string]bool // every rule label a gauge was ever set for
}

func (b *statusBook) setLastRun(t time.Time) {
	b.mu.Lock()
	b.lastRun = t
	b.mu.Unlock()
}

// changed reports whether a rule's last action or reason differs.
func (b *statusBook) changed(rule, action, reason string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	s, ok := b.rules[rule]
	return !ok || s.Action != action || s.Reason != reason
}

func (r *Rebalancer) note(rule, action, reason, amount string) {
	b := &r.st
	b.mu.Lock()
	b.rules[rule] = RuleStatus{Name: rule, At: r.now(), Action: action, Reason: reason, Amount: amount}
	b.mu.Unlock()
}

// Status is a snapshot for /status: the rules of the current policy with
// their last outcome, and the open and unresolved withdrawals as of the last
// pass.
func (r *Rebalancer) Status() Status {
	b := &r.st
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Status{
		Rules:      []RuleStatus{},
		InFlight:   append([]WithdrawalStatus{}, b.inFlight...),
		Unresolved: append([]WithdrawalStatus{}, b.unresolved...),
	}
	if !b.lastRun.IsZero() {
		t := b.lastRun
		s.LastRun = &t
	}
	if p := r.policy(); p != nil {
		for _, rule := range p.Rebalance.Rules {
			rs, ok := b.rules[rule.Name]
			if !ok {
				rs = RuleStatus{Name: rule.Name}
			}
			s.Rules = append(s.Rules, rs)
		}
	}
	return s
}

// refresh recomputes the gauges and the Status lists from the journal, so
// they are exact whatever happened before (a restart included).
func (r *Rebalancer) refresh(ctx context.Context) error {
	open, err := r.store.OpenWithdrawals(ctx)
	if err != nil {
		return fmt.Errorf("withdraw: load open withdrawals: %w", err)
	}
	unresolved, err := r.store.Withdrawals(ctx, journal.WithdrawalFilter{States: []string{journal.WithdrawalUnresolved}})
	if err != nil {
		return fmt.Errorf("withdraw: load unresolved withdrawals: %w", err)
	}
	inFlight := map[string]int{}
	for _, w := range open {
		inFlight[w.Rule]++
	}
	unres := map[string]int{}
	for _, w := range unresolved {
		unres[w.Rule]++
	}

	b := &r.st
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := r.policy(); p != nil {
		for _, rule := range p.Rebalance.Rules {
			b.gaugeRules[rule.Name] = true
		}
	}
	for rule := range inFlight {
		b.gaugeRules[rule] = true
	}
	for rule := range unres {
		b.gaugeRules[rule] = true
	}
	for rule := range b.gaugeRules {
		r.m.WithdrawalsInFlight.WithLabelValues(rule).Set(float64(inFlight[rule]))
		r.m.WithdrawalsUnresolved.WithLabelValues(rule).Set(float64(unres[rule]))
	}
	b.inFlight = toStatus(open)
	b.unresolved = toStatus(unresolved)
	return nil
}

func toStatus(ws []journal.Withdrawal) []WithdrawalStatus {
	out := make([]WithdrawalStatus, 0, len(ws))
	for _, w := range ws {
		out = append(out, WithdrawalStatus{
			ID: w.ID, Rule: w.Rule, Asset: w.Asset, Amount: w.Amount.String(), Network: w.Network,
			Address: w.Address, State: w.State, DeskID: w.DeskID, DeskStatus: w.DeskStatus, Error: w.Error,
			CreatedAt: w.CreatedAt,
		})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}
