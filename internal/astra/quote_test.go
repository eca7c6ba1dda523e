package astra

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/shopspring/decimal"
)

// sampleFrame is the stream's sample response from the reference.
const sampleFrame = `{
"quote": {
"quoteId": "a0743434-66c8-49b7-aca2-46c910a54cf1",
"accountId": "a0743434-66c8-49b7-aca2-46c910a54cf1",
"fromAsset": "BTC",
"toAsset": "USD",
"fromAssetQuantity": 1.25,
"toAssetQuantity": 81436.0875,
"expiryTime": 1733561867046245,
"signature": "6932874cf486617239c7d27100e911903ccbee05c8b07fe3f4299e047f46553a"
}
}`

func TestDecodeQuoteFrameReadsTheReferenceSample(t *testing.T) {
	var q Quote
	if err := DecodeQuoteFrame([]byte(sampleFrame), &q); err != nil {
		t.Fatal(err)
	}
	want := Quote{
		QuoteID:      "a0743434-66c8-49b7-aca2-46c910a54cf1",
		AccountID:    "a0743434-66c8-49b7-aca2-46c910a54cf1",
		FromAsset:    "BTC",
		ToAsset:      "USD",
		FromQty:      decimal.RequireFromString("1.25"),
		ToQty:        decimal.RequireFromString("81436.0875"),
		ExpiryMicros: 1733561867046245,
		Signature:    "6932874cf486617239c7d27100e911903ccbee05c8b07fe3f4299e047f46553a",
	}
	assertQuote(t, &q, &want)
	if got := q.Expiry(); !got.Equal(time.Date(2024, 12, 7, 8, 57, 47, 46245000, time.UTC)) {
		t.Errorf("Expiry() = %v", got)
	}
	// Raw is the quote object byte for byte, starting at '{' and ending at '}'.
	start := strings.Index(sampleFrame, `{
"quoteId"`)
	end := strings.LastIndex(sampleFrame, "}\n}") + 1
	if string(q.Raw) != sampleFrame[start:end] {
		t.Errorf("Raw = %q, want %q", q.Raw, sampleFrame[start:end])
	}
}

func assertQuote(t *testing.T, got, want *Quote) {
	t.Helper()
	if got.QuoteID != want.QuoteID || got.AccountID != want.AccountID || got.FromAsset != want.FromAsset ||
		got.ToAsset != want.ToAsset || got.Signature != want.Signature || got.ExpiryMicros != want.ExpiryMicros {
		t.Errorf("decoded %+v, want %+v", *got, *want)
	}
	// Exactly the literal: same value and same scale.
	if !got.FromQty.Equal(want.FromQty) || got.FromQty.String() != want.FromQty.String() {
		t.Errorf("FromQty = %s, want %s", got.FromQty, want.FromQty)
	}
	if !got.ToQty.Equal(want.ToQty) || got.ToQty.String() != want.ToQty.String() {
		t.Errorf("ToQty = %s, want %s", got.ToQty, want.ToQty)
	}
}

// frame builds a frame from the sample with one field's value text replaced
// (or the field removed when value is "-").
func frame(field, value string) string {
	fields := [][2]string{
		{"quoteId", `"q-1"`}, {"accountId", `"acc"`}, {"fromAsset", `"BTC"`}, {"toAsset", `"USD"`},
		{"fromAssetQuantity", `1.25`}, {"toAssetQuantity", `81436.0875`},
		{"expiryTime", `1733561867046245`}, {"signature", `"sig"`},
	}
	var b strings.Builder
	b.WriteString(`{"quote":{`)
	first := true
	for _, f := range fields {
		v := f[1]
		if f[0] == field {
			v = value
		}
		if v == "-" {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(`"` + f[0] + `":` + v)
	}
	b.WriteString(`}}`)
	return b.String()
}

func TestDecodeQuoteFrameDecodesQuantitiesExactly(t *testing.T) {
	tests := []struct {
		literal string
		want    string // decimal.String of the exact value
		exp     int32  // the literal's scale is kept
	}{
		{"1.25", "1.25", -2},
		{"0.1", "0.1", -1},
		{"0.30000000000000004", "0.30000000000000004", -17},
		{"81436.0875", "81436.0875", -4},
		{"1.250", "1.25", -3},
		{"25000", "25000", 0},
		{"0", "0", 0},
		{"0.000001", "0.000001", -6},
		{"1e3", "1000", 3},
		{"1.5E+2", "150", 1},
		{"125e-2", "1.25", -2},
		{"-2.5", "-2.5", -1},
		// More than 18 significant digits: the exact slow path.
		{"123456789012345678901234.5", "123456789012345678901234.5", -1},
		{"0.1234567890123456789", "0.1234567890123456789", -19},
		{"99999999999999999999e-2", "999999999999999999.99", -2},
	}
	for _, tt := range tests {
		t.Run(tt.literal, func(t *testing.T) {
			var q Quote
			if err := DecodeQuoteFrame([]byte(frame("toAssetQuantity", tt.literal)), &q); err != nil {
				t.Fatal(err)
			}
			want := decimal.RequireFromString(tt.want)
			if !q.ToQty.Equal(want) {
				t.Errorf("ToQty = %s, want %s", q.ToQty, tt.want)
			}
			if q.ToQty.Exponent() != tt.exp {
				t.Errorf("ToQty exponent = %d, want %d", q.ToQty.Exponent(), tt.exp)
			}
		})
	}
}

func TestDecodeQuoteFrameAcceptsValidJSONVariants(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		check func(t *testing.T, q *Quote)
	}{
		{"whitespace everywhere", " \t\r\n{ \"quote\" :\n{ \"quoteId\" : \"q\" , \"accountId\":\"a\",\"fromAsset\":\"BTC\",\"toAsset\":\"USD\"," +
			"\"fromAssetQuantity\" : 1 ,\"toAssetQuantity\":2,\"expiryTime\":3,\"signature\":\"s\" } \n} \n", nil},
		{"unknown fields skipped at both levels",
			`{"seq":7,"quote":{"extra":{"a":[1,2,{"b":null}],"c":"}"},"quoteId":"q","accountId":"a","fromAsset":"BTC","toAsset":"USD",` +
				`"fromAssetQuantity":1,"toAssetQuantity":2,"flag":true,"off":false,"n":null,"expiryTime":3,"signature":"s","neg":-1.5e-3},"after":[]}`, nil},
		{"escapes in strings are decoded", frame("quoteId", `"q\u002D1\n\"\\\/\ud83d\ude00"`), func(t *testing.T, q *Quote) {
			if want := "q-1\n\"\\/\U0001F600"; q.QuoteID != want {
				t.Errorf("QuoteID = %q, want %q", q.QuoteID, want)
			}
		}},
		{"escaped key", strings.Replace(frame("", ""), `"quoteId"`, `"quote\u0049d"`, 1), func(t *testing.T, q *Quote) {
			if q.QuoteID != "q-1" {
				t.Errorf("QuoteID = %q", q.QuoteID)
			}
		}},
		{"lone surrogate becomes U+FFFD", frame("signature", `"\ud800x"`), func(t *testing.T, q *Quote) {
			if q.Signature != "\uFFFDx" {
				t.Errorf("Signature = %q", q.Signature)
			}
		}},
		{"expiry in exponent form", frame("expiryTime", `1.733561867046245e15`), func(t *testing.T, q *Quote) {
			if q.ExpiryMicros != 1733561867046245 {
				t.Errorf("ExpiryMicros = %d", q.ExpiryMicros)
			}
		}},
		{"fields in any order", `{"quote":{"signature":"s","expiryTime":3,"toAssetQuantity":2,"fromAssetQuantity":1,` +
			`"toAsset":"USD","fromAsset":"BTC","accountId":"a","quoteId":"q"}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q Quote
			if err := DecodeQuoteFrame([]byte(tt.frame), &q); err != nil {
				t.Fatal(err)
			}
			// Raw must be the exact "quote" value, itself valid JSON.
			if !json.Valid(q.Raw) || q.Raw[0] != '{' || q.Raw[len(q.Raw)-1] != '}' || !bytes.Contains([]byte(tt.frame), q.Raw) {
				t.Errorf("Raw = %q", q.Raw)
			}
			if tt.check != nil {
				tt.check(t, &q)
			}
		})
	}
}

func TestDecodeQuoteFrameRejectsBadFramesNamingTheProblem(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  string // substring of the error
	}{
		{"empty", ``, "not a JSON object"},
		{"not an object", `[1]`, "not a JSON object"},
		{"no quote", `{"other":1}`, "missing quote"},
		{"empty object", `{}`, "missing quote"},
		{"quote not an object", `{"quote":"x"}`, "quote not an object"},
		{"duplicate quote", `{"quote":` + frame("", "")[9:len(frame("", ""))-1] + `,"quote":{}}`, "quote duplicate"},
		{"missing quoteId", frame("quoteId", "-"), "missing quoteId"},
		{"missing accountId", frame("accountId", "-"), "missing accountId"},
		{"missing fromAsset", frame("fromAsset", "-"), "missing fromAsset"},
		{"missing toAsset", frame("toAsset", "-"), "missing toAsset"},
		{"missing fromAssetQuantity", frame("fromAssetQuantity", "-"), "missing fromAssetQuantity"},
		{"missing toAssetQuantity", frame("toAssetQuantity", "-"), "missing toAssetQuantity"},
		{"missing expiryTime", frame("expiryTime", "-"), "missing expiryTime"},
		{"missing signature", frame("signature", "-"), "missing signature"},
		{"empty quoteId", frame("quoteId", `""`), "quoteId empty"},
		{"empty signature", frame("signature", `""`), "signature empty"},
		{"quoteId a number", frame("quoteId", `12`), "quoteId expected a string"},
		{"null accountId", frame("accountId", `null`), "accountId expected a string"},
		{"quantity as string", frame("fromAssetQuantity", `"1.25"`), "fromAssetQuantity not a number"},
		{"quantity null", frame("toAssetQuantity", `null`), "toAssetQuantity not a number"},
		{"quantity leading dot", frame("fromAssetQuantity", `.5`), "fromAssetQuantity not a number"},
		{"quantity trailing dot", frame("fromAssetQuantity", `1.`), "fromAssetQuantity not a number"},
		{"quantity bare exponent", frame("fromAssetQuantity", `1e`), "fromAssetQuantity not a number"},
		{"quantity plus sign", frame("fromAssetQuantity", `+1`), "fromAssetQuantity not a number"},
		{"quantity leading zero", frame("fromAssetQuantity", `01`), "expected ',' or '}'"},
		{"quantity NaN", frame("toAssetQuantity", `NaN`), "toAssetQuantity not a number"},
		{"quantity huge exponent", frame("toAssetQuantity", `1e999999999999`), "toAssetQuantity out of range"},
		{"quantity tiny exponent", frame("toAssetQuantity", `1e-65`), "toAssetQuantity out of range"},
		{"quantity absurdly long", frame("toAssetQuantity", "1"+strings.Repeat("0", 200)), "toAssetQuantity out of range"},
		{"expiry fractional", frame("expiryTime", `1733561867046245.5`), "expiryTime not an integer"},
		{"expiry overflow", frame("expiryTime", `9223372036854775808`), "expiryTime out of range"},
		{"expiry exponent overflow", frame("expiryTime", `1e19`), "expiryTime out of range"},
		{"duplicate field", strings.Replace(frame("", ""), `"toAsset":"USD"`, `"toAsset":"USD","toAsset":"EUR"`, 1), "toAsset duplicate"},
		{"trailing garbage", sampleFrame + "x", "trailing garbage"},
		{"two frames", sampleFrame + sampleFrame, "trailing garbage"},
		{"truncated", sampleFrame[:len(sampleFrame)-10], ""},
		{"unterminated string", `{"quote":{"quoteId":"abc`, "unterminated string"},
		{"control char in string", frame("quoteId", "\"a\x01b\""), "control character"},
		{"bad escape", frame("quoteId", `"a\xb"`), "bad escape"},
		{"bad unicode escape", frame("quoteId", `"a\u12g4"`), "bad \\u escape"},
		{"missing colon", `{"quote" {}}`, "expected ':'"},
		{"missing comma", `{"quote":{"quoteId":"a" "x":1}}`, "expected ',' or '}'"},
		{"trailing comma", strings.Replace(frame("", ""), `}}`, `,}}`, 1), "expected a field name"},
		{"bad literal in unknown field", strings.Replace(frame("", ""), `{"quoteId"`, `{"x":tru,"quoteId"`, 1), "invalid value"},
		{"too deep unknown field", strings.Replace(frame("", ""), `{"quoteId"`, `{"x":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`,"quoteId"`, 1), "nested too deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q Quote
			err := DecodeQuoteFrame([]byte(tt.frame), &q)
			if err == nil {
				t.Fatalf("DecodeQuoteFrame(%q) = nil, want an error containing %q", tt.frame, tt.want)
			}
			var fe *FrameError
			if !errors.As(err, &fe) {
				t.Errorf("error %v is not a *FrameError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDecodeQuoteFrameReusesRepeatingFieldsAndReplacesChangingOnes(t *testing.T) {
	var q Quote
	f1 := []byte(frame("", ""))
	if err := DecodeQuoteFrame(f1, &q); err != nil {
		t.Fatal(err)
	}
	account, from, to := unsafe.StringData(q.AccountID), unsafe.StringData(q.FromAsset), unsafe.StringData(q.ToAsset)
	fromQty := q.FromQty
	id := q.QuoteID

	f2 := []byte(strings.NewReplacer(`"q-1"`, `"q-2"`, `"sig"`, `"sig2"`, `81436.0875`, `81437.5`).Replace(string(f1)))
	if err := DecodeQuoteFrame(f2, &q); err != nil {
		t.Fatal(err)
	}
	if unsafe.StringData(q.AccountID) != account || unsafe.StringData(q.FromAsset) != from || unsafe.StringData(q.ToAsset) != to {
		t.Error("repeating strings were re-allocated")
	}
	if q.QuoteID != "q-2" || q.Signature != "sig2" || id != "q-1" {
		t.Errorf("QuoteID = %q, Signature = %q, old id = %q", q.QuoteID, q.Signature, id)
	}
	if !q.ToQty.Equal(decimal.RequireFromString("81437.5")) || !q.FromQty.Equal(fromQty) {
		t.Errorf("ToQty = %s FromQty = %s", q.ToQty, q.FromQty)
	}
	// Strings never alias the frame: overwriting it changes nothing.
	for i := range f2 {
		f2[i] = 'x'
	}
	if q.QuoteID != "q-2" || q.Signature != "sig2" || q.AccountID != "acc" || q.FromAsset != "BTC" {
		t.Errorf("decoded strings changed with the frame: %+v", q)
	}
}

func TestDecodeQuoteFrameAgreesWithEncodingJSON(t *testing.T) {
	// A differential check on the sample: the exact quantities equal what
	// encoding/json's json.Number text gives.
	var ref struct {
		Quote struct {
			QuoteID           string      `json:"quoteId"`
			FromAssetQuantity json.Number `json:"fromAssetQuantity"`
			ToAssetQuantity   json.Number `json:"toAssetQuantity"`
			ExpiryTime        int64       `json:"expiryTime"`
		} `json:"quote"`
	}
	if err := json.Unmarshal([]byte(sampleFrame), &ref); err != nil {
		t.Fatal(err)
	}
	var q Quote
	if err := DecodeQuoteFrame([]byte(sampleFrame), &q); err != nil {
		t.Fatal(err)
	}
	if !q.FromQty.Equal(decimal.RequireFromString(ref.Quote.FromAssetQuantity.String())) ||
		!q.ToQty.Equal(decimal.RequireFromString(ref.Quote.ToAssetQuantity.String())) ||
		q.ExpiryMicros != ref.Quote.ExpiryTime || q.QuoteID != ref.Quote.QuoteID {
		t.Errorf("decoded %+v, encoding/json %+v", q, ref.Quote)
	}
}

func FuzzDecodeQuoteFrame(f *testing.F) {
	f.Add([]byte(sampleFrame))
	f.Add([]byte(frame("quoteId", `"q\u002D1"`)))
	f.Add([]byte(frame("toAssetQuantity", `1.5e-3`)))
	f.Add([]byte(frame("toAssetQuantity", "1"+strings.Repeat("0", 200))))
	f.Add([]byte(frame("fromAssetQuantity", `1e-5000`)))
	f.Add([]byte(`{"quote":{}}`))
	f.Add([]byte(`{"x":[{"y":null}],"quote":{"quoteId":"a"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var q Quote
		err := DecodeQuoteFrame(data, &q)
		if err != nil {
			return
		}
		if q.QuoteID == "" || q.AccountID == "" || q.FromAsset == "" || q.ToAsset == "" || q.Signature == "" {
			t.Fatalf("nil error with an empty required field: %+v", q)
		}
		if len(q.Raw) < 2 || q.Raw[0] != '{' || q.Raw[len(q.Raw)-1] != '}' {
			t.Fatalf("nil error with Raw %q", q.Raw)
		}
		// Whatever decodes is valid JSON and the same quote decodes again from Raw.
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		var again Quote
		if err := DecodeQuoteFrame(append(append([]byte(`{"quote":`), q.Raw...), '}'), &again); err != nil {
			t.Fatalf("Raw does not decode again: %v", err)
		}
		if again.QuoteID != q.QuoteID || !again.FromQty.Equal(q.FromQty) || !again.ToQty.Equal(q.ToQty) || again.ExpiryMicros != q.ExpiryMicros {
			t.Fatalf("Raw decodes differently: %+v vs %+v", again, q)
		}
	})
}

// BenchmarkDecodeQuoteFrame decodes a stream of quotes as the stream does: one
// reused Quote, a new id, signature and price each frame.
func BenchmarkDecodeQuoteFrame(b *testing.B) {
	frames := benchFrames()
	var q Quote
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := DecodeQuoteFrame(frames[i%len(frames)], &q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkQuoteDecoder is BenchmarkDecodeQuoteFrame through the stream's
// QuoteDecoder, which reads frames of the learned layout.
func BenchmarkQuoteDecoder(b *testing.B) {
	frames := benchFrames()
	var q Quote
	var qd QuoteDecoder
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := qd.Decode(frames[i%len(frames)], &q); err != nil {
			b.Fatal(err)
		}
	}
}

func benchFrames() [][]byte {
	frames := make([][]byte, 64)
	for i := range frames {
		f := strings.NewReplacer(
			"a0743434-66c8-49b7-aca2-46c910a54cf1\",\n\"accountId", "a0743434-66c8-49b7-aca2-46c910a54c"+string(rune('a'+i%26))+string(rune('a'+i/26))+"\",\n\"accountId",
			"81436.0875", "81436."+string(rune('0'+i%10))+"875",
			"6932874cf", "6932874c"+string(rune('a'+i%26)),
		).Replace(sampleFrame)
		frames[i] = []byte(f)
	}
	return frames
}

// TestSpecialMaskMatchesTheByteTable: the eight-byte test flags exactly the
// special bytes of a word, for every byte value in every position, next to
// plain, high (UTF-8) and special neighbours, and in random words.
func TestSpecialMaskMatchesTheByteTable(t *testing.T) {
	want := func(w [8]byte) uint64 {
		var m uint64
		for k, x := range w {
			if strSpecial[x] {
				m |= 0x80 << (8 * k)
			}
		}
		return m
	}
	fills := []byte{'a', 0x80, 0xff, '"' + 1, '\\' - 1, 0x20, 0x7f}
	for _, fill := range fills {
		for pos := 0; pos < 8; pos++ {
			for c := 0; c < 256; c++ {
				var w [8]byte
				for k := range w {
					w[k] = fill
				}
				w[pos] = byte(c)
				if got, want := specialMask(binary.LittleEndian.Uint64(w[:])), want(w); got != want {
					t.Fatalf("specialMask(% x) = %x, want %x", w, got, want)
				}
			}
		}
	}
	seed := uint64(3)
	for i := 0; i < 200000; i++ {
		seed = seed*6364136223846793005 + 1442695040888963407
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], seed)
		if got, want := specialMask(seed), want(w); got != want {
			t.Fatalf("specialMask(% x) = %x, want %x", w, got, want)
		}
	}
}
