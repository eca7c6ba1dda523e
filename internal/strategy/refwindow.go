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
// The sorted side holds no pointers and compares 64-bit integers: each entry
// is the key as an exact count of 10^-scale and its ring slot, so the
// searches never touch a big.Int and the memmoves need no write barriers.
// The scale is chosen from the window's first key, with the most decimals
// that leave keys up to 18 times that one in 64 bits (18 decimals for a key
// below 1, 13 for 32,000.5). A key with more decimals than the scale, or
// too large, is compared through its decimal, exactly, whatever it is
// compared with.
//
// In the steady state every decision evicts one quote and inserts one, so
// evict leaves the last key it removes in place as a hole (skipped by key
// and Len) and the insert that follows closes it in the same memmove: one
// shift over the keys between the two, not two over half the window each.
type refWindow struct {
	window int64 // nanoseconds
	at     []int64
	keys   []num      // each ring slot's key, with its 10^-18 fixed form
	ents   []refEntry // the sorted entry of each ring slot
	head   int        // index of the oldest entry in the ring
	n      int
	sorted []refEntry
	// holeOn: sorted[hole] is a removed entry not yet shifted out.
	holeOn bool
	hole   int
	// inexact counts the entries of sorted (the hole included) without a
	// scaled form; while it is 0 the searches compare scaled forms inline.
	inexact int
	// unit is 10^(18−scale): a key's scaled form is its fixed form divided
	// by unit. 0 until the first key with a fixed form sets it.
	unit uint64
	// pendOK: the last eviction also searched where the next insert's key
	// (pendKey) goes, pendAt, on the very keys that insert will search.
	pendOK  bool
	pendKey uint64
	pendAt  int
}

// refEntry is a key in the sorted side of the window.
type refEntry struct {
	k     uint64 // the key in units of 10^-scale, when exact
	slot  uint32 // the key's index in the ring
	exact bool   // k is the key; otherwise compare keys[slot]
}

// scaled returns the window's integer form of a key with fixed form f:
// f/unit when that is a whole number below 2^64.
func (w *refWindow) scaled(f fixed) (uint64, bool) {
	if w.unit == 0 {
		// The first key: unit = 10^(digits of its integer part), which
		// leaves room for keys up to 18 times it.
		w.unit = 1
		for w.unit < 1e18 {
			hi, lo := bits.Mul64(w.unit, fixedOne)
			if (fixed{hi, lo}).cmp(f) > 0 {
				break
			}
			w.unit *= 10
		}
	}
	if f.hi >= w.unit {
		return 0, false
	}
	k, rem := bits.Div64(f.hi, f.lo, w.unit)
	return k, rem == 0
}

// Len is the number of keys in the window.
func (w *refWindow) Len() int {
	if w.holeOn {
		return len(w.sorted) - 1
	}
	return len(w.sorted)
}

// key is the i-th smallest key in the window.
func (w *refWindow) key(i int) decimal.Decimal { return w.keyNum(i).d }

// keyNum is the i-th smallest key in the window with its fixed form.
func (w *refWindow) keyNum(i int) num {
	if w.holeOn && i >= w.hole {
		i++
	}
	return w.keys[w.sorted[i].slot]
}

// cmpTo compares the key of a with the key e, whose decimal is k.
func (w *refWindow) cmpTo(a, e refEntry, k decimal.Decimal) int {
	if a.exact && e.exact {
		switch {
		case a.k < e.k:
			return -1
		case a.k > e.k:
			return 1
		}
		return 0
	}
	return cmp(w.keys[a.slot].d, k)
}

// evict removes the keys older than the window; the last one it removes
// stays in sorted as the hole. next is the key the caller inserts next
// (nil: none known), with nothing else changing the window in between: the
// last eviction's search and that insert's run side by side, as one.
func (w *refWindow) evict(nowNanos int64, next *num) {
	w.pendOK = false
	horizon := nowNanos - w.window
	for w.n > 0 && w.at[w.head] <= horizon {
		if next != nil && (w.n == 1 || w.at[(w.head+1)%len(w.at)] > horizon) {
			w.popPaired(next)
			return
		}
		w.pop()
	}
}

// pop removes the oldest key, leaving it as the hole.
func (w *refWindow) pop() { w.popPaired(nil) }

// popPaired is pop; when next is not nil and both keys compare as integers,
// it also finds where next would be inserted after the pop (pendAt).
func (w *refWindow) popPaired(next *num) {
	w.pendOK = false
	w.closeHole()
	e := w.ents[w.head]
	k := w.keys[w.head].d
	// The first entry not less than e, then on through the equal keys to
	// e's own slot.
	lo, hi := 0, len(w.sorted)
	var nk uint64
	nextExact := false
	if next != nil && next.ok && w.unit != 0 {
		nk, nextExact = w.scaled(next.f)
	}
	if w.inexact == 0 && e.exact && nextExact {
		// Nothing moves between this search and the insert's (the hole
		// is still a key in order, as insert searches it).
		lo, w.pendAt = searchScaled2(w.sorted, e.k, nk)
		w.pendOK, w.pendKey = true, nk
	} else if w.inexact == 0 {
		lo = searchScaled(w.sorted, e.k, false)
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
	w.pendOK = false
	if !w.sorted[w.hole].exact {
		w.inexact--
	}
	copy(w.sorted[w.hole:], w.sorted[w.hole+1:])
	w.sorted = w.sorted[:len(w.sorted)-1]
	w.holeOn = false
}

func (w *refWindow) insert(nowNanos int64, kn *num) {
	k := kn.d
	if w.n == refCapacity {
		w.pop()
	}
	if w.n == len(w.at) {
		w.closeHole()
		w.grow()
	}
	tail := (w.head + w.n) % len(w.at)
	e := refEntry{slot: uint32(tail)}
	if kn.ok {
		e.k, e.exact = w.scaled(kn.f)
	}
	// After the last key not greater than k, so equal keys keep arrival
	// order. The hole is still a key in order, so the search need not
	// skip it. Searched before the ring is written: the hole's key may
	// sit in the slot k is about to take.
	lo, hi := 0, len(w.sorted)
	if w.pendOK && w.inexact == 0 && e.exact && e.k == w.pendKey {
		lo = w.pendAt // searched with the last eviction
	} else if w.inexact == 0 && e.exact {
		lo = searchScaled(w.sorted, e.k, true)
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
	w.holeOn, w.pendOK = false, false
	w.at[tail], w.keys[tail], w.ents[tail] = nowNanos, *kn, e
	w.n++
}

// searchScaled returns the index of the first entry of s (sorted, every
// entry exact) whose key is not less than x, or with after set, greater than
// x. The search has no data-dependent branch (the step is a multiplication
// by the comparison): the window's keys are close together, so a branch on
// each comparison would be a coin toss for the predictor.
func searchScaled(s []refEntry, x uint64, after bool) int {
	n := len(s)
	if n == 0 {
		return 0
	}
	base := 0
	if after {
		for n > 1 {
			half := n >> 1
			base += half * b2i(s[base+half-1].k <= x)
			n -= half
		}
		return base + b2i(s[base].k <= x)
	}
	for n > 1 {
		half := n >> 1
		base += half * b2i(s[base+half-1].k < x)
		n -= half
	}
	return base + b2i(s[base].k < x)
}

// searchScaled2 is searchScaled(s, x, false) and searchScaled(s, y, true)
// at once: the two chains of dependent loads overlap.
func searchScaled2(s []refEntry, x, y uint64) (int, int) {
	n := len(s)
	if n == 0 {
		return 0, 0
	}
	bx, by := 0, 0
	for n > 1 {
		half := n >> 1
		bx += half * b2i(s[bx+half-1].k < x)
		by += half * b2i(s[by+half-1].k <= y)
		n -= half
	}
	return bx + b2i(s[bx].k < x), by + b2i(s[by].k <= y)
}

// b2i is 1 for true, 0 for false, without a branch.
func b2i(b bool) int {
	var i int
	if b {
		i = 1
	}
	return i
}

// grow doubles the ring (up to refCapacity), unrolling it to start at 0.
// There is no hole.
func (w *refWindow) grow() {
	w.pendOK = false
	size := min(max(2*len(w.at), 16), refCapacity)
	at := make([]int64, size)
	keys := make([]num, size)
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
func (c *numCache) of(d decimal.Decimal) *num {
	if !c.set || d != c.n.d {
		c.n, c.set = newNum(d), true
	}
	return &c.n
}

func (a *num) cmp(b *num) int {
	if a.ok && b.ok {
		return a.f.cmp(b.f)
	}
	return cmp(a.d, b.d)
}
