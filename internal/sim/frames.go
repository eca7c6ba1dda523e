package sim

import (
	"fmt"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
)

// QuoteFrame is one quote stream frame as the desk writes it, with the
// position of its expiryTime digits so that a benchmark can give a reused
// frame a fresh expiry without writing it again.
type QuoteFrame struct {
	Bytes    []byte
	expiryAt int
}

// expiryDigits is the width of an expiryTime in microseconds from 2001 to
// 2286: SetExpiry overwrites exactly this many digits.
const expiryDigits = 16

// SetExpiry rewrites the frame's expiryTime in place. It reports false, and
// leaves the frame alone, for a time whose microseconds do not have the width
// of the ones the frame was written with (before 2001 or after 2286).
func (f QuoteFrame) SetExpiry(t time.Time) bool {
	var buf [20]byte
	digits := strconv.AppendInt(buf[:0], t.UnixMicro(), 10)
	if len(digits) != expiryDigits {
		return false
	}
	copy(f.Bytes[f.expiryAt:], digits)
	return true
}

// SellFrames writes quote frames of a size-0.5 sell-BTC stream for account
// (the desk quotes USD for 0.5 BTC), as the simulator and the reference doc
// write them: a new id, price and signature each frame, prices of 64,000 to
// 68,000 USD per BTC with as many decimals as they happen to have, drawn from
// a fixed seed, so benchmarks of the decision path see what they see live.
// Frame i expires at expiry(i).
type SellFrames struct {
	account string
	seed    uint64
	n       int
}

// NewSellFrames starts the sequence of frames for account.
func NewSellFrames(account string) *SellFrames { return &SellFrames{account: account, seed: 42} }

// Next writes the next frame, expiring at expiry.
func (g *SellFrames) Next(expiry time.Time) QuoteFrame {
	g.seed = g.seed*6364136223846793005 + 1442695040888963407
	usd := decimal.New(int64(320000000+g.seed>>33%20000000), -4)
	head := fmt.Appendf(nil, `{
"quote": {
"quoteId": "a0743434-66c8-49b7-aca2-%012x",
"accountId": %q,
"fromAsset": "USD",
"toAsset": "BTC",
"fromAssetQuantity": %s,
"toAssetQuantity": 0.5,
"expiryTime": `, g.n, g.account, usd)
	g.n++
	f := QuoteFrame{expiryAt: len(head)}
	f.Bytes = fmt.Appendf(head, `%d,
"signature": "%016x6932874cf486617239c7d27100e911903ccbee05c8b07fe3f4299e047f"
}
}`, expiry.UnixMicro(), g.seed)
	return f
}
