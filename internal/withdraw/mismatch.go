package withdraw

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/journal"
)

// ReasonMismatch is the break kind and the pause reason of a withdrawal the
// desk reports with details that differ from its intent (SPEC 5.3, 7.14).
const ReasonMismatch = "withdrawal_mismatch"

// ErrMismatch: the desk reports a withdrawal of ours with other details than
// its intent; treasuryd has paused itself.
var ErrMismatch = errors.New("withdraw: withdrawal_mismatch: the desk's request differs from the intent")

// Halter pauses treasuryd for a reason, persisted, until an operator
// resumes (*operator.Switch).
type Halter interface {
	Halt(ctx context.Context, reason string) error
}

// Differences lists how the desk request req differs from the intent w in
// symbol, amount, network and address; nil when it does not.
func Differences(w journal.Withdrawal, req astra.WithdrawalRequest) []string {
	var d []string
	if req.Symbol != w.Asset {
		d = append(d, fmt.Sprintf("symbol %q, not %q", req.Symbol, w.Asset))
	}
	if !req.Amount.Equal(w.Amount) {
		d = append(d, fmt.Sprintf("amount %s, not %s", req.Amount, w.Amount))
	}
	if req.Network != w.Network {
		d = append(d, fmt.Sprintf("network %q, not %q", req.Network, w.Network))
	}
	if req.Address != w.Address {
		d = append(d, fmt.Sprintf("address %q, not %q", req.Address, w.Address))
	}
	return d
}

// checkDetails compares what the desk reports of the withdrawal w with its
// intent; a difference is handled as a mismatch (a pause, the first time)
// and returned as ErrMismatch, every time. handled reports that this
// difference had been handled before: an operator has resumed since.
func (r *Rebalancer) checkDetails(ctx context.Context, w journal.Withdrawal, req astra.WithdrawalRequest) (handled bool, err error) {
	diff := Differences(w, req)
	if diff == nil {
		return false, nil
	}
	fresh, herr := r.mismatch(ctx, w, req, diff)
	return !fresh && herr == nil,
		errors.Join(fmt.Errorf("%w: withdrawal %d is desk request %s with %v", ErrMismatch, w.ID, req.ID, diff), herr)
}

// Mismatch is told by the reconciliation of a withdrawal of ours that the
// desk reports with other details than its intent (req being the desk's
// request): it does what the rebalancer does when it sees one itself. It
// returns nil when they do not differ.
func (r *Rebalancer) Mismatch(ctx context.Context, w journal.Withdrawal, req astra.WithdrawalRequest) error {
	diff := Differences(w, req)
	if diff == nil {
		return nil
	}
	_, err := r.mismatch(ctx, w, req, diff)
	return err
}

// mismatch pauses treasuryd at once (persisted), then records the mismatch
// in the journal, so that after an operator's resume the same withdrawal,
// still reported the same way, does not pause it again; a crash between the
// two pauses again at the next sighting, which is harmless. The withdrawal
// itself keeps its state and is followed on: the desk's statuses are still
// recorded, and its amount still counts against max_daily. fresh reports a
// first sighting (false: handled before, nothing done).
func (r *Rebalancer) mismatch(ctx context.Context, w journal.Withdrawal, req astra.WithdrawalRequest, diff []string) (fresh bool, err error) {
	// Final writes: they must not be lost to a Stop or a caller's deadline.
	ctx = context.WithoutCancel(ctx)
	fields := append(withdrawalFields(w), zap.String("kind", ReasonMismatch), zap.String("desk_id", req.ID),
		zap.String("desk_symbol", req.Symbol), zap.Stringer("desk_amount", req.Amount),
		zap.String("desk_network", req.Network), zap.String("desk_address", req.Address), zap.Strings("differences", diff))
	seen, err := r.store.MismatchRecorded(ctx, w.ID)
	if err != nil {
		// Unknown: pause anyway (fail closed).
		r.log.Error("withdrawal mismatch record unreadable; pausing", append(fields, zap.Error(err))...)
		seen = false
	}
	if seen {
		r.log.Debug("withdrawal mismatch already handled; an operator resumed since", fields...)
		return false, nil
	}
	r.log.Error("withdrawal_mismatch: the desk reports a withdrawal of ours with other details than its intent; pausing",
		fields...)
	r.m.Withdrawals.WithLabelValues(w.Rule, statusMismatch).Inc()
	var errs []error
	if r.halt == nil {
		errs = append(errs, errors.New("withdraw: no pause switch to engage"))
	} else if err := r.halt.Halt(ctx, ReasonMismatch); err != nil {
		// Not recorded either: the next sighting tries again.
		return true, fmt.Errorf("withdraw: pause on withdrawal_mismatch: %w", err)
	}
	detail := fmt.Sprintf("desk request %s: %v", req.ID, diff)
	if err := r.store.RecordMismatch(ctx, w.ID, detail); err != nil {
		errs = append(errs, err)
	}
	return true, errors.Join(errs...)
}
