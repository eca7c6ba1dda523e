// Package astra is the client of the Astra OTC desk: every REST endpoint of the
// desk's published API reference and the quote stream. It is the one
// place where the points the reference leaves open are read (SPEC section 2):
// amounts are decimal strings decoded exactly, quote quantities are JSON numbers
// decoded from their literal text, expiryTime is Unix microseconds, and an accepted
// quote is echoed byte for byte.
package astra

import (
	"encoding/json"
	"time"

	"github.com/shopspring/decimal"
)

// Balance is one entry of GET /balances/{account_id}.
type Balance struct {
	InstrumentID string
	Symbol       string // "" when the desk sends null
	Amount       decimal.Decimal
	Network      string // "" when null
	Address      string // "" when null
}

// Transfer is one entry of GET /transfers/{account_id}.
type Transfer struct {
	ID           string
	CreatedAt    time.Time
	Symbol       string
	Amount       decimal.Decimal
	TransferType string // "deposit" or "withdrawal"
	Metadata     json.RawMessage
	// WithdrawalID is metadata.withdrawal_id for withdrawals, "" otherwise.
	WithdrawalID string
	UpdatedAt    time.Time
}

// Convert is one OTC trade of GET /converts/{account_id}.
type Convert struct {
	DisplayID        string
	ID               int64
	TakerAccountID   string
	MakerAccountID   string
	BuyInstrumentID  string
	BuyQuantity      decimal.Decimal
	BuyTxnID         *int64
	SellInstrumentID string
	SellQuantity     decimal.Decimal
	SellTxnID        *int64
	Category         string
	Notes            string
	CreatedAt        time.Time
	UpdatedAt        time.Time
	BuySymbol        string
	SellSymbol       string
}

// Transaction is one raw ledger entry of GET /transactions/{account_id}.
type Transaction struct {
	DisplayID      string
	InstrumentID   string
	Symbol         string
	Amount         decimal.Decimal
	DebitFrom      string
	CreditTo       string
	Notes          string
	CreatedAt      time.Time
	IdemKey        string // "" when null
	Type           string // deposit, withdrawal, trade, fee, or "" for null
	TradeDisplayID string
}

// Withdrawal request statuses.
const (
	StatusPending    = "pending"
	StatusProcessing = "processing"
	StatusSent       = "sent"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
)

// WithdrawalRequest is one entry of GET /withdrawal-request/{account_id}/all.
type WithdrawalRequest struct {
	ID           string
	CreatedAt    time.Time
	Symbol       string
	Amount       decimal.Decimal
	TransferType string
	Status       string
	Metadata     json.RawMessage
	UpdatedAt    time.Time
	Network      string
	Address      string
	Error        string // "" when null
	NetworkTxID  string // "" when null
}

// Terminal reports whether the status is final (completed or failed).
func (w WithdrawalRequest) Terminal() bool {
	return w.Status == StatusCompleted || w.Status == StatusFailed
}

// NewWithdrawal is the body of POST /withdrawal-request/{account_id}.
type NewWithdrawal struct {
	InstrumentSymbol string
	Amount           decimal.Decimal
	Network          string
	Address          string
}

// StreamRequest names one quote stream: from is the asset the account buys, to
// the asset it sells (SPEC 2). Exactly one of FromQty and ToQty is non-zero.
type StreamRequest struct {
	From    string
	To      string
	FromQty decimal.Decimal
	ToQty   decimal.Decimal
}
