package withdraw

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/journal"
)

// ErrNotUnresolved: Resolve was asked about a withdrawal that is not waiting
// for an operator.
var ErrNotUnresolved = errors.New("withdraw: withdrawal is not unresolved")

// Resolve is an operator's answer for an unresolved withdrawal, the one way
// its rule runs again. With deskID, the operator found it at the desk: it is
// checked against the desk's list (no other journaled withdrawal holds that
// id, created after the intent) and followed from there; a request whose
// asset, amount, network or address differ from the intent is a
// withdrawal_mismatch, which pauses treasuryd. Without, the operator says it
// never executed: refused (ErrMayHaveExecuted) while the desk lists a
// request matching the intent, else it is marked failed.
func (r *Rebalancer) Resolve(ctx context.Context, id int64, deskID, by string) error {
	if r.stopping.Load() {
		return ErrStopped
	}
	// Bound to the rebalancer's life, so a slow desk list cannot hold up a
	// shutdown through the lock Stop waits for.
	ctx, cancel := r.bind(ctx)
	defer cancel()
	r.work.Lock()
	defer r.work.Unlock()
	if r.stopping.Load() {
		return ErrStopped
	}
	w, err := r.store.WithdrawalByID(ctx, id)
	if err != nil {
		return err
	}
	if w.State != journal.WithdrawalUnresolved {
		return fmt.Errorf("%w: withdrawal %d is %s", ErrNotUnresolved, id, w.State)
	}
	log := r.log.With(append(withdrawalFields(w), zap.String("by", by))...)
	held, err := r.store.Withdrawals(ctx, journal.WithdrawalFilter{})
	if err != nil {
		return err
	}
	heldBy := map[string]int64{}
	for _, o := range held {
		if o.DeskID != "" && o.ID != id {
			heldBy[o.DeskID] = o.ID
		}
	}
	if deskID == "" {
		return r.resolveNeverExecuted(ctx, w, heldBy, by, log)
	}
	if other, ok := heldBy[deskID]; ok {
		return fmt.Errorf("withdraw: desk request %s already belongs to withdrawal %d", deskID, other)
	}
	var found *astra.WithdrawalRequest
	err = r.desk.WithdrawalRequests(ctx, func(req astra.WithdrawalRequest) error {
		if req.ID == deskID {
			found = &req
			return errListDone
		}
		return nil
	})
	if err != nil && !errors.Is(err, errListDone) {
		return fmt.Errorf("withdraw: read the desk's withdrawal requests: %w", err)
	}
	if found == nil {
		return fmt.Errorf("withdraw: the desk lists no withdrawal request %s", deskID)
	}
	if found.CreatedAt.Before(w.CreatedAt.Add(-matchSkew)) {
		return fmt.Errorf("withdraw: desk request %s was created at %s, before withdrawal %d's intent (%s): it cannot be this one",
			deskID, found.CreatedAt.UTC().Format(time.RFC3339), id, w.CreatedAt.UTC().Format(time.RFC3339))
	}
	// The operator says this request is ours: what the desk reports of it
	// must be what we asked for, or it is a substitution (SPEC 5.3).
	if handled, err := r.checkDetails(ctx, w, *found); err != nil {
		if handled {
			return err
		}
		return fmt.Errorf("%w; treasuryd is paused (reason %s) until an operator resumes", err, ReasonMismatch)
	}
	if err := r.store.ResolveWithdrawal(ctx, id, journal.WithdrawalSubmitted, deskID, "", by); err != nil {
		return err
	}
	r.m.Withdrawals.WithLabelValues(w.Rule, journal.WithdrawalSubmitted).Inc()
	log.Warn("unresolved withdrawal resolved to its desk request", zap.String("desk_id", deskID), zap.String("desk_status", found.Status))
	// Take on the request's status now: one already completed or failed
	// ends here and frees its rule.
	w.State, w.DeskID, w.DeskStatus = journal.WithdrawalSubmitted, deskID, ""
	if err := r.follow(ctx, w, *found); err != nil {
		return err
	}
	return r.refresh(context.WithoutCancel(ctx))
}

// maxNeverExecutedScan bounds how many of the desk's requests created since
// an intent are read to refuse a never_executed answer: the list is streamed
// newest first, and an account's withdrawals since one unresolved intent are
// few; past this many, the answer is refused rather than guessed.
const maxNeverExecutedScan = 10000

// ErrMayHaveExecuted: a never_executed answer was refused because the desk
// lists a request that matches the intent.
var ErrMayHaveExecuted = errors.New("withdraw: the desk lists a request matching this withdrawal")

// resolveNeverExecuted marks w failed on an operator's word that it never
// executed, unless the desk's list holds a request matching its intent (same
// symbol, amount, network and address, created after it) that no other
// withdrawal holds: then it may well have executed, and the answer is
// refused. Called with r.work held.
func (r *Rebalancer) resolveNeverExecuted(ctx context.Context, w journal.Withdrawal, heldBy map[string]int64, by string, log *zap.Logger) error {
	var match *astra.WithdrawalRequest
	scanned := 0
	err := r.desk.WithdrawalRequests(ctx, func(req astra.WithdrawalRequest) error {
		if req.CreatedAt.Before(w.CreatedAt.Add(-matchSkew)) {
			return errListDone // newest first: nothing older can be it
		}
		if scanned++; scanned > maxNeverExecutedScan {
			return fmt.Errorf("withdraw: more than %d desk requests since withdrawal %d's intent; check it by hand and resolve with its desk_id", maxNeverExecutedScan, w.ID)
		}
		if _, taken := heldBy[req.ID]; !taken && matches(w, req) {
			match = &req
			return errListDone
		}
		return nil
	})
	if err != nil && !errors.Is(err, errListDone) {
		return fmt.Errorf("withdraw: read the desk's withdrawal requests before accepting never_executed: %w", err)
	}
	if match != nil {
		return fmt.Errorf("%w: withdrawal %d cannot be resolved as never executed: desk request %s (%s %s to %s on %s, created %s, status %s) matches it; if it is this withdrawal, resolve with {\"desk_id\": %q}",
			ErrMayHaveExecuted, w.ID, match.ID, match.Amount, match.Symbol, match.Address, match.Network,
			match.CreatedAt.UTC().Format(time.RFC3339), match.Status, match.ID)
	}
	if err := r.store.ResolveWithdrawal(ctx, w.ID, journal.WithdrawalFailed, "", "resolved by an operator: never executed", by); err != nil {
		return err
	}
	r.m.Withdrawals.WithLabelValues(w.Rule, journal.WithdrawalFailed).Inc()
	log.Warn("unresolved withdrawal resolved as never executed")
	return r.refresh(context.WithoutCancel(ctx))
}
