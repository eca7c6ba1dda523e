// Package quotes keeps one supervised quote stream per trading program: it
// connects, reconnects with bounded backoff, tears down a stale or misbehaving
// connection, decodes every frame in one pass and validates the quote against
// what the program asked for (SPEC 5.1). It promises that every frame reaches
// the program's handler exactly once, with an error when the frame is not a
// quote matching its request — a bad frame is counted and never stops the
// stream.
package quotes

import (
	"errors"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
)

// Request is what one program asks the desk to quote.
type Request struct {
	Program   string
	AccountID string
	Stream    astra.StreamRequest // From = asset the account BUYS, To = asset it SELLS (SPEC 2)
	Base      string              // from the program
	Quote     string
	Side      string // config.SideSell or config.SideBuy
}

// RequestFor builds the stream request of program p. A sell program buys the
// quote asset and sells the base (From=Quote, To=Base); a buy program the
// reverse. Size fixes the base side, notional the quote side: exactly one of
// Stream.FromQty and Stream.ToQty is set.
func RequestFor(accountID string, p config.Program) Request {
	r := Request{Program: p.Name, AccountID: accountID, Base: p.Base, Quote: p.Quote, Side: p.Side}
	sell := p.Side == config.SideSell
	if sell {
		r.Stream.From, r.Stream.To = p.Quote, p.Base
	} else {
		r.Stream.From, r.Stream.To = p.Base, p.Quote
	}
	// The base asset is the "to" side when selling, the "from" side when buying.
	switch baseIsTo := sell; {
	case !p.Size.IsZero() && baseIsTo:
		r.Stream.ToQty = p.Size
	case !p.Size.IsZero():
		r.Stream.FromQty = p.Size
	case baseIsTo:
		r.Stream.FromQty = p.Notional
	default:
		r.Stream.ToQty = p.Notional
	}
	return r
}

// BaseQty is the quote's base-asset quantity.
func (r *Request) BaseQty(q *astra.Quote) decimal.Decimal {
	if r.Side == config.SideSell {
		return q.ToQty
	}
	return q.FromQty
}

// QuoteQty is the quote's quote-asset quantity.
func (r *Request) QuoteQty(q *astra.Quote) decimal.Decimal {
	if r.Side == config.SideSell {
		return q.FromQty
	}
	return q.ToQty
}

// Validation failures. They are pre-built so that validating never allocates
// or formats; test with errors.Is.
var (
	ErrWrongAccount  = errors.New("quote is for another account")
	ErrWrongAssets   = errors.New("quote assets do not match the request")
	ErrWrongQuantity = errors.New("quote's fixed quantity differs from the requested one")
	ErrNonPositive   = errors.New("quote's other quantity is not positive")
	ErrExpired       = errors.New("quote has expired")
	ErrNoSignature   = errors.New("quote has no signature")
	ErrNoID          = errors.New("quote has no id")
)

// Validate checks that q answers r: same account and assets, the fixed
// quantity exactly as requested, a positive other quantity, an expiry after
// now, a signature and an id. It does not allocate when the quote's fixed
// quantity has the requested scale (the desk echoes it).
func Validate(r *Request, q *astra.Quote, now time.Time) error {
	if q.AccountID != r.AccountID {
		return ErrWrongAccount
	}
	if q.FromAsset != r.Stream.From || q.ToAsset != r.Stream.To {
		return ErrWrongAssets
	}
	fixed, want, other := q.ToQty, r.Stream.ToQty, q.FromQty
	if !r.Stream.FromQty.IsZero() {
		fixed, want, other = q.FromQty, r.Stream.FromQty, q.ToQty
	}
	if fixed.Cmp(want) != 0 {
		return ErrWrongQuantity
	}
	if other.Sign() <= 0 {
		return ErrNonPositive
	}
	if q.ExpiryMicros <= now.UnixMicro() {
		return ErrExpired
	}
	if q.Signature == "" {
		return ErrNoSignature
	}
	if q.QuoteID == "" {
		return ErrNoID
	}
	return nil
}
