package withdraw

// The withdrawal state machine, as this package drives it (the journal
// enforces the same edges):
//
//	intent ─POST ok─────────▶ submitted ─desk status─▶ submitted (pending, processing, sent)
//	       ─POST 4xx/undelivered▶ rejected             ─▶ completed | failed
//	       ─outcome unknown─▶ unknown ─matched at the desk─▶ submitted
//	                                   ─no match after MatchGrace─▶ unresolved (operator)
//	intent found by a later pass (crash, or the result write failed) ─▶ unknown
//
// Nothing here ever writes to the desk: an open withdrawal is settled by
// reading GET /withdrawal-request/{account_id}/all.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/journal"
)

const (
	// matchSkew allows for the desk's clock running behind ours: a request
	// the desk stamped up to this long before the intent was journaled still
	// matches it.
	matchSkew = time.Minute
	// heldLookback is how far before the oldest open withdrawal the journal
	// is searched for desk ids already held by other withdrawals. A request
	// is created by the POST right after its intent is journaled, so its
	// holder was journaled at most a request timeout before it; a day is a
	// wide margin that still keeps the query small.
	heldLookback = 24 * time.Hour
	// maxCandidates bounds the desk requests kept in memory while matching:
	// only requests with exactly an unknown intent's symbol, amount, network
	// and address are kept, so more than this means something is badly
	// wrong, and matching waits for an operator rather than guess.
	maxCandidates = 1000
)

// interruptedMsg is journaled on an intent whose POST result was never
// recorded (a crash, or the result write failed).
const interruptedMsg = "outcome not recorded: interrupted between the intent and the POST's result"

var (
	errListDone      = errors.New("withdraw: read enough of the list")
	errTooCandidates = fmt.Errorf("withdraw: more than %d desk requests match open intents", maxCandidates)
)

// settle resolves the open withdrawals: interrupted intents become unknown,
// unknown ones are matched at the desk (or marked unresolved after the
// grace), submitted ones follow the desk's status. Called with r.work held.
func (r *Rebalancer) settle(ctx context.Context) error {
	open, err := r.store.OpenWithdrawals(ctx)
	if err != nil {
		return fmt.Errorf("withdraw: load open withdrawals: %w", err)
	}
	if len(open) == 0 {
		return nil
	}
	var errs []error
	var unknowns, submitted []journal.Withdrawal
	floor := open[0].CreatedAt
	for _, w := range open {
		if w.State == journal.WithdrawalIntent {
			// No POST is in progress while r.work is held, so this intent's
			// result was lost: it may or may not have been created.
			if err := r.store.UpdateWithdrawal(ctx, w.ID, journal.WithdrawalUnknown, "", "", interruptedMsg); err != nil {
				errs = append(errs, fmt.Errorf("withdraw: journal withdrawal %d as unknown: %w", w.ID, err))
				continue
			}
			w.State = journal.WithdrawalUnknown
			r.m.Withdrawals.WithLabelValues(w.Rule, statusUnknown).Inc()
			r.log.Warn("withdrawal intent without a recorded outcome; matching it at the desk, never re-sending",
				withdrawalFields(w)...)
		}
		if w.CreatedAt.Before(floor) {
			floor = w.CreatedAt
		}
		switch w.State {
		case journal.WithdrawalUnknown:
			unknowns = append(unknowns, w)
		case journal.WithdrawalSubmitted:
			submitted = append(submitted, w)
		}
	}
	floor = floor.Add(-matchSkew)

	held := map[string]bool{}
	if len(unknowns) > 0 {
		ws, err := r.store.Withdrawals(ctx, journal.WithdrawalFilter{Since: floor.Add(-heldLookback)})
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("withdraw: load desk ids already held: %w", err))...)
		}
		for _, w := range ws {
			if w.DeskID != "" {
				held[w.DeskID] = true
			}
		}
	}
	want := make(map[string]bool, len(submitted))
	for _, w := range submitted {
		want[w.DeskID] = true
	}

	found := map[string]astra.WithdrawalRequest{}
	var cands []astra.WithdrawalRequest // newest first, as listed
	err = r.desk.WithdrawalRequests(ctx, func(req astra.WithdrawalRequest) error {
		if want[req.ID] {
			found[req.ID] = req
		}
		if req.CreatedAt.Before(floor) {
			// Older than every open withdrawal: nothing left to match. Read
			// on only for a submitted one not seen yet (a desk clock far
			// behind ours); the list is streamed, so that costs no memory.
			if len(found) == len(want) {
				return errListDone
			}
			return nil
		}
		if held[req.ID] || !matchesAny(unknowns, req) {
			return nil
		}
		if len(cands) == maxCandidates {
			return errTooCandidates
		}
		cands = append(cands, req)
		return nil
	})
	if err != nil && !errors.Is(err, errListDone) {
		// Unreadable: unknown ones stay unknown and are retried on the next
		// tick; none is marked unresolved on a list not read.
		return errors.Join(append(errs, fmt.Errorf("withdraw: read withdrawal requests: %w", err))...)
	}

	taken := map[string]bool{}
	for _, w := range unknowns {
		req, ok := oldestMatch(w, cands, taken)
		if !ok {
			if err := r.unmatched(ctx, w); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		taken[req.ID] = true
		if err := r.store.UpdateWithdrawal(ctx, w.ID, journal.WithdrawalSubmitted, req.ID, "", ""); err != nil {
			errs = append(errs, fmt.Errorf("withdraw: journal withdrawal %d as matched to %s: %w", w.ID, req.ID, err))
			continue
		}
		r.m.Withdrawals.WithLabelValues(w.Rule, statusSubmitted).Inc()
		r.log.Info("withdrawal with unknown outcome found at the desk", append(withdrawalFields(w),
			zap.String("desk_id", req.ID), zap.Time("desk_created_at", req.CreatedAt))...)
		w.State, w.DeskID, w.DeskStatus = journal.WithdrawalSubmitted, req.ID, ""
		submitted = append(submitted, w)
		found[req.ID] = req
	}

	for _, w := range submitted {
		req, ok := found[w.DeskID]
		if !ok {
			r.log.Debug("submitted withdrawal not in the desk's list yet", withdrawalFields(w)...)
			continue
		}
		if err := r.follow(ctx, w, req); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unmatched handles an unknown withdrawal the desk's full list does not
// hold: it waits out the grace, then goes to an operator.
func (r *Rebalancer) unmatched(ctx context.Context, w journal.Withdrawal) error {
	age := r.now().Sub(w.CreatedAt)
	if age < r.matchGrace {
		r.log.Debug("withdrawal with unknown outcome not at the desk yet", append(withdrawalFields(w),
			zap.Duration("age", age))...)
		return nil
	}
	msg := fmt.Sprintf("no matching request at the desk %s after the intent; needs an operator (was: %s)",
		r.matchGrace, w.Error)
	if err := r.store.UpdateWithdrawal(ctx, w.ID, journal.WithdrawalUnresolved, "", "", msg); err != nil {
		return fmt.Errorf("withdraw: journal withdrawal %d as unresolved: %w", w.ID, err)
	}
	r.m.Withdrawals.WithLabelValues(w.Rule, statusUnresolved).Inc()
	r.log.Error("withdrawal unresolved: not found at the desk; it will not be retried, an operator must check it",
		append(withdrawalFields(w), zap.Duration("age", age), zap.String("error", w.Error))...)
	return nil
}

// follow checks the desk's request of a submitted withdrawal against its
// intent (a difference pauses treasuryd), then records its status.
func (r *Rebalancer) follow(ctx context.Context, w journal.Withdrawal, req astra.WithdrawalRequest) error {
	handled, mismatch := r.checkDetails(ctx, w, req)
	if handled {
		mismatch = nil // paused once already; an operator resumed since
	}
	if req.Status == w.DeskStatus {
		return mismatch
	}
	return errors.Join(mismatch, r.record(ctx, w, req))
}

// record journals the desk's status of a submitted withdrawal.
func (r *Rebalancer) record(ctx context.Context, w journal.Withdrawal, req astra.WithdrawalRequest) error {
	fields := append(withdrawalFields(w), zap.String("desk_id", req.ID), zap.String("desk_status", req.Status))
	state, counted := journal.WithdrawalSubmitted, true
	errMsg := ""
	switch req.Status {
	case astra.StatusCompleted:
		state = journal.WithdrawalCompleted
	case astra.StatusFailed:
		state, errMsg = journal.WithdrawalFailed, req.Error
	case astra.StatusPending, astra.StatusProcessing, astra.StatusSent:
	default:
		// Not a documented status: kept for the operator, not a metric label.
		counted = false
	}
	if err := r.store.UpdateWithdrawal(ctx, w.ID, state, "", req.Status, errMsg); err != nil {
		return fmt.Errorf("withdraw: journal withdrawal %d desk status %s: %w", w.ID, req.Status, err)
	}
	if counted {
		r.m.Withdrawals.WithLabelValues(w.Rule, req.Status).Inc()
	}
	switch {
	case state == journal.WithdrawalFailed:
		r.log.Warn("withdrawal failed at the desk", append(fields, zap.String("error", req.Error))...)
	case state == journal.WithdrawalCompleted:
		r.log.Info("withdrawal completed", append(fields, zap.String("network_tx_id", req.NetworkTxID))...)
	case !counted:
		r.log.Warn("withdrawal has an undocumented desk status", fields...)
	default:
		r.log.Info("withdrawal status", fields...)
	}
	return nil
}

// matches reports whether the desk request req may be the one the intent w
// created: same symbol, amount, network and address, created no earlier than
// the intent (less the clock skew allowance).
func matches(w journal.Withdrawal, req astra.WithdrawalRequest) bool {
	return req.Symbol == w.Asset && req.Amount.Equal(w.Amount) && req.Network == w.Network &&
		req.Address == w.Address && !req.CreatedAt.Before(w.CreatedAt.Add(-matchSkew))
}

func matchesAny(ws []journal.Withdrawal, req astra.WithdrawalRequest) bool {
	for _, w := range ws {
		if matches(w, req) {
			return true
		}
	}
	return false
}

// oldestMatch picks the oldest untaken candidate for w: intents are matched
// oldest first, so two identical intents take the desk's requests in order.
func oldestMatch(w journal.Withdrawal, cands []astra.WithdrawalRequest, taken map[string]bool) (astra.WithdrawalRequest, bool) {
	for i := len(cands) - 1; i >= 0; i-- {
		if c := cands[i]; !taken[c.ID] && matches(w, c) {
			return c, true
		}
	}
	return astra.WithdrawalRequest{}, false
}

func withdrawalFields(w journal.Withdrawal) []zap.Field {
	return []zap.Field{
		zap.Int64("id", w.ID), zap.String("rule", w.Rule), zap.String("asset", w.Asset),
		zap.String("network", w.Network), zap.String("address", w.Address), zap.Stringer("amount", w.Amount),
		zap.Time("created_at", w.CreatedAt),
	}
}
