package replay

import (
	"container/heap"
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/quotes"
	"treasuryd/internal/strategy"
)

const (
	// MaxDifferences is how many differing quotes a program's report lists
	// (the count of all of them is reported beside).
	MaxDifferences = 5
	// PricePlaces is the precision of the average prices in a report: they
	// are display values, never used to decide.
	PricePlaces = 8
	// progressEvery is how often (in frames) Options.Progress is called.
	progressEvery = 10000
)

// Source is what Run needs of a (read-only) *journal.Journal.
type Source interface {
	Frames(ctx context.Context, since time.Time, program string, fn func(journal.Frame) error) error
	Accepts(ctx context.Context, f journal.AcceptFilter) ([]journal.Accept, error)
}

// Options narrow a replay.
type Options struct {
	// Since: frames received before it are not replayed; accepts journaled
	// before it (or before a program's first frame, if later) are restored
	// into the programs' progress, as the daemon restores them at start.
	Since time.Time
	// Program replays only the program of this name ("" all of the policy's).
	Program string
	// Now is the end of the window (default time.Now): frames received and
	// accepts journaled after it (a daemon still running beside) are left out.
	Now func() time.Time
	// Progress, when set, is called every 10,000 frames and at the end with
	// the number of frames read.
	Progress func(frames int64)
}

// Report is what a policy would have done on the recorded quotes, per
// program in policy order, beside what was done.
type Report struct {
	Since    time.Time       `json:"since"`
	Until    time.Time       `json:"until"`
	Frames   int64           `json:"frames"` // recorded frames read (of all programs)
	Programs []ProgramReport `json:"programs"`
}

// ProgramReport is one program's replay. Amounts are decimals, written as
// decimal strings in JSON.
type ProgramReport struct {
	Name     string           `json:"name"`
	Quotes   int64            `json:"quotes"`   // recorded frames replayed
	Outcomes map[string]int64 `json:"outcomes"` // every outcome, 0 included
	// Accepts are the accepts the policy would make that executed: accepted
	// decisions less those whose real accept of the same quote the desk
	// refused (AcceptsFailed). Base executed, notional and average price
	// are over these.
	Accepts       int64            `json:"accepts"`
	AcceptsFailed int64            `json:"accepts_failed"`
	BaseExecuted  decimal.Decimal  `json:"base_executed"`
	Notional      decimal.Decimal  `json:"notional"`      // quote asset
	AveragePrice  *decimal.Decimal `json:"average_price"` // notional / base executed; null when nothing executed
	Actual        Actual           `json:"actual"`
	Matching      int64            `json:"matching"`    // frames whose replayed outcome is the recorded one
	Differing     int64            `json:"differing"`   // the others
	Differences   []Difference     `json:"differences"` // the first MaxDifferences of them
	sums          struct{ base, qty decimal.Decimal }
}

// Actual is what the daemon did in the window: its accepts with result ok
// (settled ok included).
type Actual struct {
	Accepts      int64            `json:"accepts"`
	BaseExecuted decimal.Decimal  `json:"base_executed"`
	Notional     decimal.Decimal  `json:"notional"`
	AveragePrice *decimal.Decimal `json:"average_price"`
	Unknown      int64            `json:"unknown"` // accepts still pending or unknown (not in the figures above)
}

// Difference is one quote whose replayed outcome differs from the recorded
// one. The daemon records its outcome, not its reason, so only the replayed
// decision's reason is known.
type Difference struct {
	QuoteID        string    `json:"quote_id"`
	ReceivedAt     time.Time `json:"received_at"`
	Recorded       string    `json:"recorded"`
	Replayed       string    `json:"replayed"`
	ReplayedReason string    `json:"replayed_reason"`
}

// release is a real accept's progress to take back at a time: the daemon
// released it then, because the desk refused it.
type release struct {
	at          time.Time
	base, quote decimal.Decimal
	committedAt time.Time
}

type releaseHeap []release

func (h releaseHeap) Len() int           { return len(h) }
func (h releaseHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h releaseHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *releaseHeap) Push(x any)        { *h = append(*h, x.(release)) }
func (h *releaseHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// programRun is one program's replay state.
type programRun struct {
	cfg      config.Program
	prog     *strategy.Program
	req      quotes.Request
	accepts  []journal.Accept // all of the program's, by SentAt
	started  bool
	byQuote  map[string]*journal.Accept // real accepts journaled from the cutoff on, by quote id
	releases releaseHeap
	q        astra.Quote // decode target, reused
	dec      astra.QuoteDecoder
	rep      *ProgramReport
}

// Run replays p over the frames recorded in j from opts.Since on and reports,
// per program, what p would have done beside what was done. It runs the
// daemon's own decision code: for each frame, astra.QuoteDecoder (DecodeQuoteFrame),
// quotes.Validate at the frame's receive time, and Program.Decide with the
// recorded outside state (pause, gate, balance, in-flight) and p's global
// dry_run. A would-be accept is committed as the daemon commits one; where
// the daemon really accepted the same quote and the desk refused it, the
// replay takes its progress back at the time the daemon did.
func Run(ctx context.Context, j Source, p *config.Policy, opts Options) (*Report, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	until := opts.Now()
	runs := map[string]*programRun{}
	rep := &Report{Since: opts.Since, Until: until}
	for _, cfg := range p.Programs {
		if opts.Program != "" && cfg.Name != opts.Program {
			continue
		}
		as, err := j.Accepts(ctx, journal.AcceptFilter{Program: cfg.Name})
		if err != nil {
			return nil, fmt.Errorf("replay %s: %w", cfg.Name, err)
		}
		kept := as[:0]
		for _, a := range as {
			if !a.SentAt.After(until) {
				kept = append(kept, a)
			}
		}
		sort.SliceStable(kept, func(i, k int) bool { return kept[i].SentAt.Before(kept[k].SentAt) })
		rep.Programs = append(rep.Programs, ProgramReport{Name: cfg.Name, Outcomes: map[string]int64{}})
		runs[cfg.Name] = &programRun{
			cfg:     cfg,
			prog:    strategy.NewProgram(p.AccountID, cfg),
			req:     quotes.RequestFor(p.AccountID, cfg),
			accepts: kept,
		}
	}
	if opts.Program != "" && len(runs) == 0 {
		return nil, fmt.Errorf("replay: the policy has no program %q", opts.Program)
	}
	for i := range rep.Programs {
		r := runs[rep.Programs[i].Name]
		r.rep = &rep.Programs[i]
		for _, o := range strategy.Outcomes {
			r.rep.Outcomes[o] = 0
		}
	}

	err := j.Frames(ctx, opts.Since, opts.Program, func(f journal.Frame) error {
		if f.ReceivedAt.After(until) {
			return errUntil
		}
		rep.Frames++
		if opts.Progress != nil && rep.Frames%progressEvery == 0 {
			opts.Progress(rep.Frames)
		}
		r := runs[f.Program]
		if r == nil {
			return nil // a program this policy does not have
		}
		r.decide(&f, p.DryRun)
		return nil
	})
	if err != nil && err != errUntil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	if opts.Progress != nil {
		opts.Progress(rep.Frames)
	}
	for _, r := range runs {
		if !r.started {
			r.start(opts.Since)
		}
		r.finish()
	}
	return rep, nil
}

// errUntil ends the frame walk at the end of the window.
var errUntil = fmt.Errorf("end of window")

// start restores the program's progress from the accepts journaled before
// cutoff, as the daemon restores it at start, and indexes the later ones by
// quote id. An accept from before the cutoff that the desk refused after it
// counts until its result, as it did in the daemon.
func (r *programRun) start(cutoff time.Time) {
	r.started = true
	r.rep.Actual.BaseExecuted, r.rep.Actual.Notional = decimal.Zero, decimal.Zero
	var before []strategy.PastAccept
	r.byQuote = map[string]*journal.Accept{}
	for i := range r.accepts {
		a := &r.accepts[i]
		if a.SentAt.Before(cutoff) {
			past := strategy.PastAccept{QuoteID: a.QuoteID, BaseQty: a.BaseQty, QuoteQty: a.QuoteQty,
				SentAt: a.SentAt, ExpiryMicros: a.ExpiryMicros, Counts: a.Counts()}
			if refused(a.Result) && !a.ResultAt.Before(cutoff) {
				past.Counts = true // pending at the cutoff
				heap.Push(&r.releases, release{at: a.ResultAt, base: a.BaseQty, quote: a.QuoteQty, committedAt: a.SentAt})
			}
			before = append(before, past)
			continue
		}
		r.byQuote[a.QuoteID] = a
		switch a.Result {
		case journal.AcceptOK:
			r.rep.Actual.Accepts++
			r.rep.Actual.BaseExecuted = r.rep.Actual.BaseExecuted.Add(a.BaseQty)
			r.rep.Actual.Notional = r.rep.Actual.Notional.Add(a.QuoteQty)
		case journal.AcceptPending, journal.AcceptUnknown:
			r.rep.Actual.Unknown++
		}
	}
	r.prog.Restore(before)
}

// refused reports whether an accept result means nothing executed and the
// daemon took the accept's progress back when it learned it. A "missing"
// accept (unknown, later settled by reconciliation as not executed) is not:
// the running daemon keeps counting it until it restarts.
func refused(result string) bool {
	return result == journal.AcceptRejected || result == journal.AcceptError
}

// decide replays one frame of the program.
func (r *programRun) decide(f *journal.Frame, dryRun bool) {
	if !r.started {
		// The window of this program starts at its first frame: accepts
		// before it are the progress the daemon had when deciding it.
		r.start(f.ReceivedAt)
	}
	for len(r.releases) > 0 && !r.releases[0].at.After(f.ReceivedAt) {
		rl := heap.Pop(&r.releases).(release)
		r.prog.Release(rl.base, rl.quote, rl.committedAt)
	}
	r.rep.Quotes++
	q := &r.q
	var qErr error
	if err := r.dec.Decode(f.Raw, q); err != nil {
		q, qErr = nil, err
	} else {
		qErr = quotes.Validate(&r.req, q, f.ReceivedAt)
	}
	env := strategy.Env{Paused: f.Paused, GateOpen: f.GateOpen, GateReason: f.GateReason, Balance: f.Balance,
		BalanceKnown: f.BalanceKnown, InFlight: f.InFlight, DryRun: dryRun}
	d := r.prog.Decide(q, qErr, env, f.ReceivedAt)
	r.rep.Outcomes[d.Outcome]++
	if d.Outcome == f.Outcome {
		r.rep.Matching++
	} else {
		r.rep.Differing++
		if len(r.rep.Differences) < MaxDifferences {
			diff := Difference{ReceivedAt: f.ReceivedAt, Recorded: f.Outcome, Replayed: d.Outcome, ReplayedReason: d.Reason}
			if q != nil {
				diff.QuoteID = q.QuoteID
			}
			r.rep.Differences = append(r.rep.Differences, diff)
		}
	}
	switch d.Outcome {
	case strategy.OutcomeAccepted:
		r.prog.Commit(q, f.ReceivedAt)
		base, quote := r.prog.Quantities(q)
		if a := r.byQuote[q.QuoteID]; a != nil && refused(a.Result) {
			// The daemon sent this very accept and the desk refused it:
			// so would it have been now, and the daemon took its progress
			// back when the result came.
			r.rep.AcceptsFailed++
			heap.Push(&r.releases, release{at: a.ResultAt, base: base, quote: quote, committedAt: f.ReceivedAt})
			return
		}
		r.rep.Accepts++
		r.rep.sums.base = r.rep.sums.base.Add(base)
		r.rep.sums.qty = r.rep.sums.qty.Add(quote)
	case strategy.OutcomeDryRun:
		r.prog.CommitDryRun(f.ReceivedAt)
	}
}

// finish fills in the totals.
func (r *programRun) finish() {
	rep := r.rep
	rep.BaseExecuted, rep.Notional = rep.sums.base, rep.sums.qty
	rep.AveragePrice = averagePrice(rep.Notional, rep.BaseExecuted)
	rep.Actual.AveragePrice = averagePrice(rep.Actual.Notional, rep.Actual.BaseExecuted)
	if rep.Differences == nil {
		rep.Differences = []Difference{}
	}
}

// averagePrice is notional / base, rounded to PricePlaces for display; nil
// when nothing was executed.
func averagePrice(notional, base decimal.Decimal) *decimal.Decimal {
	if base.Sign() <= 0 {
		return nil
	}
	p := notional.DivRound(base, PricePlaces)
	return &p
}
