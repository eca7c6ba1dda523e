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
//
// In the steady state every decision evicts one quote and inserts one, so
// evict leaves the last key it removes in place as a hole (skipped by key
// and Len) and the insert that follows closes it in the same memmove: one
// shift over the keys between the two, not two over half the window each.
type refWindow struct {
	window int64 // nanoseconds
	at     []int64
	keys   []decimal.Decimal
	ents   []refEntry // the sorted entry of each ring slot
	head   int        // index of the oldest entry in the ring
	n      int
	sorted []refEntry
	// holeOn: sorted[hole] is a removed entry not yet shifted out.
	holeOn bool
	hole   int
	// inexact counts the entries of sorted (the hole included) without a
	// fixed form; while it is 0 the searches compare fixed forms inline.
	inexact int
}

// refEntry is a key in the sorted side of the window.
type refEntry struct {
	f     fixed
	slot  uint32 // the key's index in the ring
	exact bool   // f is the key; otherwise compare keys[slot]
}

// Len is the number of keys in the window.
func (w *refWindow) Len() int {
	if w.holeOn {
		return len(w.sorted) - 1
	}
	return len(w.sorted)
}

// key is the i-th smallest key in the window.
func (w *refWindow) key(i int) decimal.Decimal {
	if w.holeOn && i >= w.hole {
		i++
	}
	return w.keys[w.sorted[i].slot]
}

// entry is the sorted entry of the i-th smallest key in the window.
func (w *refWindow) entry(i int) refEntry {
	if w.holeOn && i >= w.hole {
		i++
	}
	return w.sorted[i]
}

// cmpTo compares the key of a with the key e, whose decimal is k.
func (w *refWindow) cmpTo(a, e refEntry, k decimal.Decimal) int {
	if a.exact && e.exact {
		return a.f.cmp(e.f)
	}
	return cmp(w.keys[a.slot], k)
}

// evict removes the keys older than the window; the last one it removes
// stays in sorted as the hole.
func (w *refWindow) evict(nowNanos int64) {
	horizon := nowNanos - w.window
	for w.n > 0 && w.at[w.head] <= horizon {
		w.pop()
	}
}

// pop removes the oldest key, leaving it as the hole.
func (w *refWindow) pop() {
	w.closeHole()
	e := w.ents[w.head]
	k := w.keys[w.head]
	// The first entry not less than e, then on through the equal keys to
	// e's own slot.
	lo, hi := 0, len(w.sorted)
	if w.inexact == 0 {
		lo = searchFixed(w.sorted, e.f, false)
	} else {
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if w.cmpTo(w.sorted[m], e, k) < 0 {
				lo = m + 1
			} else {
				hi = m
			}
		}
	}
	for lo < len(w.sorted) && w.sorted[lo].slot != e.slot {
		lo++
	}
	if lo < len(w.sorted) { // always: every slot in the ring is in sorted
		w.holeOn, w.hole = true, lo
	}
	w.head = (w.head + 1) % len(w.at)
	w.n--
}

// closeHole shifts the hole out of sorted.
func (w *refWindow) closeHole() {
	if !w.holeOn {
		return
	}
	if !w.sorted[w.hole].exact {
		w.inexact--
	}
	copy(w.sorted[w.hole:], w.sorted[w.hole+1:])
	w.sorted = w.sorted[:len(w.sorted)-1]
	w.holeOn = false
}

func (w *refWindow) insert(nowNanos int64, kn num) {
	k := kn.d
	if w.n == refCapacity {
		w.pop()
	}
	if w.n == len(w.at) {
		w.closeHole()
		w.grow()
	}
	tail := (w.head + w.n) % len(w.at)
	e := refEntry{f: kn.f, slot: uint32(tail), exact: kn.ok}
	// After the last key not greater than k, so equal keys keep arrival
	// order. The hole is still a key in order, so the search need not
	// skip it. Searched before the ring is written: the hole's key may
	// sit in the slot k is about to take.
	lo, hi := 0, len(w.sorted)
	if w.inexact == 0 && e.exact {
		lo = searchFixed(w.sorted, e.f, true)
	} else {
		for lo < hi {
			m := int(uint(lo+hi) >> 1)
			if w.cmpTo(w.sorted[m], e, k) > 0 {
				hi = m
			} else {
				lo = m + 1
			}
		}
	}
	if !e.exact {
		w.inexact++
	}
	if w.holeOn && !w.sorted[w.hole].exact {
		w.inexact--
	}
	switch h := w.hole; {
	case !w.holeOn:
		w.sorted = append(w.sorted, refEntry{})
		copy(w.sorted[lo+1:], w.sorted[lo:])
	case lo > h:
		lo--
		copy(w.sorted[h:lo], w.sorted[h+1:lo+1])
	default:
		copy(w.sorted[lo+1:h+1], w.sorted[lo:h])
	}
	w.sorted[lo] = e
	w.holeOn = false
	w.at[tail], w.keys[tail], w.ents[tail] = nowNanos, k, e
	w.n++
}

// searchFixed returns the index of the first entry of s (sorted, every entry
// exact) whose key is not less than x, or with after set, greater than x.
// The search has no data-dependent branch (the comparison is a borrow, the
// step a multiplication by it): the window's keys are close together, so a
// branch on each comparison would be a coin toss for the predictor.
func searchFixed(s []refEntry, x fixed, after bool) int {
	n := len(s)
	if n == 0 {
		return 0
	}
	var a uint64 // 1 when after: compare x < s[i] instead of s[i] < x
	if after {
		a = 1
	}
	// below(f) is 1 when the entry belongs before the answer: f < x, or
	// with after set, f ≤ x, which is !(x < f).
	below := func(f fixed) int {
		_, b1 := bits.Sub64(f.lo, x.lo, 0)
		_, lt := bits.Sub64(f.hi, x.hi, b1) // f < x
		_, c1 := bits.Sub64(x.lo, f.lo, 0)
		_, gt := bits.Sub64(x.hi, f.hi, c1) // x < f
		return int(lt&(a^1) | (gt^1)&a)
	}
	base := 0
	for n > 1 {
		half := n >> 1
		base += half * below(s[base+half-1].f)
		n -= half
	}
	return base + below(s[base].f)
}

// grow doubles the ring (up to refCapacity), unrolling it to start at 0.
// There is no hole.
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

// fixedOne is 1 in fixed form.
const fixedOne = 1e18

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

// add is a + b; the fixed forms of quantities (below 2^123) never overflow.
func (a fixed) add(b fixed) fixed {
	lo, carry := bits.Add64(a.lo, b.lo, 0)
	hi, _ := bits.Add64(a.hi, b.hi, carry)
	return fixed{hi, lo}
}

// mul is a × m as a 192-bit integer.
func (a fixed) mul(m uint64) wide {
	h0, l0 := bits.Mul64(a.lo, m)
	h1, l1 := bits.Mul64(a.hi, m)
	w1, c := bits.Add64(h0, l1, 0)
	return wide{h1 + c, w1, l0}
}

// wide is a 192-bit unsigned integer, most significant word first.
type wide [3]uint64

func (a wide) cmp(b wide) int {
	for i := range a {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}

// num is a decimal with its fixed form when it has one, so that comparing
// two is integer compares in the usual case and exact in every case.
type num struct {
	d  decimal.Decimal
	f  fixed
	ok bool
}

func newNum(d decimal.Decimal) num {
	f, ok := toFixed(d)
	return num{d, f, ok}
}

// numCache remembers the num of the last decimal it was asked about.
type numCache struct {
	n   num
	set bool
}

// of returns d's num. A decimal is immutable (its coefficient is never
// changed in place), so one equal to the last, coefficient pointer and
// exponent alike, has the same num.
func (c *numCache) of(d decimal.Decimal) num {
	if !c.set || d != c.n.d {
		c.n, c.set = newNum(d), true
	}
	return c.n
}

func (a num) cmp(b num) int {
	if a.ok && b.ok {
		return a.f.cmp(b.f)
	}
	return cmp(a.d, b.d)
}
