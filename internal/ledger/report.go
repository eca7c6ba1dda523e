package ledger

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/shopspring/decimal"
)

// Break kinds (SPEC 5.4). They are the values of the kind label of
// treasuryd_reconcile_breaks.
const (
	BalanceDrift         = "balance_drift"
	MissingTrade         = "missing_trade"
	UnexpectedTrade      = "unexpected_trade"
	MissingWithdrawal    = "missing_withdrawal"
	UnexpectedWithdrawal = "unexpected_withdrawal" // a withdrawal treasuryd did not create: a security signal
	FailedWithdrawal     = "failed_withdrawal"
	DuplicateTransaction = "duplicate_transaction"
	// WithdrawalMismatch: a withdrawal of ours whose symbol, amount, network
	// or address at the desk differ from its intent (a substitution).
	WithdrawalMismatch = "withdrawal_mismatch"
)

// Kinds lists every break kind, so metrics can report zeros too.
var Kinds = []string{BalanceDrift, MissingTrade, UnexpectedTrade, MissingWithdrawal,
	UnexpectedWithdrawal, FailedWithdrawal, DuplicateTransaction, WithdrawalMismatch}

// Break is one disagreement between the desk and itself or the journal.
type Break struct {
	Kind   string `json:"kind"`
	Asset  string `json:"asset,omitempty"`
	Ref    string `json:"ref,omitempty"` // desk id, idemKey or journal id
	Detail string `json:"detail"`
}

// Asset is one instrument's line: its balance against the net of its history.
type Asset struct {
	Asset        string          `json:"asset"`
	InstrumentID string          `json:"instrument_id"`
	Balance      decimal.Decimal `json:"balance"`
	Net          decimal.Decimal `json:"net"`
	Drift        decimal.Decimal `json:"drift"` // balance − net
	Transactions int64           `json:"transactions"`
	// Moving: the balance changed while the history was read, on every
	// try, so no drift is judged for it this run.
	Moving bool `json:"moving,omitempty"`
}

// Settlement is an accept whose unknown outcome this run settled.
type Settlement struct {
	AcceptID  int64  `json:"accept_id"`
	Program   string `json:"program"`
	QuoteID   string `json:"quote_id"`
	Result    string `json:"result"` // ok or missing
	ConvertID string `json:"convert_id,omitempty"`
}

// Transfer is a deposit, or a completed withdrawal linked to its request.
type Transfer struct {
	ID           string          `json:"id"`
	Type         string          `json:"type"`
	Asset        string          `json:"asset"`
	Amount       decimal.Decimal `json:"amount"`
	WithdrawalID string          `json:"withdrawal_id,omitempty"`
	At           time.Time       `json:"at"`
}

// Report is the result of one reconciliation.
type Report struct {
	At           time.Time     `json:"at"`
	Duration     time.Duration `json:"duration_ns"`
	Transactions int64         `json:"transactions"`
	Assets       []Asset       `json:"assets"`
	Breaks       []Break       `json:"breaks"`
	Settled      []Settlement  `json:"settled"`
	Deposits     []Transfer    `json:"deposits"`
	Withdrawals  []Transfer    `json:"completed_withdrawals"`
	// TransfersTruncated is set when more transfers existed than the report keeps.
	TransfersTruncated bool `json:"transfers_truncated,omitempty"`
}

// Clean reports whether the run found no break.
func (r *Report) Clean() bool { return len(r.Breaks) == 0 }

// Counts is the number of breaks per kind (every kind present).
func (r *Report) Counts() map[string]int {
	m := make(map[string]int, len(Kinds))
	for _, k := range Kinds {
		m[k] = 0
	}
	for _, b := range r.Breaks {
		m[b.Kind]++
	}
	return m
}

// Write prints the report for people: one line per asset with balance, net
// and drift; one line per break; the settlements and transfers after.
func (r *Report) Write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "reconciliation at %s (%d transactions, %s)\n\n", r.At.UTC().Format(time.RFC3339), r.Transactions, r.Duration.Round(time.Millisecond))
	fmt.Fprintln(tw, "ASSET\tBALANCE\tNET\tDRIFT\tTRANSACTIONS")
	for _, a := range r.Assets {
		drift := a.Drift.String()
		if a.Moving {
			drift = "(moving: not judged)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", a.Asset, a.Balance, a.Net, drift, a.Transactions)
	}
	tw.Flush()
	fmt.Fprintln(w)
	if r.Clean() {
		fmt.Fprintln(w, "no breaks")
	} else {
		fmt.Fprintf(w, "%d break(s):\n", len(r.Breaks))
		for _, b := range r.Breaks {
			fmt.Fprintf(w, "  %-22s %-6s %-38s %s\n", b.Kind, b.Asset, b.Ref, b.Detail)
		}
	}
	for _, s := range r.Settled {
		fmt.Fprintf(w, "settled accept %d (%s, quote %s): %s %s\n", s.AcceptID, s.Program, s.QuoteID, s.Result, s.ConvertID)
	}
	for _, t := range r.Deposits {
		fmt.Fprintf(w, "deposit %s: %s %s at %s\n", t.ID, t.Amount, t.Asset, t.At.UTC().Format(time.RFC3339))
	}
	for _, t := range r.Withdrawals {
		fmt.Fprintf(w, "withdrawal %s: %s %s completed (request %s)\n", t.ID, t.Amount, t.Asset, t.WithdrawalID)
	}
	if r.TransfersTruncated {
		fmt.Fprintln(w, "(older transfers omitted)")
	}
	return nil
}
