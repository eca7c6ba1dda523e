package astra

import (
	"sort"

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
	// seg[k] is the k-th value's text as learned followed by lits[k+1]: a
	// frame holding it where the k-th value starts holds the very same token
	// (the learned text after a value never continues it), so the value is
	// the learned one, below. The account, the assets and the fixed
	// quantity repeat in every frame of a stream.
	seg [len(fieldNames)][]byte
	// The learned values: strings and quantities are immutable, so a quote
	// may share them.
	strs           [len(fieldNames)]string
	id, sig        []byte // the learned id and signature, decoded
	fromQty, toQty decimal.Decimal
	expiryMicros   int64
}

// Decode decodes frame into q exactly as DecodeQuoteFrame does.
func (qd *QuoteDecoder) Decode(frame []byte, q *Quote) error {
	if l := qd.layout; l != nil && l.decode(frame, q) {
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
		l.lits[k] = buf[prev:v.start:v.start]
		if k > 0 {
			l.seg[k-1] = buf[sp.fields[l.order[k-1]].start:v.start:v.start]
		}
		prev = v.end
	}
	l.lits[len(fieldNames)] = buf[prev:]
	l.seg[len(fieldNames)-1] = buf[sp.fields[l.order[len(fieldNames)-1]].start:]
	l.rawStart, l.rawEnd = sp.raw.start, sp.raw.end-prev
	l.strs = [len(fieldNames)]string{1: q.AccountID, 2: q.FromAsset, 3: q.ToAsset}
	l.id, l.sig = []byte(q.QuoteID), []byte(q.Signature)
	l.fromQty, l.toQty, l.expiryMicros = q.FromQty, q.ToQty, q.ExpiryMicros
	return l
}

// decode reads frame by the layout into q. false: frame does not follow the
// layout (q may then hold part of it).
func (l *frameLayout) decode(b []byte, q *Quote) bool {
	d := decoder{b: b}
	var idB, sigB []byte
	i := 0
	skipLit := false // lits[k] was matched with seg[k-1]
	for k, f := range l.order {
		if lit := l.lits[k]; !skipLit {
			if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != string(lit) {
				return false
			}
			i += len(lit)
		}
		if seg := l.seg[k]; len(b)-i >= len(seg) && string(b[i:i+len(seg)]) == string(seg) {
			switch f {
			case 0:
				idB = l.id
			case 7:
				sigB = l.sig
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
			i += len(seg)
			skipLit = true
			continue
		}
		skipLit = false
		var err error
		switch f {
		case 4:
			i, err = d.quantity(i, fieldNames[f], &q.FromQty)
		case 5:
			i, err = d.quantity(i, fieldNames[f], &q.ToQty)
		case 6:
			i, err = d.expiry(i, q)
		default:
			// A string: plain bytes up to the closing quote (the learned
			// text after it starts with that quote). An escape or a
			// control character is left to the full decode.
			j := plainRun(b, i)
			if j == i || j >= len(b) || b[j] != '"' {
				return false
			}
			v := b[i:j]
			switch f {
			case 0:
				idB = v
			case 1:
				setString(&q.AccountID, v)
			case 2:
				setString(&q.FromAsset, v)
			case 3:
				setString(&q.ToAsset, v)
			case 7:
				sigB = v
			}
			i = j
		}
		if err != nil {
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
	setIDSig(q, idB, sigB)
	return true
}
