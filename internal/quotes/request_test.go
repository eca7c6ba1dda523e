package quotes

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
)

const testAccount = "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"

var d = decimal.RequireFromString

func TestRequestForMapsSideAndSizeToStreamSides(t *testing.T) {
	tests := []struct {
		name             string
		side             string
		size, notional   string
		from, to         string
		fromQty, toQty   string
		baseQty, quoteQt string // BaseQty/QuoteQty of a quote with FromQty=7, ToQty=3
	}{
		{"sell by size: buys quote, sells a fixed base", config.SideSell, "0.5", "", "USD", "BTC", "0", "0.5", "3", "7"},
		{"sell by notional: receives a fixed quote amount", config.SideSell, "", "25000", "USD", "BTC", "25000", "0", "3", "7"},
		{"buy by size: receives a fixed base amount", config.SideBuy, "0.5", "", "BTC", "USD", "0.5", "0", "7", "3"},
		{"buy by notional: pays a fixed quote amount", config.SideBuy, "", "25000", "BTC", "USD", "0", "25000", "7", "3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := config.Program{Name: "p", Base: "BTC", Quote: "USD", Side: tt.side}
			if tt.size != "" {
				p.Size = d(tt.size)
			}
			if tt.notional != "" {
				p.Notional = d(tt.notional)
			}
			r := RequestFor(testAccount, p)
			if r.Program != "p" || r.AccountID != testAccount || r.Base != "BTC" || r.Quote != "USD" || r.Side != tt.side {
				t.Errorf("request = %+v", r)
			}
			if r.Stream.From != tt.from || r.Stream.To != tt.to {
				t.Errorf("from/to = %s/%s, want %s/%s", r.Stream.From, r.Stream.To, tt.from, tt.to)
			}
			if !r.Stream.FromQty.Equal(d(tt.fromQty)) || !r.Stream.ToQty.Equal(d(tt.toQty)) {
				t.Errorf("fromQty/toQty = %s/%s, want %s/%s", r.Stream.FromQty, r.Stream.ToQty, tt.fromQty, tt.toQty)
			}
			if r.Stream.FromQty.IsZero() == r.Stream.ToQty.IsZero() {
				t.Error("exactly one of FromQty and ToQty must be set")
			}
			q := &astra.Quote{FromQty: d("7"), ToQty: d("3")}
			if !r.BaseQty(q).Equal(d(tt.baseQty)) || !r.QuoteQty(q).Equal(d(tt.quoteQt)) {
				t.Errorf("BaseQty/QuoteQty = %s/%s, want %s/%s", r.BaseQty(q), r.QuoteQty(q), tt.baseQty, tt.quoteQt)
			}
		})
	}
}

var testNow = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// sellRequest sells 0.5 BTC per quote: From=USD, To=BTC, ToQty=0.5.
func sellRequest() Request {
	return RequestFor(testAccount, config.Program{Name: "sell-btc", Base: "BTC", Quote: "USD",
		Side: config.SideSell, Size: d("0.5"), LimitPrice: d("60000")})
}

func goodQuote() astra.Quote {
	return astra.Quote{QuoteID: "q1", AccountID: testAccount, FromAsset: "USD", ToAsset: "BTC",
		FromQty: d("32500.12"), ToQty: d("0.5"), ExpiryMicros: testNow.Add(time.Second).UnixMicro(), Signature: "sig"}
}

func TestValidateNamesEachMismatch(t *testing.T) {
	tests := []struct {
		name   string
		modify func(q *astra.Quote)
		want   error
	}{
		{"matching quote", func(*astra.Quote) {}, nil},
		{"fixed quantity with another scale still equal", func(q *astra.Quote) { q.ToQty = d("0.500") }, nil},
		{"other account", func(q *astra.Quote) { q.AccountID = "someone-else" }, ErrWrongAccount},
		{"from asset differs", func(q *astra.Quote) { q.FromAsset = "EUR" }, ErrWrongAssets},
		{"to asset differs", func(q *astra.Quote) { q.ToAsset = "ETH" }, ErrWrongAssets},
		{"assets swapped", func(q *astra.Quote) { q.FromAsset, q.ToAsset = "BTC", "USD" }, ErrWrongAssets},
		{"fixed quantity differs", func(q *astra.Quote) { q.ToQty = d("0.50000001") }, ErrWrongQuantity},
		{"fixed quantity on the wrong side", func(q *astra.Quote) { q.FromQty, q.ToQty = d("0.5"), d("32500") }, ErrWrongQuantity},
		{"other quantity zero", func(q *astra.Quote) { q.FromQty = decimal.Zero }, ErrNonPositive},
		{"other quantity negative", func(q *astra.Quote) { q.FromQty = d("-1") }, ErrNonPositive},
		{"expired", func(q *astra.Quote) { q.ExpiryMicros = testNow.Add(-time.Microsecond).UnixMicro() }, ErrExpired},
		{"expires exactly now", func(q *astra.Quote) { q.ExpiryMicros = testNow.UnixMicro() }, ErrExpired},
		{"no signature", func(q *astra.Quote) { q.Signature = "" }, ErrNoSignature},
		{"no id", func(q *astra.Quote) { q.QuoteID = "" }, ErrNoID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sellRequest()
			q := goodQuote()
			tt.modify(&q)
			if err := Validate(&r, &q, testNow); !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Validate = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestValidateChecksTheFromSideWhenItIsFixed(t *testing.T) {
	r := RequestFor(testAccount, config.Program{Name: "buy", Base: "BTC", Quote: "USD", Side: config.SideBuy, Size: d("2")})
	q := astra.Quote{QuoteID: "q", AccountID: testAccount, FromAsset: "BTC", ToAsset: "USD", FromQty: d("2"),
		ToQty: d("130000"), ExpiryMicros: testNow.Add(time.Second).UnixMicro(), Signature: "s"}
	if err := Validate(&r, &q, testNow); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	q.FromQty = d("2.1")
	if err := Validate(&r, &q, testNow); !errors.Is(err, ErrWrongQuantity) {
		t.Fatalf("Validate = %v, want ErrWrongQuantity", err)
	}
}

func TestValidateDoesNotAllocate(t *testing.T) {
	r := sellRequest()
	good, bad := goodQuote(), goodQuote()
	bad.FromAsset = "EUR"
	allocs := testing.AllocsPerRun(100, func() {
		if Validate(&r, &good, testNow) != nil || Validate(&r, &bad, testNow) == nil {
			panic("unexpected result")
		}
	})
	if allocs != 0 {
		t.Errorf("Validate allocates %v times per call, want 0", allocs)
	}
}

// BenchmarkDecodeValidate is the stream's per-frame work before the strategy:
// decode the frame into the stream's reused Quote, then validate it.
func BenchmarkDecodeValidate(b *testing.B) {
	r := sellRequest()
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = fmt.Appendf(nil, `{"quote":{"quoteId":"6f1c2a3b-9d8e-4f70-8a1b-2c3d4e5f%04d","accountId":"%s",`+
			`"fromAsset":"USD","toAsset":"BTC","fromAssetQuantity":%d.%02d,"toAssetQuantity":0.5,`+
			`"expiryTime":%d,"signature":"6932874cf486617239c7d27100e911903ccbee05c8b07fe3f4299e047f46%04d"}}`,
			i, testAccount, 32000+i, i, testNow.Add(5*time.Second).UnixMicro(), i)
	}
	var q astra.Quote
	var qd astra.QuoteDecoder
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := qd.Decode(frames[i%len(frames)], &q); err != nil {
			b.Fatal(err)
		}
		if err := Validate(&r, &q, testNow); err != nil {
			b.Fatal(err)
		}
	}
}
