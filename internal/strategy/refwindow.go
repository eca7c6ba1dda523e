package strategy

import (
	"math/bits"

	"github.com/shopspring/decimal"
)

// refWindow holds the keys (the varying quantity: quote for size programs,
// base for notional ones) of the valid quotes of the last reference.window,
// in arrival order (a ring, for eviction) and sorted (for the median). An
// insert or eviction is a binary search and one memmove, never a sort.
//
// The sorted side holds no pointers and compares integers: each entry is
// the key's fixed form (an exact count of 10^-18) and its ring slot, so the
// searches never touch a big.Int and the memmoves need no write barriers.
// A key with no fixed form (more than 18 decimals, or beyond about 10^19)
// is compared through its decimal, exactly, whatever it is compared with.
type refWindow struct {
	window int64 // nanoseconds
	at     []int64
	keys   []decimal.Decimal
	ents   []refEntry // the sorted entry of each ring slot
	head   int        // index of the oldest entry in the ring
	n      int
	sorted []refEntry
}

// refEntry is a key in the sorted side of the window.
type refEntry struct {
	f     fixed
	slot  uint32 // the key's index in the ring
	exact bool   // f is the key; otherwise compare keys[slot]
}

// key is the i-th smallest key in the window.
func (w *refWindow) key(i int) decimal.Decimal { return w.keys[w.sorted[i].slot] }

// cmpEntry compares the keys of a and b exactly.
func (w *refWindow) cmpEntry(a, b refEntry) int {
	if a.exact && b.exact {
		return a.f.cmp(b.f)
	}
	return cmp(w.keys[a.slot], w.keys[b.slot])
}

func (w *refWindow) evict(nowNanos int64) {
	horizon := nowNanos - w.window
	for w.n > 0 && w.at[w.head] <= horizon {
		w.pop()
	}
}

// pop removes the oldest key.
func (w *refWindow) pop() {
	e := w.ents[w.head]
	// The first entry not less than e, then on through the equal keys to
	// e's own slot.
	lo, hi := 0, len(w.sorted)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if w.cmpEntry(w.sorted[m], e) < 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	for lo < len(w.sorted) && w.sorted[lo].slot != e.slot {
		lo++
	}
	if lo < len(w.sorted) { // always: every slot in the ring is in sorted
		copy(w.sorted[lo:], w.sorted[lo+1:])
		w.sorted = w.sorted[:len(w.sorted)-1]
	}
	w.keys[w.head] = decimal.Decimal{}
	w.head = (w.head + 1) % len(w.at)
	w.n--
}

func (w *refWindow) insert(nowNanos int64, k decimal.Decimal) {
	if w.n == refCapacity {
		w.pop()
	}
	if w.n == len(w.at) {
		w.grow()
	}
	tail := (w.head + w.n) % len(w.at)
	f, ok := toFixed(k)
	e := refEntry{f: f, slot: uint32(tail), exact: ok}
	w.at[tail], w.keys[tail], w.ents[tail] = nowNanos, k, e
	w.n++
	// After the last key not greater than k: equal keys keep arrival order.
	lo, hi := 0, len(w.sorted)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if w.cmpEntry(w.sorted[m], e) > 0 {
			hi = m
		} else {
			lo = m + 1
		}
	}
	w.sorted = append(w.sorted, refEntry{})
	copy(w.sorted[lo+1:], w.sorted[lo:])
	w.sorted[lo] = e
}

// grow doubles the ring (up to refCapacity), unrolling it to start at 0.
func (w *refWindow) grow() {
	size := min(max(2*len(w.at), 16), refCapacity)
	at := make([]int64, size)
	keys := make([]decimal.Decimal, size)
	ents := make([]refEntry, size)
	old := len(w.at)
	for i := 0; i < w.n; i++ {
		j := (w.head + i) % old
		at[i], keys[i], ents[i] = w.at[j], w.keys[j], w.ents[j]
		ents[i].slot = uint32(i)
	}
	for i := range w.sorted {
		w.sorted[i].slot = uint32((int(w.sorted[i].slot) - w.head + old) % old)
	}
	w.at, w.keys, w.ents, w.head = at, keys, ents, 0
	if cap(w.sorted) < size {
		s := make([]refEntry, len(w.sorted), size)
		copy(s, w.sorted)
		w.sorted = s
	}
}

// fixedScale: a fixed form counts units of 10^-fixedScale.
const fixedScale = 18

// fixed is a non-negative decimal as an exact 128-bit count of 10^-18.
type fixed struct{ hi, lo uint64 }

// toFixed returns d's fixed form, and false when it has none: d is
// negative, has more than 18 decimals, or a coefficient of more than 18
// digits or an exponent above 1 (so that the product fits in 128 bits).
func toFixed(d decimal.Decimal) (fixed, bool) {
	switch d.Sign() {
	case 0:
		return fixed{}, true
	case -1:
		return fixed{}, false
	}
	e := int(d.Exponent()) + fixedScale
	if e < 0 || e >= len(pow10u) || d.NumDigits() > maxInt64Digits {
		return fixed{}, false
	}
	hi, lo := bits.Mul64(uint64(d.CoefficientInt64()), pow10u[e])
	return fixed{hi, lo}, true
}

func (a fixed) cmp(b fixed) int {
	switch {
	case a.hi < b.hi:
		return -1
	case a.hi > b.hi:
		return 1
	case a.lo < b.lo:
		return -1
	case a.lo > b.lo:
		return 1
	}
	return 0
}
