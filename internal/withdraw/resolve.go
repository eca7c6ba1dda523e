package withdraw

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/journal"
)

// ErrNotUnresolved: Resolve was asked about a withdrawal that is not waiting
// for an operator.
var ErrNotUnresolved = errors.New("withdraw: withdrawal is not unresolved")

// Resolve is an operator's answer for an unresolved withdrawal, the one way
// its rule runs again. With deskID, the operator found it at the desk: it is
// checked against the desk's list (same asset, amount, network, address, and
// no other journaled withdrawal holds that id) and followed from there.
// Without, the operator confirms it never executed: it is marked failed.
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
	if deskID == "" {
		if err := r.store.ResolveWithdrawal(ctx, id, journal.WithdrawalFailed, "", "resolved by an operator: never executed", by); err != nil {
			return err
		}
		r.m.Withdrawals.WithLabelValues(w.Rule, journal.WithdrawalFailed).Inc()
		log.Warn("unresolved withdrawal resolved as never executed")
		return r.refresh(context.WithoutCancel(ctx))
	}
	held, err := r.store.Withdrawals(ctx, journal.WithdrawalFilter{})
	if err != nil {
		return err
	}
	for _, o := range held {
		if o.DeskID == deskID && o.ID != id {
			return fmt.Errorf("withdraw: desk request %s already belongs to withdrawal %d", deskID, o.ID)
		}
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
	if found.Symbol != w.Asset || !found.Amount.Equal(w.Amount) || found.Network != w.Network || found.Address != w.Address {
		return fmt.Errorf("withdraw: desk request %s is %s %s to %s on %s, not this withdrawal's %s %s to %s on %s",
			deskID, found.Amount, found.Symbol, found.Address, found.Network, w.Amount, w.Asset, w.Address, w.Network)
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
