// Package ledger reconciles the desk against itself and against treasuryd's
// journal (SPEC 5.4): the net of the raw transaction history against the
// balances, per instrument; the journal's accepts against the desk's converts
// (settling accepts whose outcome was unknown); the journal's withdrawals
// against the desk's withdrawal requests. The history is streamed: memory
// does not grow with its length beyond one 8-byte hash per idemKey.
package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/withdraw"
)

// Desk is what the reconciliation reads from the desk (*astra.Client).
type Desk interface {
	AccountID() string
	Balances(ctx context.Context) ([]astra.Balance, error)
	Transactions(ctx context.Context, fn func(astra.Transaction) error) error
	Converts(ctx context.Context, fn func(astra.Convert) error) error
	WithdrawalRequests(ctx context.Context, fn func(astra.WithdrawalRequest) error) error
	Transfers(ctx context.Context, fn func(astra.Transfer) error) error
}

// Store is the part of the journal the reconciliation reads and writes.
type Store interface {
	Accepts(ctx context.Context, f journal.AcceptFilter) ([]journal.Accept, error)
	SettleAccept(ctx context.Context, id int64, result, convertID string) error
	Withdrawals(ctx context.Context, f journal.WithdrawalFilter) ([]journal.Withdrawal, error)
	SaveReport(ctx context.Context, r journal.Report) (int64, error)
	LastReport(ctx context.Context) (journal.Report, bool, error)
}

const (
	// clockSkew is how much earlier than our own record a desk record may be
	// stamped and still match it: the desk's clock and ours differ.
	clockSkew = time.Minute
	// settleGrace: an ok accept younger than this is not judged yet; the
	// desk's history may lag its answer.
	settleGrace = 30 * time.Second
	// missingGrace: an unknown accept is settled as missing only when no
	// convert has appeared for this long. It is far above any request
	// timeout, so the POST cannot still be in flight, and above any lag of
	// the desk's history: settling as missing frees the accept's share of
	// the caps (the running daemon within seconds, any later start from the
	// journal), so doing it early could exceed them.
	missingGrace = 5 * time.Minute
	// failedWindow: a failed withdrawal is reported as a break while it was
	// updated within this window, not forever (history never changes).
	failedWindow = 24 * time.Hour
	// maxTransfers bounds the deposits and completed withdrawals a report
	// keeps (newest first); the history itself can be unbounded.
	maxTransfers = 200
)

// Deps are the reconciler's collaborators.
type Deps struct {
	Log     *zap.Logger
	Metrics *metrics.Metrics // optional
	Desk    Desk
	Journal Store
	// Tolerance is the absolute drift allowed per asset (current policy).
	Tolerance func() decimal.Decimal
	// Epoch is when this journal started: desk trades and withdrawals older
	// than it predate treasuryd and are not expected in the journal. A zero
	// time treats the whole history as treasuryd's.
	Epoch func(ctx context.Context) (time.Time, error)
	// Schedule is the cron spec of reconcile.schedule ("" runs only on demand).
	Schedule string
	Now      func() time.Time
	// Progress, when set, is called every few thousand transactions read.
	Progress func(transactions int64)
	// Mismatch, when set, is told of every withdrawal of ours the desk
	// reports with other details than its intent (the daemon pauses on it).
	Mismatch MismatchHandler
	// AuditHead, when set, reads the audit chain's head, which every
	// report's log line carries so an outside system can pin it (SPEC 13).
	AuditHead func(ctx context.Context) (journal.AuditHead, error)
}

// MismatchHandler handles a withdrawal_mismatch: w is the journaled intent,
// req what the desk reports of it.
type MismatchHandler func(ctx context.Context, w journal.Withdrawal, req astra.WithdrawalRequest) error

// Reconciler runs reconciliations, on demand and on a schedule.
type Reconciler struct {
	d    Deps
	run  sync.Mutex // one reconciliation at a time
	mu   sync.Mutex
	last *Report
	err  error

	cron   *cron.Cron
	cancel context.CancelFunc
}

// New builds a reconciler; no I/O.
func New(d Deps) *Reconciler {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	if d.Tolerance == nil {
		d.Tolerance = func() decimal.Decimal { return decimal.Zero }
	}
	return &Reconciler{d: d}
}

// Start schedules runs on Deps.Schedule; it returns at once.
func (r *Reconciler) Start(ctx context.Context) error {
	r.restoreLast(ctx)
	if r.d.Schedule == "" {
		return nil
	}
	sched, err := cron.ParseStandard(r.d.Schedule)
	if err != nil {
		return fmt.Errorf("reconcile.schedule %q: %w", r.d.Schedule, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.cron = cron.New()
	r.cron.Schedule(sched, cron.FuncJob(func() {
		if !r.run.TryLock() {
			r.d.Log.Warn("reconciliation still running; skipping this tick")
			return
		}
		r.run.Unlock()
		if _, err := r.Run(runCtx); err != nil && runCtx.Err() == nil {
			r.d.Log.Error("reconciliation failed", zap.Error(err))
		}
	}))
	r.cron.Start()
	return nil
}

// Stop cancels a running reconciliation and waits for it; safe twice.
func (r *Reconciler) Stop(ctx context.Context) error {
	if r.cron == nil {
		return nil
	}
	r.cancel()
	done := r.cron.Stop().Done()
	r.cron = nil
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Last is the newest report and the newest run error.
func (r *Reconciler) Last() (*Report, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, r.err
}

// Summary is what /status shows of the last reconciliation.
type Summary struct {
	At           time.Time      `json:"at,omitempty"`
	Clean        bool           `json:"clean"`
	Breaks       map[string]int `json:"breaks,omitempty"`
	Transactions int64          `json:"transactions"`
	Error        string         `json:"error,omitempty"`
}

// Status summarises the last run for /status.
func (r *Reconciler) Status() any {
	rep, err := r.Last()
	s := Summary{}
	if rep != nil {
		s.At, s.Clean, s.Transactions = rep.At, rep.Clean(), rep.Transactions
		s.Breaks = map[string]int{}
		for k, n := range rep.Counts() {
			if n > 0 {
				s.Breaks[k] = n
			}
		}
	}
	if err != nil {
		s.Error = err.Error()
	}
	if rep == nil && err == nil {
		return nil
	}
	return s
}

// Run performs one reconciliation, journals the report, logs it and reflects
// it in metrics.
func (r *Reconciler) Run(ctx context.Context) (*Report, error) {
	r.run.Lock()
	defer r.run.Unlock()
	rep, err := r.reconcile(ctx)
	r.mu.Lock()
	if err == nil {
		r.last = rep
	}
	r.err = err
	r.mu.Unlock()
	m := r.d.Metrics
	if err != nil {
		if m != nil {
			m.ReconcileRuns.WithLabelValues("error").Inc()
		}
		return nil, err
	}
	body, jerr := json.Marshal(rep)
	if jerr == nil {
		_, jerr = r.d.Journal.SaveReport(context.WithoutCancel(ctx), journal.Report{At: rep.At, Clean: rep.Clean(), Body: body})
	}
	if jerr != nil {
		// The report is still returned and metered; losing its journal copy
		// loses no money.
		r.d.Log.Error("reconciliation report not journaled", zap.Error(jerr))
	}
	if m != nil {
		result := "clean"
		if !rep.Clean() {
			result = "breaks"
		}
		m.ReconcileRuns.WithLabelValues(result).Inc()
		r.meter(rep)
	}
	fields := []zap.Field{zap.Int64("transactions", rep.Transactions), zap.Duration("took", rep.Duration), zap.Int("break_count", len(rep.Breaks)), zap.Int("settled", len(rep.Settled))}
	if r.d.AuditHead != nil {
		// Read after the report's own entry was appended: the head covers it.
		if h, err := r.d.AuditHead(context.WithoutCancel(ctx)); err != nil {
			fields = append(fields, zap.NamedError("audit_error", err))
		} else {
			fields = append(fields, zap.Int64("audit_sequence", h.Sequence), zap.String("audit_hash", h.Hash))
		}
	}
	if rep.Clean() {
		r.d.Log.Info("reconciliation clean", fields...)
	} else {
		r.d.Log.Warn("reconciliation found breaks", append(fields, zap.Any("breaks", rep.Breaks))...)
	}
	return rep, nil
}

// instrument accumulates one instrument's history.
type instrument struct {
	symbol  string
	balance decimal.Decimal
	net     decimal.Decimal
	count   int64
	moving  bool            // the balance changed while the history was read
	before  decimal.Decimal // the balance read before the history, when moving
}

func (r *Reconciler) reconcile(ctx context.Context) (*Report, error) {
	start := r.d.Now()
	rep := &Report{At: start.UTC(), Breaks: []Break{}}
	account := r.d.Desk.AccountID()
	var epoch time.Time
	if r.d.Epoch != nil {
		e, err := r.d.Epoch(ctx)
		if err != nil {
			return nil, fmt.Errorf("journal epoch: %w", err)
		}
		epoch = e
	}

	// Journal records older than the epoch belong to an earlier desk (only
	// possible when the epoch is raised, as the sandbox does: its simulated
	// desk is new on every start while its journal is not).
	// Journal times and the epoch are both our clock: no skew allowance
	// (that is for desk timestamps only).
	since := epoch

	// 1. Balances against the net of the transaction history.
	insts, err := r.history(ctx, rep, account)
	if err != nil {
		return nil, err
	}
	tol := r.d.Tolerance()
	ids := make([]string, 0, len(insts))
	for id := range insts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := insts[ids[i]], insts[ids[j]]
		if a.symbol != b.symbol {
			return a.symbol < b.symbol
		}
		return ids[i] < ids[j]
	})
	for _, id := range ids {
		in := insts[id]
		name := in.symbol
		if name == "" {
			name = id
		}
		drift := in.balance.Sub(in.net)
		rep.Assets = append(rep.Assets, Asset{Asset: name, InstrumentID: id, Balance: in.balance, Net: in.net, Drift: drift, Transactions: in.count, Moving: in.moving})
		if in.moving {
			// The balance changed while its history was read, on every try:
			// the history describes some moment between the two reads, so
			// its net must lie between them (within the tolerance).
			lo, hi := in.before, in.balance
			if lo.GreaterThan(hi) {
				lo, hi = hi, lo
			}
			if in.net.LessThan(lo.Sub(tol)) || in.net.GreaterThan(hi.Add(tol)) {
				rep.Breaks = append(rep.Breaks, Break{Kind: BalanceDrift, Asset: name, Ref: id,
					Detail: fmt.Sprintf("balance moved from %s to %s while its history was read, and the history nets to %s, outside that range by more than tolerance %s", in.before, in.balance, in.net, tol)})
			}
			continue
		}
		if drift.Abs().GreaterThan(tol) {
			rep.Breaks = append(rep.Breaks, Break{Kind: BalanceDrift, Asset: name, Ref: id,
				Detail: fmt.Sprintf("balance %s, history nets to %s: drift %s beyond tolerance %s", in.balance, in.net, drift, tol)})
		}
	}

	// 2. The journal's accepts against the desk's converts.
	if err := r.matchTrades(ctx, rep, since, epoch, start); err != nil {
		return nil, err
	}
	// 3. The journal's withdrawals against the desk's requests.
	if err := r.matchWithdrawals(ctx, rep, since, epoch, start); err != nil {
		return nil, err
	}
	// 4. Transfers: deposits and completed withdrawals, for the report.
	err = r.d.Desk.Transfers(ctx, func(t astra.Transfer) error {
		line := Transfer{ID: t.ID, Type: t.TransferType, Asset: t.Symbol, Amount: t.Amount, WithdrawalID: t.WithdrawalID, At: t.CreatedAt}
		switch {
		case len(rep.Deposits)+len(rep.Withdrawals) >= maxTransfers:
			rep.TransfersTruncated = true
		case t.TransferType == "deposit":
			rep.Deposits = append(rep.Deposits, line)
		case t.TransferType == "withdrawal" && t.WithdrawalID != "":
			rep.Withdrawals = append(rep.Withdrawals, line)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("transfers: %w", err)
	}
	rep.Duration = r.d.Now().Sub(start)
	return rep, nil
}

// historyTries bounds how often a run re-reads the history when the
// balances move while it is read (a busy account): after that, the moving
// instruments are reported without a drift judgment.
const historyTries = 3

// history reads the balances, the whole transaction history, and the
// balances again. Only when both balance reads agree does the history
// describe the same moment as the balance; a trade or withdrawal booked in
// between would otherwise read as drift. The history is streamed: memory
// holds one entry per instrument and one 8-byte hash per idemKey.
func (r *Reconciler) history(ctx context.Context, rep *Report, account string) (map[string]*instrument, error) {
	var insts map[string]*instrument
	for try := 1; ; try++ {
		before, err := r.d.Desk.Balances(ctx)
		if err != nil {
			return nil, fmt.Errorf("balances: %w", err)
		}
		insts = map[string]*instrument{}
		rep.Transactions = 0
		dups := rep.Breaks[:0:0]
		if err := r.stream(ctx, rep, account, insts, &dups); err != nil {
			return nil, err
		}
		after, err := r.d.Desk.Balances(ctx)
		if err != nil {
			return nil, fmt.Errorf("balances: %w", err)
		}
		moving := false
		amounts := map[string]decimal.Decimal{}
		for _, b := range before {
			amounts[b.InstrumentID] = b.Amount
		}
		for _, b := range after {
			in := insts[b.InstrumentID]
			if in == nil {
				in = &instrument{symbol: b.Symbol}
				insts[b.InstrumentID] = in
			}
			if in.symbol == "" {
				in.symbol = b.Symbol
			}
			in.balance = b.Amount
			if prev, ok := amounts[b.InstrumentID]; !ok || !prev.Equal(b.Amount) {
				in.moving, in.before = true, prev // absent before: zero
				moving = true
			}
			delete(amounts, b.InstrumentID)
		}
		for id := range amounts { // listed before, gone after
			if in := insts[id]; in != nil {
				in.moving = true
			}
			moving = true
		}
		if !moving || try == historyTries {
			rep.Breaks = append(rep.Breaks, dups...)
			return insts, nil
		}
		r.d.Log.Debug("balances moved while the history was read; reading again", zap.Int("try", try))
	}
}

// stream folds the transaction history into insts and notes repeated
// idemKeys in dups.
func (r *Reconciler) stream(ctx context.Context, rep *Report, account string, insts map[string]*instrument, dups *[]Break) error {
	get := func(id, sym string) *instrument {
		in := insts[id]
		if in == nil {
			in = &instrument{symbol: sym}
			insts[id] = in
		}
		if in.symbol == "" {
			in.symbol = sym
		}
		return in
	}
	seed := maphash.MakeSeed()
	seen := map[uint64]struct{}{}
	reported := map[uint64]bool{}
	err := r.d.Desk.Transactions(ctx, func(t astra.Transaction) error {
		rep.Transactions++
		if r.d.Progress != nil && rep.Transactions%10000 == 0 {
			r.d.Progress(rep.Transactions)
		}
		in := get(t.InstrumentID, t.Symbol)
		in.count++
		credit, debit := t.CreditTo == account, t.DebitFrom == account
		switch {
		case credit && !debit:
			in.net = in.net.Add(t.Amount)
		case debit && !credit:
			in.net = in.net.Sub(t.Amount)
		}
		if t.IdemKey != "" {
			// An 8-byte hash per key keeps a million keys in a few tens of
			// MB; a collision can only report a duplicate that is not one,
			// never hide a real one.
			h := maphash.String(seed, t.IdemKey)
			if _, dup := seen[h]; dup {
				if !reported[h] {
					reported[h] = true
					*dups = append(*dups, Break{Kind: DuplicateTransaction, Asset: t.Symbol, Ref: t.IdemKey,
						Detail: fmt.Sprintf("idemKey %q booked more than once (transaction %s, %s %s)", t.IdemKey, t.DisplayID, t.Amount, t.Symbol)})
				}
			} else {
				seen[h] = struct{}{}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("transactions: %w", err)
	}
	if r.d.Progress != nil {
		r.d.Progress(rep.Transactions)
	}
	return nil
}

// tradeKey identifies a trade by what was bought and sold; decimal String()
// is canonical (no trailing zeros), so "1.50" and "1.5" agree.
func tradeKey(buySym string, buyQty decimal.Decimal, sellSym string, sellQty decimal.Decimal) string {
	return buySym + "|" + buyQty.String() + "|" + sellSym + "|" + sellQty.String()
}

// acceptKey is the trade an accept makes: a sell program buys the quote asset
// and sells the base; a buy program the reverse.
func acceptKey(a journal.Accept) string {
	if a.Side == "buy" {
		return tradeKey(a.BaseAsset, a.BaseQty, a.QuoteAsset, a.QuoteQty)
	}
	return tradeKey(a.QuoteAsset, a.QuoteQty, a.BaseAsset, a.BaseQty)
}

type convertRef struct {
	c       astra.Convert
	matched bool
}

// matchTrades reads the desk's converts, then the journal's accepts: an
// accept is journaled before it is sent, so every convert the desk listed is
// explained by an accept read after it, and no trade of treasuryd's own can
// look unexpected. Accepts journaled while the list was read are young and
// not judged missing.
func (r *Reconciler) matchTrades(ctx context.Context, rep *Report, since, epoch, now time.Time) error {
	// Only converts that could belong to the journal are held: those after
	// the epoch (minus skew). Their number is bounded by treasuryd's own
	// activity plus any trades someone else made since.
	byKey := map[string][]*convertRef{}
	var all []*convertRef
	err := r.d.Desk.Converts(ctx, func(c astra.Convert) error {
		if !epoch.IsZero() && c.CreatedAt.Before(epoch.Add(-clockSkew)) {
			return nil
		}
		ref := &convertRef{c: c}
		k := tradeKey(c.BuySymbol, c.BuyQuantity, c.SellSymbol, c.SellQuantity)
		byKey[k] = append(byKey[k], ref)
		all = append(all, ref)
		return nil
	})
	if err != nil {
		return fmt.Errorf("converts: %w", err)
	}
	for _, refs := range byKey { // oldest first, so each accept takes the earliest fit
		sort.Slice(refs, func(i, j int) bool { return refs[i].c.CreatedAt.Before(refs[j].c.CreatedAt) })
	}
	accepts, err := r.d.Journal.Accepts(ctx, journal.AcceptFilter{Since: since, Results: []string{journal.AcceptOK, journal.AcceptUnknown, journal.AcceptPending}})
	if err != nil {
		return fmt.Errorf("journal accepts: %w", err)
	}
	sort.Slice(accepts, func(i, j int) bool { return accepts[i].SentAt.Before(accepts[j].SentAt) })
	// Accepts answered ok certainly have a convert: they choose first, each
	// the unmatched one nearest its send time; unknown ones share what is
	// left, so one never sent cannot take a convert that is not its own.
	hits := make([]*convertRef, len(accepts))
	for _, okPass := range []bool{true, false} {
		for i, a := range accepts {
			if (a.Result == journal.AcceptOK) != okPass {
				continue
			}
			var hit *convertRef
			var best time.Duration
			for _, ref := range byKey[acceptKey(a)] {
				if ref.matched || ref.c.CreatedAt.Before(a.SentAt.Add(-clockSkew)) {
					continue
				}
				d := ref.c.CreatedAt.Sub(a.SentAt)
				if d < 0 {
					d = -d
				}
				if hit == nil || d < best {
					hit, best = ref, d
				}
			}
			if hit != nil {
				hit.matched = true
			}
			hits[i] = hit
		}
	}
	for i, a := range accepts {
		hit := hits[i]
		young := now.Sub(a.SentAt) < settleGrace
		switch a.Result {
		case journal.AcceptOK:
			if hit == nil && !young {
				rep.Breaks = append(rep.Breaks, Break{Kind: MissingTrade, Asset: a.BaseAsset, Ref: fmt.Sprint(a.ID),
					Detail: fmt.Sprintf("accept %d of %s (quote %s, %s %s) answered ok but no convert matches", a.ID, a.Program, a.QuoteID, a.BaseQty, a.BaseAsset)})
			}
		case journal.AcceptPending:
			// Still in the daemon's hands (or of a daemon that died: its next
			// start reads it as unknown). Never settled from here; a convert
			// it made is simply not unexpected.
			continue
		case journal.AcceptUnknown:
			if hit == nil && now.Sub(a.SentAt) < missingGrace {
				continue
			}
			result, cid := journal.AcceptMissing, ""
			if hit != nil {
				result, cid = journal.AcceptOK, hit.c.DisplayID
			}
			if err := r.d.Journal.SettleAccept(context.WithoutCancel(ctx), a.ID, result, cid); err != nil {
				return fmt.Errorf("settle accept %d: %w", a.ID, err)
			}
			rep.Settled = append(rep.Settled, Settlement{AcceptID: a.ID, Program: a.Program, QuoteID: a.QuoteID, Result: result, ConvertID: cid})
			r.d.Log.Info("unknown accept settled", zap.Int64("accept", a.ID), zap.String("program", a.Program), zap.String("result", result), zap.String("convert", cid))
		}
	}
	for _, ref := range all {
		if ref.matched || now.Sub(ref.c.CreatedAt) < 0 {
			continue
		}
		c := ref.c
		rep.Breaks = append(rep.Breaks, Break{Kind: UnexpectedTrade, Asset: c.SellSymbol, Ref: c.DisplayID,
			Detail: fmt.Sprintf("convert %s (bought %s %s, sold %s %s at %s) is not in the journal", c.DisplayID, c.BuyQuantity, c.BuySymbol, c.SellQuantity, c.SellSymbol, c.CreatedAt.UTC().Format(time.RFC3339))})
	}
	return nil
}

// matchWithdrawals reads the desk's withdrawal requests, then the journal:
// an intent is journaled (flushed) before its POST, so every request the
// desk listed that treasuryd made has its row by then, and none of its own
// can look unexpected. A journaled one created after the run started may not
// be listed yet and is not judged missing.
func (r *Reconciler) matchWithdrawals(ctx context.Context, rep *Report, since, epoch, now time.Time) error {
	// Requests older than the epoch predate this journal; a failed one is
	// still reported while recent. What is kept is bounded by treasuryd's
	// own activity since the epoch plus anyone else's.
	var desk []astra.WithdrawalRequest
	err := r.d.Desk.WithdrawalRequests(ctx, func(d astra.WithdrawalRequest) error {
		if epoch.IsZero() || !d.CreatedAt.Before(epoch.Add(-clockSkew)) || d.Status == astra.StatusFailed {
			desk = append(desk, d)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("withdrawal requests: %w", err)
	}
	ws, err := r.d.Journal.Withdrawals(ctx, journal.WithdrawalFilter{Since: since})
	if err != nil {
		return fmt.Errorf("journal withdrawals: %w", err)
	}
	byDeskID := map[string]journal.Withdrawal{}
	var pendingIntents []journal.Withdrawal // no desk id yet: the rebalancer is settling them
	for _, w := range ws {
		switch {
		case w.DeskID != "":
			byDeskID[w.DeskID] = w
		case w.State == journal.WithdrawalIntent || w.State == journal.WithdrawalUnknown || w.State == journal.WithdrawalUnresolved:
			pendingIntents = append(pendingIntents, w)
		}
	}
	seen := map[string]bool{}
	for _, d := range desk {
		w, ours := byDeskID[d.ID]
		if ours {
			seen[d.ID] = true
			if diff := withdraw.Differences(w, d); diff != nil {
				rep.Breaks = append(rep.Breaks, Break{Kind: WithdrawalMismatch, Asset: w.Asset, Ref: d.ID,
					Detail: fmt.Sprintf("journaled withdrawal %d (rule %s) is desk request %s with %s", w.ID, w.Rule, d.ID, strings.Join(diff, ", "))})
				if r.d.Mismatch != nil {
					if err := r.d.Mismatch(ctx, w, d); err != nil {
						r.d.Log.Error("withdrawal_mismatch not handled", zap.Int64("withdrawal", w.ID), zap.Error(err))
					}
				}
			}
		}
		if d.Status == astra.StatusFailed && now.Sub(d.UpdatedAt) < failedWindow && (ours || !d.CreatedAt.Before(epoch)) {
			rep.Breaks = append(rep.Breaks, Break{Kind: FailedWithdrawal, Asset: d.Symbol, Ref: d.ID,
				Detail: fmt.Sprintf("withdrawal %s of %s %s to %s failed: %s", d.ID, d.Amount, d.Symbol, d.Address, d.Error)})
		}
		if ours || (!epoch.IsZero() && d.CreatedAt.Before(epoch.Add(-clockSkew))) {
			continue
		}
		matched := false
		for i, in := range pendingIntents {
			if in.Asset == d.Symbol && in.Amount.Equal(d.Amount) && in.Network == d.Network && in.Address == d.Address &&
				!d.CreatedAt.Before(in.CreatedAt.Add(-clockSkew)) {
				pendingIntents = append(pendingIntents[:i], pendingIntents[i+1:]...)
				matched = true // the rebalancer's own intent, not yet tied to its id
				break
			}
		}
		if !matched {
			rep.Breaks = append(rep.Breaks, Break{Kind: UnexpectedWithdrawal, Asset: d.Symbol, Ref: d.ID,
				Detail: fmt.Sprintf("withdrawal %s of %s %s to %s on %s (%s) was not created by treasuryd", d.ID, d.Amount, d.Symbol, d.Address, d.Network, d.Status)})
		}
	}
	ids := make([]string, 0, len(byDeskID))
	for id := range byDeskID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		w := byDeskID[id]
		if seen[id] || !w.CreatedAt.Before(now) {
			continue
		}
		rep.Breaks = append(rep.Breaks, Break{Kind: MissingWithdrawal, Asset: w.Asset, Ref: id,
			Detail: fmt.Sprintf("journaled withdrawal %d (rule %s, %s %s to %s) has desk id %s, which the desk does not list", w.ID, w.Rule, w.Amount, w.Asset, w.Address, id)})
	}
	return nil
}
