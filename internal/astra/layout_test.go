package astra

import (
	"fmt"
	"strings"
	"testing"
)

// decodedEqual compares two decodes of a frame: both errors' text, or every
// field of both quotes (quantities by coefficient and exponent, so a kept
// decimal must be the very value a fresh decode gives).
func decodedEqual(t *testing.T, frame []byte, gotErr, wantErr error, got, want *Quote) {
	t.Helper()
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("frame %q: QuoteDecoder error %v, DecodeQuoteFrame error %v", frame, gotErr, wantErr)
	}
	if wantErr != nil {
		return
	}
	same := got.QuoteID == want.QuoteID && got.AccountID == want.AccountID &&
		got.FromAsset == want.FromAsset && got.ToAsset == want.ToAsset &&
		got.Signature == want.Signature && got.ExpiryMicros == want.ExpiryMicros &&
		got.FromQty.String() == want.FromQty.String() && got.FromQty.Exponent() == want.FromQty.Exponent() &&
		got.ToQty.String() == want.ToQty.String() && got.ToQty.Exponent() == want.ToQty.Exponent() &&
		string(got.Raw) == string(want.Raw)
	if !same {
		t.Fatalf("frame %q:\nQuoteDecoder    %+v\nDecodeQuoteFrame %+v", frame, *got, *want)
	}
	if len(got.Raw) > 0 && &got.Raw[0] != &frame[strings.Index(string(frame), string(got.Raw))] {
		t.Fatalf("frame %q: Raw does not alias the frame", frame)
	}
}

// TestQuoteDecoderDecodesAsDecodeQuoteFrame: after learning the layout of a
// frame, the decoder gives for every next frame, following the layout or
// not, exactly what DecodeQuoteFrame gives: the values, Raw, and the same
// error for a bad frame.
func TestQuoteDecoderDecodesAsDecodeQuoteFrame(t *testing.T) {
	base := sampleFrame
	cases := []struct {
		name  string
		frame string
	}{
		{"same frame", base},
		{"new id, price and signature", strings.NewReplacer(
			"46c910a54cf1\",\n\"accountId", "46c910a54c99\",\n\"accountId",
			"81436.0875", "81437.5", "6932874cf", "6932874ce").Replace(base)},
		{"longer and shorter values", strings.NewReplacer(
			"1.25", "1.250000", "81436.0875", "9", `"BTC"`, `"BTCX"`).Replace(base)},
		{"an exponent in a quantity", strings.Replace(base, "81436.0875", "8.14360875e4", 1)},
		{"expiry with an exponent", strings.Replace(base, "1733561867046245", "1.733561867046245e15", 1)},
		{"a negative quantity", strings.Replace(base, "1.25", "-1.25", 1)},
		{"an escape in the id", strings.Replace(base, `"a0743434-`, `"a\u0030743434-`, 1)},
		{"an empty id", strings.Replace(base, `"a0743434-66c8-49b7-aca2-46c910a54cf1",
"accountId"`, `"",
"accountId"`, 1)},
		{"a string where a number was", strings.Replace(base, "1.25", `"1.25"`, 1)},
		{"a number where a string was", strings.Replace(base, `"BTC"`, `7`, 1)},
		{"a quantity out of range", strings.Replace(base, "1.25", "1e-999", 1)},
		{"an expiry that is not an integer", strings.Replace(base, "1733561867046245", "1733561867046245.5", 1)},
		{"different spacing", strings.Replace(base, `"toAsset": "USD"`, `"toAsset":"USD"`, 1)},
		{"fields reordered", strings.Replace(strings.Replace(base, `"fromAsset": "BTC",`, ``, 1),
			`"toAsset": "USD",`, `"toAsset": "USD", "fromAsset": "BTC",`, 1)},
		{"a duplicate field", strings.Replace(base, `"toAsset": "USD",`, `"toAsset": "USD", "toAsset": "USD",`, 1)},
		{"a missing field", strings.Replace(base, `"toAsset": "USD",`, ``, 1)},
		{"an unknown field", strings.Replace(base, `"toAsset": "USD",`, `"toAsset": "USD", "venue": "x",`, 1)},
		{"trailing garbage", base + "x"},
		{"trailing whitespace", base + "\n"},
		{"truncated", base[:len(base)-3]},
		{"truncated in a value", base[:strings.Index(base, "81436")+3]},
		{"a control character in the signature", strings.Replace(base, "6932874cf", "6932874\x01f", 1)},
		{"an unterminated signature", strings.TrimSuffix(base, "\"\n}\n}")},
		{"not an object", `[]`},
		{"empty", ``},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var qd QuoteDecoder
			var got Quote
			if err := qd.Decode([]byte(base), &got); err != nil {
				t.Fatal(err)
			}
			if qd.layout == nil {
				t.Fatal("no layout learned from the sample frame")
			}
			f := []byte(c.frame)
			var want Quote
			wantErr := DecodeQuoteFrame(f, &want)
			gotErr := qd.Decode(f, &got)
			decodedEqual(t, f, gotErr, wantErr, &got, &want)
			// And once more: the layout a good frame taught, or the one a
			// bad frame kept, decodes the sample again.
			var again Quote
			if err := qd.Decode([]byte(base), &again); err != nil {
				t.Fatalf("sample after %q: %v", c.frame, err)
			}
		})
	}
}

// TestQuoteDecoderTakesTheLearnedPath: frames of the learned layout are read
// by it (nothing is learned again), and the strings that repeat are kept as
// DecodeQuoteFrame keeps them.
func TestQuoteDecoderTakesTheLearnedPath(t *testing.T) {
	var qd QuoteDecoder
	var q Quote
	f1 := []byte(frame("", ""))
	if err := qd.Decode(f1, &q); err != nil {
		t.Fatal(err)
	}
	l := qd.layout
	account := q.AccountID
	f2 := []byte(strings.NewReplacer(`"q-1"`, `"q-22"`, `"sig"`, `"sig2"`, `81436.0875`, `81437.5`).Replace(string(f1)))
	if err := qd.Decode(f2, &q); err != nil {
		t.Fatal(err)
	}
	if qd.layout != l {
		t.Error("a frame of the learned layout was decoded in full and learned again")
	}
	if q.QuoteID != "q-22" || q.Signature != "sig2" || q.ToQty.String() != "81437.5" || q.AccountID != account {
		t.Errorf("decoded %+v", q)
	}
	// Strings never alias the frame.
	for i := range f2 {
		f2[i] = 'x'
	}
	if q.QuoteID != "q-22" || q.Signature != "sig2" || q.AccountID != "acc" {
		t.Errorf("decoded strings changed with the frame: %+v", q)
	}
	f3 := []byte(strings.Replace(string(f1), `"quoteId":`, `"quoteId" :`, 1))
	if err := qd.Decode(f3, &q); err != nil {
		t.Fatal(err)
	}
	if qd.layout == l {
		t.Error("a frame of another layout did not teach its layout")
	}
}

// FuzzQuoteDecoder: whatever frames taught the layout (or failed to) and
// marked values as changing, the decoder decodes each next frame exactly as
// DecodeQuoteFrame does.
func FuzzQuoteDecoder(f *testing.F) {
	escaped := strings.NewReplacer(`"a0743434-`, `"a\u0030743434-`, `"BTC"`, `"B\"TC"`).Replace(sampleFrame)
	next := strings.NewReplacer("46c910a54cf1\",\n\"accountId", "46c910a54c00\",\n\"accountId",
		"81436.0875", "81437.5", "6932874cf", "6932874c0").Replace(sampleFrame)
	f.Add([]byte(sampleFrame), []byte(sampleFrame), []byte(sampleFrame))
	f.Add([]byte(sampleFrame), []byte(next), []byte(sampleFrame))
	f.Add([]byte(sampleFrame), []byte(next), []byte(strings.Replace(sampleFrame, "81436.0875", "81436.08751", 1)))
	f.Add([]byte(sampleFrame), []byte(next), []byte(strings.Replace(sampleFrame, "1.25", "1.25e3", 1)))
	f.Add([]byte(sampleFrame), []byte(next), []byte(strings.Replace(sampleFrame, `"BTC"`, `"ETH"`, 1)))
	f.Add([]byte(sampleFrame), []byte(next), []byte(sampleFrame+" "))
	f.Add([]byte(escaped), []byte(escaped), []byte(escaped))
	f.Add([]byte(escaped), []byte(strings.Replace(escaped, "81436.0875", "81437", 1)), []byte(escaped))
	f.Add([]byte(frame("", "")), []byte(frame("quoteId", `"q-2"`)), []byte(frame("quoteId", `"q-3"`)))
	f.Fuzz(func(t *testing.T, first, second, third []byte) {
		var qd QuoteDecoder
		var got Quote
		_ = qd.Decode(first, &got)
		for _, data := range [][]byte{second, third} {
			var want Quote
			wantErr := DecodeQuoteFrame(data, &want)
			gotErr := qd.Decode(data, &got)
			decodedEqual(t, data, gotErr, wantErr, &got, &want)
		}
	})
}

// TestQuoteDecoderReadsByRunsAsDecodeQuoteFrame: once the changing values
// are known, frames are read a stretch of unchanging text at a time; a
// frame where an unchanging value or the text differs is still decoded
// exactly as DecodeQuoteFrame does, and the frames after it too.
func TestQuoteDecoderReadsByRunsAsDecodeQuoteFrame(t *testing.T) {
	var qd QuoteDecoder
	var q Quote
	mk := func(i int, repl ...string) []byte {
		f := strings.NewReplacer("46c910a54cf1\",\n\"accountId", fmt.Sprintf("46c910a5%04d\",\n\"accountId", i),
			"81436.0875", fmt.Sprintf("81436.%04d", i), "6932874cf", fmt.Sprintf("6932874c%d", i%10)).Replace(sampleFrame)
		return []byte(strings.NewReplacer(repl...).Replace(f))
	}
	frames := [][]byte{mk(0), mk(1), mk(2), mk(3)}
	frames = append(frames, mk(4, `"USD"`, `"EUR"`), mk(5), mk(6, "1.25", "1.5"), mk(7), mk(8, `"USD"`, `"US\u0044"`),
		mk(9), mk(10, "\n}\n}", "\n} \n}"), mk(11), mk(12, "81436.", "-81436."), mk(13),
		append(mk(14), 'x'), mk(15), mk(16)[:len(mk(16))-1], mk(17))
	for i, f := range frames {
		var want Quote
		wantErr := DecodeQuoteFrame(f, &want)
		gotErr := qd.Decode(f, &q)
		decodedEqual(t, f, gotErr, wantErr, &q, &want)
		if i == 3 && (qd.layout == nil || qd.layout.runs == nil) {
			t.Fatal("no runs after four frames of one layout")
		}
	}
}

// TestPlainNumberReadsAsNumber: whenever the eight-at-a-time reader takes a
// literal, number reads the same value and end; it leaves alone every
// literal it is not sure of. Lengths around the word size and fastDigits,
// leading zeros, fractions, and every kind of byte after the literal.
func TestPlainNumberReadsAsNumber(t *testing.T) {
	lits := []string{"0", "5", "0.5", "00", "05", "0.05", "1.", ".5", "-1", "1e5", "1.5E-3",
		"12345678", "123456789", "1234567.8", "12345678.12345678", "123456789012345678",
		"1234567890123456789", "0.000000000000000001", "0.0000000000000000001",
		"100000000000000000.0", "1733561867046245", "81436.0875", "32012.3456"}
	seed := uint64(11)
	for n := 1; n <= 22; n++ {
		for f := 0; f <= 20; f += 3 {
			var sb strings.Builder
			for k := 0; k < n+f; k++ {
				if k == n {
					sb.WriteByte('.')
				}
				seed = seed*6364136223846793005 + 1442695040888963407
				sb.WriteByte(byte('0' + seed>>59%10))
			}
			lits = append(lits, sb.String())
		}
	}
	took := 0
	for _, lit := range lits {
		for _, after := range []string{"", ",", "}", " ", "\n}", "e", "E7", ".", "0", "x", ",\"signature\": \"abc\"\n}\n}"} {
			b := []byte(lit + after)
			m, exp, end, ok := plainNumber(b, 0)
			if !ok {
				continue
			}
			took++
			d := decoder{b: b}
			wm, wexp, big, wend, err := d.number(0, "f")
			if err != nil || big || m != wm || exp != wexp || end != wend {
				t.Errorf("%q: plainNumber = %d e%d end %d; number = %d e%d end %d big %v err %v", b, m, exp, end, wm, wexp, wend, big, err)
			}
		}
	}
	if took < len(lits) {
		t.Errorf("plainNumber took only %d of the literals; the test checks nothing", took)
	}
}

// TestQuoteDecoderStringsStayAsDecoded: the ids and signatures the decoder
// hands out share blocks of memory; none ever changes as later frames are
// decoded into the same Quote, across many blocks.
func TestQuoteDecoderStringsStayAsDecoded(t *testing.T) {
	var qd QuoteDecoder
	var q Quote
	type kept struct{ id, sig, wantID, wantSig string }
	var all []kept
	for i := 0; i < 2000; i++ {
		id := fmt.Sprintf(`"q-%06d"`, i)
		sig := fmt.Sprintf(`"%0*d"`, 40+i%50, i) // lengths vary, so blocks fill unevenly
		f := []byte(frame("quoteId", id))
		f = []byte(strings.Replace(string(f), `"sig"`, sig, 1))
		if err := qd.Decode(f, &q); err != nil {
			t.Fatal(err)
		}
		all = append(all, kept{q.QuoteID, q.Signature, strings.Trim(id, `"`), strings.Trim(sig, `"`)})
		for j := range f {
			f[j] = 'x' // the frame buffer is reused by the reader
		}
	}
	for i, k := range all {
		if k.id != k.wantID || k.sig != k.wantSig {
			t.Fatalf("quote %d: id %q signature %q, want %q %q", i, k.id, k.sig, k.wantID, k.wantSig)
		}
	}
}
