package astra

import (
	"encoding/binary"
	"math/bits"
	"sort"
	"strings"

	"github.com/shopspring/decimal"
)

// QuoteDecoder decodes the frames of one quote stream. A desk writes every
// frame of a stream the same way: the same fields in the same order with the
// same spacing; only the values change. The decoder learns that layout from
// a frame decoded in full and then reads a frame by checking that the text
// between the values is exactly the learned text and decoding only the
// values, with the very functions DecodeQuoteFrame uses. A frame that differs
// in any byte outside the values, or whose value is not a plain token of the
// learned kind, is decoded in full by DecodeQuoteFrame (and its layout
// learned), so the result, errors included, is always DecodeQuoteFrame's.
//
// The zero QuoteDecoder is ready to use. It is not safe for concurrent use:
// a stream owns one.
type QuoteDecoder struct {
	layout *frameLayout
	// idSig is the block the quotes' ids and signatures are taken from (a
	// pointer: a Builder must not be copied once used).
	idSig *strings.Builder
}

// maxLayoutBytes bounds the frame a layout is learned from: real frames are
// a few hundred bytes; a huge one (unknown fields) is decoded in full.
const maxLayoutBytes = 4 << 10

// frameLayout is the text of a frame around the quote's eight values.
type frameLayout struct {
	// lits[k] is the text before the k-th value (in frame order), lits[8]
	// the text after the last one, to the end of the frame.
	lits [len(fieldNames) + 1][]byte
	// order[k] is the field (an index of fieldNames) of the k-th value.
	order [len(fieldNames)]int
	// rawStart is where the quote object starts (within lits[0]); rawEnd is
	// where it ends, counted from the start of lits[8].
	rawStart, rawEnd int
	// changing has bit k set when the k-th value differed from the learned
	// one in the last frame: the id, price, expiry and signature change with
	// every quote, so comparing them with their segment would only cost
	// time.
	changing uint
	// runs reads a frame as the changing bits last found it: each run is
	// one comparison of the learned text from a literal through every
	// unchanging value and literal after it, then the changing value that
	// ends it (field -1: the run ends the frame). Rebuilt when changing
	// changes.
	runs     []layoutRun
	runsFor  uint // the changing bits runs was built for
	buf      []byte
	litStart [len(fieldNames) + 1]int // where lits[k] starts in buf
	valEnd   [len(fieldNames)]int     // where the k-th value ends in buf
	// The learned values: strings and quantities are immutable, so a quote
	// may share them.
	strs           [len(fieldNames)]string
	id, sig        []byte // the learned id and signature, decoded
	fromQty, toQty decimal.Decimal
	expiryMicros   int64
}

// Decode decodes frame into q exactly as DecodeQuoteFrame does.
func (qd *QuoteDecoder) Decode(frame []byte, q *Quote) error {
	if qd.idSig == nil {
		qd.idSig = new(strings.Builder)
	}
	if l := qd.layout; l != nil && l.decode(frame, q, qd.idSig) {
		return nil
	}
	var sp valueSpans
	if err := decodeFrame(frame, q, &sp); err != nil {
		// A bad frame keeps the layout of the good ones.
		return err
	}
	qd.layout = learnLayout(frame, &sp, q)
	return nil
}

// learnLayout builds the layout of frame, just decoded with the value spans
// sp; nil when frame is too large to keep.
func learnLayout(frame []byte, sp *valueSpans, q *Quote) *frameLayout {
	if len(frame) > maxLayoutBytes {
		return nil
	}
	l := &frameLayout{}
	for k := range l.order {
		l.order[k] = k
	}
	sort.Slice(l.order[:], func(a, b int) bool {
		return sp.fields[l.order[a]].start < sp.fields[l.order[b]].start
	})
	// One copy of the frame holds every literal: the values' bytes in it are
	// simply never looked at.
	buf := append([]byte(nil), frame...)
	prev := 0
	for k, f := range l.order {
		v := sp.fields[f]
		l.litStart[k], l.lits[k] = prev, buf[prev:v.start:v.start]
		prev = v.end
		l.valEnd[k] = prev
	}
	l.litStart[len(fieldNames)], l.lits[len(fieldNames)] = prev, buf[prev:]
	l.buf = buf
	l.rawStart, l.rawEnd = sp.raw.start, sp.raw.end-prev
	l.strs = [len(fieldNames)]string{1: q.AccountID, 2: q.FromAsset, 3: q.ToAsset}
	l.id, l.sig = []byte(q.QuoteID), []byte(q.Signature)
	l.fromQty, l.toQty, l.expiryMicros = q.FromQty, q.ToQty, q.ExpiryMicros
	return l
}

// segment is the k-th value's text as learned followed by lits[k+1]: a
// frame holding it where the k-th value starts holds the very same token
// (the learned text after a value never continues it), so the value is the
// learned one. The account, the assets and the fixed quantity repeat in
// every frame of a stream.
func (l *frameLayout) segment(k int) []byte {
	end := len(l.buf)
	if k+1 < len(l.order) {
		end = l.litStart[k+1] + len(l.lits[k+1])
	}
	return l.buf[l.litStart[k]+len(l.lits[k]) : end]
}

// layoutRun is one step of frameLayout.runs: compare buf[lo:hi], then read
// the value of field (-1: none; the frame must end there).
type layoutRun struct {
	lo, hi, field int
}

// decode reads frame by the layout into q. false: frame does not follow the
// layout (q may then hold part of it).
func (l *frameLayout) decode(b []byte, q *Quote, idSig *strings.Builder) bool {
	if l.runs != nil && l.runsFor == l.changing && l.decodeRuns(b, q, idSig) {
		return true
	}
	if !l.decodeFields(b, q, idSig) {
		return false
	}
	if l.runs == nil || l.runsFor != l.changing {
		l.buildRuns()
	}
	return true
}

// buildRuns builds runs for the current changing bits.
func (l *frameLayout) buildRuns() {
	l.runs, l.runsFor = l.runs[:0], l.changing
	lo := l.litStart[0]
	for k, f := range l.order {
		if l.changing&(1<<k) != 0 {
			valStart := l.litStart[k] + len(l.lits[k])
			l.runs = append(l.runs, layoutRun{lo: lo, hi: valStart, field: f})
			lo = l.valEnd[k]
		}
	}
	l.runs = append(l.runs, layoutRun{lo: lo, hi: len(l.buf), field: -1})
}

// decodeRuns reads b by runs: one comparison per stretch of unchanging
// text, one read per changing value. false: b differs from the layout or
// from a value that did not change before (decodeFields then finds which).
func (l *frameLayout) decodeRuns(b []byte, q *Quote, idSig *strings.Builder) bool {
	d := decoder{b: b}
	var idB, sigB []byte
	i := 0
	for _, r := range l.runs {
		lit := l.buf[r.lo:r.hi]
		if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != string(lit) {
			return false
		}
		i += len(lit)
		if r.field < 0 {
			break
		}
		var ok bool
		if i, ok = l.readValue(&d, r.field, i, q, &idB, &sigB); !ok {
			return false
		}
	}
	if i != len(b) {
		return false
	}
	// The unchanging values are the learned ones.
	for k, f := range l.order {
		if l.changing&(1<<k) == 0 {
			l.learned(f, q, &idB, &sigB)
		}
	}
	end := len(b) - len(l.lits[len(fieldNames)]) + l.rawEnd
	q.Raw = b[l.rawStart:end:end]
	setIDSigIn(idSig, q, idB, sigB)
	return true
}

// learned stores the learned value of field f.
func (l *frameLayout) learned(f int, q *Quote, idB, sigB *[]byte) {
	switch f {
	case 0:
		*idB = l.id
	case 7:
		*sigB = l.sig
	case 1:
		q.AccountID = l.strs[f]
	case 2:
		q.FromAsset = l.strs[f]
	case 3:
		q.ToAsset = l.strs[f]
	case 4:
		q.FromQty = l.fromQty
	case 5:
		q.ToQty = l.toQty
	case 6:
		q.ExpiryMicros = l.expiryMicros
	}
}

// readValue reads the value of field f at b[i] as a plain token: a number
// that plainNumber takes, or a string of plain bytes. false: it is not one
// (the full decode reads it, or names its error).
func (l *frameLayout) readValue(d *decoder, f, i int, q *Quote, idB, sigB *[]byte) (int, bool) {
	b := d.b
	var err error
	switch f {
	case 4, 5, 6:
		m, exp, end, ok := plainNumber(b, i)
		if !ok {
			return 0, false // left to number and its errors
		}
		switch f {
		case 4:
			i, err = d.setQuantity(i, fieldNames[f], m, exp, false, end, &q.FromQty)
		case 5:
			i, err = d.setQuantity(i, fieldNames[f], m, exp, false, end, &q.ToQty)
		default:
			i, err = setExpiry(i, m, exp, false, end, q)
		}
		return i, err == nil
	}
	// A string: plain bytes up to the closing quote (the learned text after
	// it starts with that quote). An escape or a control character is left
	// to the full decode.
	j := plainRun(b, i)
	if j == i || j >= len(b) || b[j] != '"' {
		return 0, false
	}
	storeString(q, f, b[i:j], idB, sigB)
	return j, true
}

// decodeFields reads b value by value: each value is compared with its
// learned text unless it changed before, else read; a value that differs
// from its learned text is marked changing.
func (l *frameLayout) decodeFields(b []byte, q *Quote, idSig *strings.Builder) bool {
	d := decoder{b: b}
	var idB, sigB []byte
	i := 0
	skipLit := false // lits[k] was matched with segment(k-1)
	for k, f := range l.order {
		if lit := l.lits[k]; !skipLit {
			if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != string(lit) {
				return false
			}
			i += len(lit)
		}
		if seg := l.segment(k); l.changing&(1<<k) == 0 && len(b)-i >= len(seg) && string(b[i:i+len(seg)]) == string(seg) {
			l.learned(f, q, &idB, &sigB)
			i += len(seg)
			skipLit = true
			continue
		}
		// From the next frame on this value is read, not compared; that
		// reads the same (see above), only the cost differs.
		l.changing |= 1 << k
		skipLit = false
		var ok bool
		if i, ok = l.readValue(&d, f, i, q, &idB, &sigB); !ok {
			return false
		}
	}
	tail := l.lits[len(fieldNames)]
	if skipLit {
		// The last value matched its segment, which must end the frame.
		if i != len(b) {
			return false
		}
		i -= len(tail)
	} else if string(b[i:]) != string(tail) {
		return false
	}
	end := i + l.rawEnd
	q.Raw = b[l.rawStart:end:end]
	setIDSigIn(idSig, q, idB, sigB)
	return true
}

// plainNumber reads, eight bytes at a time, the common number literal at i:
// digits with an optional fraction, no sign, no exponent, at most fastDigits
// digits, not a leading zero before another digit. It returns the value as
// number does (m×10^exp) and the index after the literal; ok is false for
// any other literal, which number then reads.
func plainNumber(b []byte, i int) (m, exp int64, end int, ok bool) {
	v, n, j := digitRun(b, i, 0, 0)
	if n == 0 || n > fastDigits || b[i] == '0' && n > 1 {
		return 0, 0, 0, false
	}
	if j < len(b) && b[j] == '.' {
		var nf int
		v, nf, j = digitRun(b, j+1, v, n)
		if nf == n || nf > fastDigits {
			return 0, 0, 0, false
		}
		exp = int64(n - nf) // minus the digits after the point
	}
	if j >= len(b) {
		return 0, 0, 0, false // number reports the end of the frame
	}
	if c := b[j]; c == 'e' || c == 'E' || c == '.' || c >= '0' && c <= '9' {
		return 0, 0, 0, false
	}
	return int64(v), exp, j, true
}

// digitRun appends to v (which holds n digits) the decimal digits starting
// at b[i] and returns the new value, digit count and the index after the
// digits. Past fastDigits digits it only counts (the value is then unused).
func digitRun(b []byte, i int, v uint64, n int) (uint64, int, int) {
	for i+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[i:])
		k := leadingDigits(x)
		if k > 0 && n+k <= fastDigits {
			v = v*uint64(pow10[k]) + parseDigits(x, k)
		}
		n += k
		i += k
		if k < 8 || n > fastDigits {
			return v, n, i
		}
	}
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if n < fastDigits {
			v = v*10 + uint64(b[i]-'0')
		}
		n++
	}
	return v, n, i
}

// leadingDigits counts the ASCII digits at the start of the eight bytes x
// (little-endian: the first byte lowest). A byte is a digit when its high
// nibble is 3 and its low nibble at most 9; neither test carries between
// bytes.
func leadingDigits(x uint64) int {
	const hi, lo = 0xf0f0f0f0f0f0f0f0, 0x0f0f0f0f0f0f0f0f
	notDigit := (x&hi ^ 0x3030303030303030) | ((x&lo + 0x0606060606060606) & hi)
	return bits.TrailingZeros64(notDigit) / 8
}

// parseDigits is the value of the first k (1..8) bytes of x, all ASCII
// digits, the first the most significant: the digits are moved to the top
// of the word (the bytes below become leading zeros) and combined in pairs,
// then fours, then eights.
func parseDigits(x uint64, k int) uint64 {
	x = (x & 0x0f0f0f0f0f0f0f0f) << (8 * (8 - k))
	x = (x * (10<<8 + 1)) >> 8 & 0x00ff00ff00ff00ff
	x = (x * (100<<16 + 1)) >> 16 & 0x0000ffff0000ffff
	return (x * (10000<<32 + 1)) >> 32
}
