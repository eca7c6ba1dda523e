package strategy

import (
	"math/bits"

	"github.com/shopspring/decimal"
)

// maxInt64Digits is the most decimal digits a coefficient can have and still
// be certain to fit in an int64 (whose max has 19 digits).
const maxInt64Digits = 18

// pow10u holds 10^0..10^19, the scale factors cmp may need on the fast path.
var pow10u = [...]uint64{
	1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
}

// cmp compares two decimals exactly, like a.Cmp(b), without allocating in
// the usual case. decimal.Cmp allocates a scaled copy whenever the exponents
// differ, and the desk writes quantities with however many decimals it likes
// (81436.1 next to 81436.0875), so on the decision path almost every compare
// would allocate. Here coefficients that fit in an int64 are scaled in 128-bit
// integer arithmetic instead; anything larger falls back to decimal.Cmp.
func cmp(a, b decimal.Decimal) int {
	ea, eb := a.Exponent(), b.Exponent()
	if ea == eb {
		return a.Cmp(b)
	}
	sa, sb := a.Sign(), b.Sign()
	if sa != sb {
		if sa > sb {
			return 1
		}
		return -1
	}
	if sa == 0 {
		return 0
	}
	if a.NumDigits() > maxInt64Digits || b.NumDigits() > maxInt64Digits {
		return a.Cmp(b)
	}
	ca, cb := a.CoefficientInt64(), b.CoefficientInt64()
	if sa < 0 {
		ca, cb = -ca, -cb
	}
	// Both magnitudes as uint64; scale the one with the larger exponent.
	ua, ub := uint64(ca), uint64(cb)
	var r int
	if ea > eb {
		r = cmpScaled(ua, int(ea-eb), ub)
	} else {
		r = -cmpScaled(ub, int(eb-ea), ua)
	}
	return r * sa
}

// cmpScaled compares x×10^shift with y (all magnitudes).
func cmpScaled(x uint64, shift int, y uint64) int {
	if shift >= len(pow10u) {
		// x ≥ 1, so x×10^20 exceeds any uint64.
		return 1
	}
	hi, lo := bits.Mul64(x, pow10u[shift])
	switch {
	case hi > 0 || lo > y:
		return 1
	case lo < y:
		return -1
	}
	return 0
}
