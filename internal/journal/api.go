package journal

// This file fixes the journal's exported API that the other packages code
// against (each through its own small consumer interface). Signatures here are
// a contract: add methods freely, change these only with every caller.

import (
	"context"
	"time"

	"github.com/shopspring/decimal"
)

// Accept results. An accept is journaled as AcceptPending before it is sent,
// then gets exactly one result. An AcceptUnknown one is never re-sent; the
// reconciliation settles it as AcceptOK (with ConvertID) or AcceptMissing.
const (
	AcceptPending  = "pending"  // journaled, result not yet known (a crash here reads as unknown)
	AcceptOK       = "ok"       // the desk answered 200
	AcceptRejected = "rejected" // the desk refused it (4xx): nothing executed
	AcceptError    = "error"    // known not delivered (e.g. connection refused): nothing executed
	AcceptUnknown  = "unknown"  // timeout, reset, 5xx: may or may not have executed
	AcceptMissing  = "missing"  // was unknown; reconciliation found no convert: nothing executed
)

// Accept is one accept attempt.
type Accept struct {
	ID           int64
	Program      string
	QuoteID      string
	RawQuote     []byte // the quote object exactly as received and as sent
	BaseAsset    string
	QuoteAsset   string
	Side         string // "sell" or "buy"
	BaseQty      decimal.Decimal
	QuoteQty     decimal.Decimal
	ExpiryMicros int64
	SentAt       time.Time // when it was journaled, just before the POST
	Result       string
	Message      string // the desk's message for rejected, the error for unknown/error
	ResultAt     time.Time
	ConvertID    string // displayId of the matching convert, once settled
}

// Counts reports whether the accept counts as executed for caps and targets:
// ok, and pending/unknown until settled.
func (a Accept) Counts() bool {
	return a.Result == AcceptOK || a.Result == AcceptPending || a.Result == AcceptUnknown
}

// AcceptFilter narrows Accepts. Zero fields do not filter.
type AcceptFilter struct {
	Program string
	Since   time.Time // SentAt >= Since
	Results []string
}

// Withdrawal states. The intent is journaled (and flushed, synchronous=FULL)
// as WithdrawalIntent before the POST.
const (
	WithdrawalIntent     = "intent"     // journaled; POST not sent or not answered yet (a crash here reads as unknown)
	WithdrawalUnknown    = "unknown"    // POST outcome unknown: match against the desk's list before anything else
	WithdrawalSubmitted  = "submitted"  // desk id known; DeskStatus followed until terminal
	WithdrawalCompleted  = "completed"  // desk status completed
	WithdrawalFailed     = "failed"     // desk status failed; Error holds the desk's error
	WithdrawalRejected   = "rejected"   // the desk refused the POST (4xx): nothing created
	WithdrawalUnresolved = "unresolved" // could not be matched: needs an operator, never retried
)

// Withdrawal is one withdrawal intent and what became of it.
type Withdrawal struct {
	ID         int64
	Rule       string
	Asset      string
	Network    string
	Address    string
	Amount     decimal.Decimal
	CreatedAt  time.Time // when the intent was journaled, before the POST
	State      string
	DeskID     string
	DeskStatus string
	Error      string
	UpdatedAt  time.Time
}

// Open reports whether the withdrawal still blocks its rule (not terminal).
func (w Withdrawal) Open() bool {
	switch w.State {
	case WithdrawalIntent, WithdrawalUnknown, WithdrawalSubmitted:
		return true
	}
	return false
}

// WithdrawalFilter narrows Withdrawals. Zero fields do not filter.
type WithdrawalFilter struct {
	Rule   string
	Asset  string
	Since  time.Time // CreatedAt >= Since
	States []string
}

// Report is one reconciliation report.
type Report struct {
	ID    int64
	At    time.Time
	Clean bool
	Body  []byte // the report as JSON
}

// Frame is one recorded quote frame with the outside state its decision saw
// (for replay, SPEC 5.6a).
type Frame struct {
	Program      string
	ReceivedAt   time.Time
	Raw          []byte
	Paused       bool
	GateOpen     bool
	GateReason   string
	Balance      decimal.Decimal // balance of the asset sold
	BalanceKnown bool
	InFlight     bool
	Outcome      string // the outcome the daemon decided
}

var _ = context.Background
