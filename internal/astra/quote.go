package astra

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// Quote is one quote of the OTC quote stream. FromAsset is the asset the
// account buys, ToAsset the asset it sells (SPEC 2).
type Quote struct {
	QuoteID, AccountID, FromAsset, ToAsset string
	FromQty, ToQty                         decimal.Decimal // decoded exactly from the JSON number literal text, never via float64
	ExpiryMicros                           int64           // expiryTime: Unix microseconds
	Signature                              string
	Raw                                    []byte // the "quote" object's bytes exactly as received (aliases the frame)
}

// Expiry is the quote's expiry time.
func (q *Quote) Expiry() time.Time { return time.UnixMicro(q.ExpiryMicros) }

// Bounds of the decoder. A real frame is a few hundred bytes with one level of
// nesting; these only stop hostile input from costing time or stack.
const (
	// maxSkipDepth bounds the nesting of unknown values the decoder skips.
	maxSkipDepth = 32
	// maxNumberLen bounds a quantity literal: a real one has at most ~30
	// characters; a longer one is refused rather than parsed slowly.
	maxNumberLen = 100
	// maxExponent bounds |exponent| of a quantity. Comparing two decimals
	// rescales by the difference of their exponents, so an absurd exponent
	// (1e-999999999) would cost unbounded time downstream.
	maxExponent = 64
	// fastDigits is the number of significant digits that always fit an int64.
	fastDigits = 18
)

// FrameError is a quote frame that does not decode: Field names the field
// (empty for the frame's structure), Problem what is wrong with it, Offset the
// byte offset where it was found (-1 when it concerns the whole object).
type FrameError struct {
	Field   string
	Problem string
	Offset  int
}

func (e *FrameError) Error() string {
	var b strings.Builder
	b.WriteString("astra: quote frame: ")
	switch {
	case e.Problem == "missing":
		b.WriteString("missing ")
		b.WriteString(e.Field)
	case e.Field != "":
		b.WriteString(e.Field)
		b.WriteByte(' ')
		b.WriteString(e.Problem)
	default:
		b.WriteString(e.Problem)
	}
	if e.Offset >= 0 {
		b.WriteString(" (offset ")
		b.WriteString(strconv.Itoa(e.Offset))
		b.WriteByte(')')
	}
	return b.String()
}

func frameErr(field, problem string, off int) error {
	return &FrameError{Field: field, Problem: problem, Offset: off}
}

// Bits of the quote's required fields, in the order missing ones are reported.
const (
	fQuoteID = 1 << iota
	fAccountID
	fFromAsset
	fToAsset
	fFromQty
	fToQty
	fExpiry
	fSignature
	fAll = fQuoteID | fAccountID | fFromAsset | fToAsset | fFromQty | fToQty | fExpiry | fSignature
)

var fieldNames = [...]string{"quoteId", "accountId", "fromAsset", "toAsset",
	"fromAssetQuantity", "toAssetQuantity", "expiryTime", "signature"}

// DecodeQuoteFrame decodes one stream frame, {"quote": {...}}, into q in a
// single pass over frame, reusing q's memory: a string or quantity whose text
// equals what q already holds is kept, so the repeating fields (account, assets,
// the fixed quantity) cost nothing. q.Raw aliases frame. Unknown fields are
// skipped; duplicate known fields, missing or empty required fields, trailing
// bytes and malformed JSON are errors (a *FrameError). On error q holds a
// partial decode and must not be used. It never panics.
func DecodeQuoteFrame(frame []byte, q *Quote) error {
	return decodeFrame(frame, q, nil)
}

// decodeFrame is DecodeQuoteFrame; when sp is not nil it also records where
// the quote object and its eight values lie, for QuoteDecoder to learn the
// frame's layout.
func decodeFrame(frame []byte, q *Quote, sp *valueSpans) error {
	d := decoder{b: frame, sp: sp}
	i := d.ws(0)
	if i >= len(frame) || frame[i] != '{' {
		return frameErr("", "not a JSON object", i)
	}
	i = d.ws(i + 1)
	seen := false
	if i < len(frame) && frame[i] == '}' {
		return frameErr("quote", "missing", -1)
	}
	for {
		var ks, next int
		isQuote := keyAt(frame, i, "quote")
		if isQuote {
			ks, next = i+1, i+len(`"quote"`)
		} else {
			var ke int
			var esc bool
			var err error
			if ks, ke, esc, next, err = d.str(i, ""); err != nil {
				return err
			}
			isQuote = keyIs(frame[ks:ke], esc, "quote")
		}
		var err error
		if i, err = d.colon(next, ""); err != nil {
			return err
		}
		if isQuote {
			if seen {
				return frameErr("quote", "duplicate", ks-1)
			}
			seen = true
			start := i
			if i, err = d.quote(i, q); err != nil {
				return err
			}
			q.Raw = frame[start:i:i]
			if sp != nil {
				sp.raw = span{start, i}
			}
		} else if i, err = d.skip(i, 0); err != nil {
			return err
		}
		if i, err = d.sep(i, ""); err != nil {
			return err
		}
		if i < 0 { // end of object
			i = -i
			break
		}
	}
	if i = d.ws(i); i != len(frame) {
		return frameErr("", "trailing garbage", i)
	}
	if !seen {
		return frameErr("quote", "missing", -1)
	}
	return nil
}

type decoder struct {
	b  []byte
	sp *valueSpans // when not nil, where the values were found
}

// span is the byte range [start, end) of a value in a frame: a string's
// content without its quotes, a number's literal.
type span struct{ start, end int }

// valueSpans records where a decode found the quote object and the values of
// its eight fields (indexed as fieldNames).
type valueSpans struct {
	raw    span
	fields [len(fieldNames)]span
}

// ws returns the index of the first non-whitespace byte at or after i.
func (d *decoder) ws(i int) int {
	for i < len(d.b) {
		switch d.b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// colon expects optional whitespace, ':' and optional whitespace at i and
// returns the index of the value.
func (d *decoder) colon(i int, field string) (int, error) {
	i = d.ws(i)
	if i >= len(d.b) || d.b[i] != ':' {
		return 0, frameErr(field, "expected ':'", i)
	}
	return d.ws(i + 1), nil
}

// sep expects ',' (returns the index of the next key) or '}' (returns minus
// the index after it) after optional whitespace.
func (d *decoder) sep(i int, field string) (int, error) {
	i = d.ws(i)
	if i >= len(d.b) {
		return 0, frameErr(field, "unexpected end of frame", i)
	}
	switch d.b[i] {
	case ',':
		return d.ws(i + 1), nil
	case '}':
		return -(i + 1), nil
	}
	return 0, frameErr(field, "expected ',' or '}'", i)
}

// str scans the JSON string at i. It returns the content's bounds, whether it
// holds escapes, and the index after the closing quote.
func (d *decoder) str(i int, field string) (start, end int, esc bool, next int, err error) {
	b := d.b
	if i >= len(b) || b[i] != '"' {
		problem := "expected a string"
		if field == "" {
			problem = "expected a field name"
		}
		return 0, 0, false, 0, frameErr(field, problem, i)
	}
	start = i + 1
	for j := start; j < len(b); j++ {
		if j = plainRun(b, j); j >= len(b) {
			break
		}
		c := b[j]
		switch {
		case c == '"':
			return start, j, esc, j + 1, nil
		case c == '\\':
			esc = true
			j++
			if j >= len(b) {
				break
			}
			switch b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(b) || !isHex4(b[j+1:j+5]) {
					return 0, 0, false, 0, frameErr(field, "bad \\u escape in string", j-1)
				}
				j += 4
			default:
				return 0, 0, false, 0, frameErr(field, "bad escape in string", j-1)
			}
		case c < 0x20:
			return 0, 0, false, 0, frameErr(field, "control character in string", j)
		}
	}
	return 0, 0, false, 0, frameErr(field, "unterminated string", i)
}

// plainRun returns the index of the first byte at or after j that is special
// in a JSON string (see strSpecial), or len(b). Plain bytes are the common
// case: they are skipped eight at a time, the last few one at a time.
func plainRun(b []byte, j int) int {
	for j+8 <= len(b) {
		m := specialMask(binary.LittleEndian.Uint64(b[j:]))
		if m != 0 {
			return j + bits.TrailingZeros64(m)/8
		}
		j += 8
	}
	for j < len(b) && !strSpecial[b[j]] {
		j++
	}
	return j
}

// specialMask flags the bytes of x (little-endian: the first byte lowest)
// that are special in a JSON string: '"', '\\' and control characters
// (below 0x20, so their top three bits are zero). Each special byte gets its
// 0x80 bit set and no other byte does: zeroBytes is the exact zero-byte
// test (no borrow crosses bytes, unlike the shorter v−0x01… form).
func specialMask(x uint64) uint64 {
	const ones = 0x0101010101010101
	return zeroBytes(x^('"'*ones)) | zeroBytes(x^('\\'*ones)) | zeroBytes(x&(0xe0*ones))
}

// zeroBytes sets the 0x80 bit of exactly the zero bytes of v.
func zeroBytes(v uint64) uint64 {
	const low7 = 0x7f7f7f7f7f7f7f7f
	return ^((v&low7 + low7) | v | low7)
}

// strSpecial marks the bytes that end the plain run of a JSON string: the
// closing quote, an escape, and control characters (invalid unescaped).
var strSpecial = func() (t [256]bool) {
	for c := 0; c < 0x20; c++ {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

func isHex4(h []byte) bool {
	for _, c := range h {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		r <<= 4
		switch {
		case c <= '9':
			r |= rune(c - '0')
		case c >= 'a':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// unescape decodes the content of a string already checked by str. Invalid
// UTF-16 surrogates become U+FFFD, as encoding/json does. It allocates; only
// strings with escapes come here.
func unescape(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		switch s[i] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(s[i+1 : i+5])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					r2 = utf16.DecodeRune(r, hex4(s[i+3:i+7]))
				}
				if r2 != utf8.RuneError {
					i += 6
					r = r2
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default: // '"', '\\', '/'
			out = append(out, s[i])
		}
	}
	return out
}

// keyIs reports whether the key's content equals name.
func keyIs(k []byte, esc bool, name string) bool {
	if esc {
		k = unescape(k)
	}
	return string(k) == name
}

// keyAt reports whether b holds, at i, the key name written plainly: '"',
// the name's bytes and '"'. name has no byte that needs escaping, so such a
// key is exactly name.
func keyAt(b []byte, i int, name string) bool {
	end := i + len(name) + 1
	return end < len(b) && b[i] == '"' && b[end] == '"' && string(b[i+1:end]) == name
}

// quote decodes the quote object at i into q and returns the index after it.
func (d *decoder) quote(i int, q *Quote) (int, error) {
	b := d.b
	if i >= len(b) || b[i] != '{' {
		return 0, frameErr("quote", "not an object", i)
	}
	i = d.ws(i + 1)
	var seen uint
	var idB, sigB []byte
	if i < len(b) && b[i] == '}' {
		i++
	} else {
		expect := 0 // the field the desk's order puts next
		for {
			var ks, next int
			field := -1
			if expect < len(fieldNames) && keyAt(b, i, fieldNames[expect]) {
				// The usual frame: the fields in the desk's order, keys
				// written plainly. A plain name between quotes is the key
				// exactly, so there is nothing to scan or unescape.
				field, ks = expect, i+1
				next = ks + len(fieldNames[field]) + 1
			} else {
				var ke int
				var esc bool
				var err error
				ks, ke, esc, next, err = d.str(i, "")
				if err != nil {
					return 0, err
				}
				key := b[ks:ke]
				if esc {
					key = unescape(key)
				}
				switch string(key) {
				case "quoteId":
					field = 0
				case "accountId":
					field = 1
				case "fromAsset":
					field = 2
				case "toAsset":
					field = 3
				case "fromAssetQuantity":
					field = 4
				case "toAssetQuantity":
					field = 5
				case "expiryTime":
					field = 6
				case "signature":
					field = 7
				}
			}
			if field >= 0 {
				expect = field + 1
			}
			name := ""
			if field >= 0 {
				name = fieldNames[field]
				if seen&(1<<field) != 0 {
					return 0, frameErr(name, "duplicate", ks-1)
				}
				seen |= 1 << field
			}
			var err error
			if i, err = d.colon(next, name); err != nil {
				return 0, err
			}
			switch field {
			case 0, 1, 2, 3, 7:
				vs, ve, vesc, vnext, err := d.str(i, name)
				if err != nil {
					return 0, err
				}
				v := b[vs:ve]
				if vesc {
					v = unescape(v)
				}
				if len(v) == 0 {
					return 0, frameErr(name, "empty", vs-1)
				}
				if d.sp != nil {
					d.sp.fields[field] = span{vs, ve}
				}
				storeString(q, field, v, &idB, &sigB)
				i = vnext
			case 4, 5, 6:
				start := i
				switch field {
				case 4:
					i, err = d.quantity(i, name, &q.FromQty)
				case 5:
					i, err = d.quantity(i, name, &q.ToQty)
				default:
					i, err = d.expiry(i, q)
				}
				if err == nil && d.sp != nil {
					d.sp.fields[field] = span{start, i}
				}
			default:
				i, err = d.skip(i, 1)
			}
			if err != nil {
				return 0, err
			}
			if i, err = d.sep(i, "quote"); err != nil {
				return 0, err
			}
			if i < 0 {
				i = -i
				break
			}
		}
	}
	if seen != fAll {
		for f, name := range fieldNames {
			if seen&(1<<f) == 0 {
				return 0, frameErr(name, "missing", -1)
			}
		}
	}
	setIDSig(q, idB, sigB)
	return i, nil
}

// setIDSig stores the quote id and signature. They change with every quote:
// one allocation holds both.
func setIDSig(q *Quote, idB, sigB []byte) {
	newID, newSig := q.QuoteID != string(idB), q.Signature != string(sigB)
	switch {
	case newID && newSig:
		var sb strings.Builder
		sb.Grow(len(idB) + len(sigB))
		sb.Write(idB)
		sb.Write(sigB)
		s := sb.String()
		q.QuoteID, q.Signature = s[:len(idB)], s[len(idB):]
	case newID:
		q.QuoteID = string(idB)
	case newSig:
		q.Signature = string(sigB)
	}
}

// idSigBlock is the size of the blocks a stream's decoder carves ids and
// signatures from: some thirty quotes' worth.
const idSigBlock = 4 << 10

// setIDSigIn is setIDSig taking the new strings from block: a
// strings.Builder only ever appends, so the strings it returned before stay
// as they were, and one block serves many quotes. A string keeps its whole
// block alive; whoever keeps one for long (the accepted ids) clones it.
func setIDSigIn(block *strings.Builder, q *Quote, idB, sigB []byte) {
	n := len(idB) + len(sigB)
	if n > idSigBlock/4 || q.QuoteID == string(idB) || q.Signature == string(sigB) {
		setIDSig(q, idB, sigB)
		return
	}
	if block.Cap()-block.Len() < n {
		block.Reset()
		block.Grow(idSigBlock)
	}
	start := block.Len()
	block.Write(idB)
	block.Write(sigB)
	s := block.String()[start:]
	q.QuoteID, q.Signature = s[:len(idB)], s[len(idB):]
}

// storeString stores the content v of the string field f (an index of
// fieldNames): the account and assets in q, the id and the signature in
// *idB and *sigB for setIDSig.
func storeString(q *Quote, f int, v []byte, idB, sigB *[]byte) {
	switch f {
	case 0:
		*idB = v
	case 1:
		setString(&q.AccountID, v)
	case 2:
		setString(&q.FromAsset, v)
	case 3:
		setString(&q.ToAsset, v)
	case 7:
		*sigB = v
	}
}

// setString stores v in *dst unless *dst already holds those bytes.
func setString(dst *string, v []byte) {
	if *dst != string(v) {
		*dst = string(v)
	}
}

// number scans the JSON number at i. For a literal with at most fastDigits
// significant digits it returns mantissa m and exponent exp (value m×10^exp)
// with big=false; for a longer one big=true (m is then meaningless). end is
// the index after the literal.
func (d *decoder) number(i int, field string) (m int64, exp int64, big bool, end int, err error) {
	b := d.b
	start := i
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	if i >= len(b) || b[i] < '0' || b[i] > '9' {
		return 0, 0, false, 0, frameErr(field, "not a number", start)
	}
	var mant uint64
	sig := 0 // significant digits accumulated
	addDigit := func(c byte) {
		if mant == 0 && c == '0' {
			return // a leading zero is not significant
		}
		sig++
		if sig <= fastDigits {
			mant = mant*10 + uint64(c-'0')
		}
	}
	if b[i] == '0' {
		i++
	} else {
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			addDigit(b[i])
		}
	}
	var frac int64
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return 0, 0, false, 0, frameErr(field, "not a number", start)
		}
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			addDigit(b[i])
			frac++
		}
	}
	var e int64
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			eneg = b[i] == '-'
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return 0, 0, false, 0, frameErr(field, "not a number", start)
		}
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if e < 1<<40 { // beyond this the value is out of range anyway
				e = e*10 + int64(b[i]-'0')
			}
		}
		if eneg {
			e = -e
		}
	}
	if i-start > maxNumberLen {
		return 0, 0, false, 0, frameErr(field, "out of range", start)
	}
	m = int64(mant)
	if neg {
		m = -m
	}
	return m, e - frac, sig > fastDigits, i, nil
}

// quantity decodes the number at i into *dst exactly, keeping *dst when it
// already holds the same coefficient and exponent (decimals are immutable, so
// sharing one is safe).
func (d *decoder) quantity(i int, field string, dst *decimal.Decimal) (int, error) {
	m, exp, big, end, err := d.number(i, field)
	if err != nil {
		return 0, err
	}
	return d.setQuantity(i, field, m, exp, big, end, dst)
}

// setQuantity stores the number m×10^exp (or, big, the literal b[i:end]) read
// at i in *dst, as quantity does.
func (d *decoder) setQuantity(i int, field string, m, exp int64, big bool, end int, dst *decimal.Decimal) (int, error) {
	if exp < -maxExponent || exp > maxExponent {
		return 0, frameErr(field, "out of range", i)
	}
	if big {
		v, err := decimal.NewFromString(string(d.b[i:end]))
		if err != nil {
			return 0, frameErr(field, "not a number", i)
		}
		*dst = v
		return end, nil
	}
	if dst.Exponent() != int32(exp) || dst.CoefficientInt64() != m || dst.NumDigits() > fastDigits {
		*dst = decimal.New(m, int32(exp))
	}
	return end, nil
}

var pow10 = [...]int64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18}

// expiry decodes expiryTime, an integer count of microseconds (an exponent
// form such as 1.7e15 is accepted when the value is integral).
func (d *decoder) expiry(i int, q *Quote) (int, error) {
	m, exp, big, end, err := d.number(i, "expiryTime")
	if err != nil {
		return 0, err
	}
	return setExpiry(i, m, exp, big, end, q)
}

// setExpiry stores the number m×10^exp read at i as the expiry, as expiry
// does.
func setExpiry(i int, m, exp int64, big bool, end int, q *Quote) (int, error) {
	const field = "expiryTime"
	if big || exp > fastDigits || exp < -fastDigits {
		if m == 0 && !big {
			q.ExpiryMicros = 0
			return end, nil
		}
		return 0, frameErr(field, "out of range", i)
	}
	switch {
	case exp > 0:
		p := pow10[exp]
		if m > (1<<63-1)/p || m < -(1<<63-1)/p {
			return 0, frameErr(field, "out of range", i)
		}
		m *= p
	case exp < 0:
		p := pow10[-exp]
		if m%p != 0 {
			return 0, frameErr(field, "not an integer", i)
		}
		m /= p
	}
	q.ExpiryMicros = m
	return end, nil
}

// skip validates and skips the JSON value at i, returning the index after it.
func (d *decoder) skip(i int, depth int) (int, error) {
	b := d.b
	if i >= len(b) {
		return 0, frameErr("", "unexpected end of frame", i)
	}
	switch c := b[i]; {
	case c == '"':
		_, _, _, next, err := d.str(i, "")
		return next, err
	case c == '-' || c >= '0' && c <= '9':
		_, _, _, end, err := d.number(i, "")
		return end, err
	case c == 't':
		return d.literal(i, "true")
	case c == 'f':
		return d.literal(i, "false")
	case c == 'n':
		return d.literal(i, "null")
	case c == '{' || c == '[':
		if depth >= maxSkipDepth {
			return 0, frameErr("", "nested too deep", i)
		}
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		i = d.ws(i + 1)
		if i < len(b) && b[i] == closing {
			return i + 1, nil
		}
		for {
			var err error
			if c == '{' {
				_, _, _, next, err := d.str(i, "")
				if err != nil {
					return 0, err
				}
				if i, err = d.colon(next, ""); err != nil {
					return 0, err
				}
			}
			if i, err = d.skip(i, depth+1); err != nil {
				return 0, err
			}
			i = d.ws(i)
			if i >= len(b) {
				return 0, frameErr("", "unexpected end of frame", i)
			}
			switch b[i] {
			case ',':
				i = d.ws(i + 1)
			case closing:
				return i + 1, nil
			default:
				return 0, frameErr("", "expected ',' or '"+string(closing)+"'", i)
			}
		}
	}
	return 0, frameErr("", "invalid value", i)
}

func (d *decoder) literal(i int, lit string) (int, error) {
	if len(d.b)-i < len(lit) || string(d.b[i:i+len(lit)]) != lit {
		return 0, frameErr("", "invalid value", i)
	}
	return i + len(lit), nil
}
