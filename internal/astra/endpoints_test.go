package astra_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func i64(n int64) *int64 { return &n }

// serveFixtures answers each path with the named testdata file.
func serveFixtures(t *testing.T, files map[string]string) *desk {
	t.Helper()
	bodies := map[string][]byte{}
	for p, f := range files {
		bodies[p] = fixture(t, f)
	}
	var d *desk
	d = newDesk(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d.record(r, body)
		b, ok := bodies[r.URL.Path]
		if !ok {
			http.Error(w, `{"message":"no such route"}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	return d
}

// The reference's transfer sample carries this metadata object; it is kept
// byte for byte.
const sampleTransferMetadata = `{
"type": "withdrawal",
"address": "0x1234567890abcdef1234567890abcdef12345678",
"network": "ethereum",
"withdrawal_id": "550e8400-e29b-41d4-a716-446655440000"
}`

func TestSampleResponsesDecodeToDocumentedValues(t *testing.T) {
	d := serveFixtures(t, map[string]string{
		"/v2/balances/" + testAccount:                    "balances.json",
		"/v2/transfers/" + testAccount:                   "transfers.json",
		"/v2/converts/" + testAccount:                    "converts.json",
		"/v2/transactions/" + testAccount:                "transactions.json",
		"/v2/withdrawal-request/" + testAccount + "/all": "withdrawal_requests.json",
		"/v2/withdrawal-request/" + testAccount:          "create_withdrawal.json",
		"/v2/deposit-address/" + testAccount:             "deposit_address.json",
		"/v2/express-deposit-address":                    "express_deposit_address.json",
		"/v2/otc/accept-quote/" + testAccount:            "accept_quote.json",
	})
	c := newClient(t, d.URL, nil)
	ctx := context.Background()

	tests := []struct {
		name string
		call func() (any, error)
		want any
	}{
		{"balances", func() (any, error) { return c.Balances(ctx) }, []astra.Balance{
			// Sorted by symbol: the null symbol first, then BTC, USD.
			{InstrumentID: "456e7890-e89b-12d3-a456-426614174001", Symbol: "", Amount: dec("5.67"), Network: "ethereum", Address: "0x1f9840a85d5aF5bf1D1762F925BDADdC4201F984"},
			{InstrumentID: "123e4567-e89b-12d3-a456-426614174000", Symbol: "BTC", Amount: dec("1.21")},
			{InstrumentID: "789e0123-e89b-12d3-a456-426614174002", Symbol: "USD", Amount: dec("10.11")},
		}},
		{"transfers", func() (any, error) { return collect(ctx, c.Transfers) }, []astra.Transfer{
			{ID: "226", CreatedAt: ts("2024-01-15T10:30:00Z"), Symbol: "BTC", Amount: dec("0.001"), TransferType: "deposit", UpdatedAt: ts("2024-01-15T10:30:00Z")},
			{ID: "225", CreatedAt: ts("2024-01-14T15:20:00Z"), Symbol: "ETH", Amount: dec("1.5"), TransferType: "withdrawal",
				Metadata: json.RawMessage(sampleTransferMetadata), WithdrawalID: "550e8400-e29b-41d4-a716-446655440000", UpdatedAt: ts("2024-01-14T15:20:00Z")},
		}},
		{"converts", func() (any, error) { return collect(ctx, c.Converts) }, []astra.Convert{{
			DisplayID: "550e8400-e29b-41d4-a716-446655440000", ID: 123,
			TakerAccountID: "550e8400-e29b-41d4-a716-446655440000", MakerAccountID: "550e8400-e29b-41d4-a716-446655440001",
			BuyInstrumentID: "550e8400-e29b-41d4-a716-446655440002", BuyQuantity: dec("1.5"), BuyTxnID: i64(456),
			SellInstrumentID: "550e8400-e29b-41d4-a716-446655440003", SellQuantity: dec("0.001"), SellTxnID: i64(457),
			Category: "otc", Notes: "", CreatedAt: ts("2024-01-15T10:30:00Z"), UpdatedAt: ts("2024-01-15T10:30:00Z"),
			BuySymbol: "ETH", SellSymbol: "BTC",
		}}},
		{"transactions", func() (any, error) { return collect(ctx, c.Transactions) }, []astra.Transaction{
			{DisplayID: "550e8400-e29b-41d4-a716-446655440000", InstrumentID: "550e8400-e29b-41d4-a716-446655440001", Symbol: "BTC",
				Amount: dec("0.001"), DebitFrom: "550e8400-e29b-41d4-a716-446655440002", CreditTo: "550e8400-e29b-41d4-a716-446655440000",
				Notes: "Deposit", CreatedAt: ts("2024-01-15T10:30:00Z"), IdemKey: "deposit_123", Type: "deposit", TradeDisplayID: ""},
			{DisplayID: "550e8400-e29b-41d4-a716-446655440003", InstrumentID: "550e8400-e29b-41d4-a716-446655440004", Symbol: "ETH",
				Amount: dec("1.5"), DebitFrom: "550e8400-e29b-41d4-a716-446655440000", CreditTo: "550e8400-e29b-41d4-a716-446655440005",
				Notes: "OTC Trade", CreatedAt: ts("2024-01-14T15:20:00Z"), IdemKey: "trade_456", Type: "trade", TradeDisplayID: "550e8400-e29b-41d4-a716-446655440006"},
		}},
		{"withdrawal requests", func() (any, error) { return collect(ctx, c.WithdrawalRequests) }, []astra.WithdrawalRequest{
			{ID: "550e8400-e29b-41d4-a716-446655440000", CreatedAt: ts("2024-01-15T10:30:00Z"), Symbol: "BTC", Amount: dec("0.5"),
				TransferType: "withdrawal", Status: astra.StatusCompleted, UpdatedAt: ts("2024-01-15T10:35:00Z"), Network: "bitcoin",
				Address: "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", NetworkTxID: "0x1234567890abcdef1234567890abcdef12345678"},
			{ID: "550e8400-e29b-41d4-a716-446655440001", CreatedAt: ts("2024-01-14T15:20:00Z"), Symbol: "ETH", Amount: dec("2.0"),
				TransferType: "withdrawal", Status: astra.StatusProcessing, UpdatedAt: ts("2024-01-14T15:25:00Z"), Network: "ethereum",
				Address: "0x742d35Cc6634C0532925a3b8D4C9db96C4b4d8b6"},
		}},
		{"create withdrawal", func() (any, error) {
			return c.CreateWithdrawal(ctx, astra.NewWithdrawal{InstrumentSymbol: "BTC", Amount: dec("0.001"), Network: "bitcoin", Address: "bc1qexample1234567890abcdef1234567890"})
		}, "550e8400-e29b-41d4-a716-446655440000"},
		{"deposit address", func() (any, error) { return c.DepositAddress(ctx, "bitcoin") }, "bc1qexample1234567890abcdef1234567890"},
		{"express deposit address", func() (any, error) { return c.ExpressDepositAddress(ctx, "BTC", "bitcoin") }, "bc1qexample1234567890abcdef1234567890"},
		{"accept quote", func() (any, error) { return nil, c.AcceptQuote(ctx, sampleQuote(t)) }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.call()
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decoded\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// sampleQuote is the reference's quote object, exactly as the stream frame
// carries it (the bytes between `"quote": ` and the frame's last brace).
func sampleQuote(t *testing.T) []byte {
	t.Helper()
	frame := string(fixture(t, "quote_frame.json"))
	start := strings.Index(frame, `"quote": `) + len(`"quote": `)
	end := strings.LastIndex(frame, "}")
	return []byte(frame[start:end])
}

func TestRequestsUseDocumentedRoutesAndHeaders(t *testing.T) {
	d := serveFixtures(t, nil) // every route 404s; only the requests matter
	c := newClient(t, d.URL, nil)
	ctx := context.Background()
	tests := []struct {
		name, method, path, query string
		call                      func() error
	}{
		{"balances", "GET", "/v2/balances/acct-42", "", func() error { _, err := c.Balances(ctx); return err }},
		{"transfers", "GET", "/v2/transfers/acct-42", "", func() error { return c.Transfers(ctx, func(astra.Transfer) error { return nil }) }},
		{"converts", "GET", "/v2/converts/acct-42", "", func() error { return c.Converts(ctx, func(astra.Convert) error { return nil }) }},
		{"transactions", "GET", "/v2/transactions/acct-42", "", func() error { return c.Transactions(ctx, func(astra.Transaction) error { return nil }) }},
		{"withdrawal requests", "GET", "/v2/withdrawal-request/acct-42/all", "", func() error {
			return c.WithdrawalRequests(ctx, func(astra.WithdrawalRequest) error { return nil })
		}},
		{"create withdrawal", "POST", "/v2/withdrawal-request/acct-42", "", func() error {
			_, err := c.CreateWithdrawal(ctx, astra.NewWithdrawal{InstrumentSymbol: "BTC", Amount: dec("0.00100"), Network: "bitcoin", Address: "bc1qx"})
			return err
		}},
		{"deposit address", "GET", "/v2/deposit-address/acct-42", "network=bitcoin", func() error { _, err := c.DepositAddress(ctx, "bitcoin"); return err }},
		{"express deposit address", "GET", "/v2/express-deposit-address", "coin=BTC&network=bitcoin", func() error {
			_, err := c.ExpressDepositAddress(ctx, "BTC", "bitcoin")
			return err
		}},
		{"accept quote", "POST", "/v2/otc/accept-quote/acct-42", "", func() error { return c.AcceptQuote(ctx, []byte(`{"quoteId":"q"}`)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(d.requests())
			var apiErr *astra.APIError
			if err := tt.call(); !errors.As(err, &apiErr) || apiErr.Status != 404 {
				t.Fatalf("want the fake's 404, got %v", err)
			}
			reqs := d.requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1 (a 404 is not retried)", len(reqs))
			}
			r := reqs[0]
			if r.method != tt.method || r.path != tt.path || r.query != tt.query {
				t.Errorf("sent %s %s?%s, want %s %s?%s", r.method, r.path, r.query, tt.method, tt.path, tt.query)
			}
			for h, want := range map[string]string{astra.APIKeyHeader: testKey, "Accept": "application/json", "Content-Type": "application/json"} {
				if got := r.header.Get(h); got != want {
					t.Errorf("header %s = %q, want %q", h, got, want)
				}
			}
		})
	}
	t.Run("withdrawal body", func(t *testing.T) {
		var body []byte
		for _, r := range d.requests() {
			if r.method == "POST" && strings.HasPrefix(r.path, "/v2/withdrawal-request/") {
				body = r.body
			}
		}
		want := `{"instrumentSymbol":"BTC","amount":"0.001","network":"bitcoin","address":"bc1qx"}`
		if string(body) != want {
			t.Errorf("body %s, want %s", body, want)
		}
	})
}

// listDesk answers every request with body.
func listDesk(t *testing.T, body string) *desk {
	t.Helper()
	return newDesk(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	})
}

func TestBalancesSortAndReadNumbersExactly(t *testing.T) {
	d := listDesk(t, `{
	 "i3": {"instrumentId": "i3", "symbol": "BTC", "amount": 8.1436e4, "network": null, "address": null},
	 "i2": {"instrumentId": "i2", "symbol": "BTC", "amount": "1.250"},
	 "i1": {"symbol": "ETH", "amount": "0.000000000000000001"}
	}`)
	got, err := newClient(t, d.URL, nil).Balances(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ id, amount string }{{"i2", "1.25"}, {"i3", "81436"}, {"i1", "0.000000000000000001"}}
	if len(got) != len(want) {
		t.Fatalf("got %d balances, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].InstrumentID != w.id || !got[i].Amount.Equal(dec(w.amount)) {
			t.Errorf("balance %d = %s %s, want %s %s", i, got[i].InstrumentID, got[i].Amount, w.id, w.amount)
		}
	}
}

func TestBalanceWhoseIDDiffersFromItsKeyIsAnError(t *testing.T) {
	d := listDesk(t, `{"i1": {"instrumentId": "i9", "symbol": "BTC", "amount": "1"}}`)
	_, err := newClient(t, d.URL, nil).Balances(context.Background())
	if err == nil || !strings.Contains(err.Error(), `"i9"`) || !strings.Contains(err.Error(), `"i1"`) {
		t.Fatalf("want an error naming both ids, got %v", err)
	}
}

func TestTimestampsAcceptFractionalSecondsAndOffsets(t *testing.T) {
	d := listDesk(t, `[
	 {"displayId":"a","amount":"1","createdAt":"2024-01-15T10:30:00.123456Z"},
	 {"displayId":"b","amount":"1","createdAt":"2024-01-15T12:30:00+02:00"},
	 {"displayId":"c","amount":"1","createdAt":"2024-01-15T12:30:00+0200"},
	 {"displayId":"d","amount":"1","createdAt":"2024-01-15 10:30:00.5+00:00"},
	 {"displayId":"e","amount":"1","createdAt":"2024-01-15T10:30:00"}]`)
	got, err := collect(context.Background(), newClient(t, d.URL, nil).Transactions)
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Time{
		time.Date(2024, 1, 15, 10, 30, 0, 123456000, time.UTC), // fractional seconds
		time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC),         // offset
		time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC),         // offset without a colon
		time.Date(2024, 1, 15, 10, 30, 0, 500000000, time.UTC), // space for T
		time.Date(2024, 1, 15, 10, 30, 0, 0, time.UTC),         // no zone: UTC
	}
	for i, w := range want {
		if !got[i].CreatedAt.Equal(w) {
			t.Errorf("%s: %v, want %v", got[i].DisplayID, got[i].CreatedAt, w)
		}
	}
}

func TestBadFieldFailsItsRecordAfterEarlierRecordsDelivered(t *testing.T) {
	good := `{"displayId":"t0","amount":"1.5","createdAt":"2024-01-15T10:30:00Z"},{"displayId":"t1","amount":"-2","createdAt":"2024-01-15T10:30:00Z"}`
	tests := []struct {
		name, record string
		wantIn       []string
	}{
		{"amount with a comma", `{"displayId":"t2","amount":"12,5","createdAt":"2024-01-15T10:30:00Z"}`, []string{"index 2", `"t2"`, `amount "12,5" is not a decimal`}},
		{"empty amount", `{"displayId":"t2","amount":"","createdAt":"2024-01-15T10:30:00Z"}`, []string{"index 2", `"t2"`, `amount "" is not a decimal`}},
		{"null amount", `{"displayId":"t2","amount":null,"createdAt":"2024-01-15T10:30:00Z"}`, []string{"index 2", `"t2"`, "amount is missing"}},
		{"absent amount", `{"displayId":"t2","createdAt":"2024-01-15T10:30:00Z"}`, []string{"index 2", `"t2"`, "amount is missing"}},
		{"object amount", `{"displayId":"t2","amount":{"v":1},"createdAt":"2024-01-15T10:30:00Z"}`, []string{"index 2", `"t2"`, `amount {"v":1} is not a decimal`}},
		{"NaN amount", `{"displayId":"t2","amount":"NaN","createdAt":"2024-01-15T10:30:00Z"}`, []string{"index 2", `"t2"`, `amount "NaN"`}},
		{"amount text over the bound", `{"displayId":"t2","amount":"1` + strings.Repeat("0", 100) + `","createdAt":"2024-01-15T10:30:00Z"}`, []string{"index 2", `"t2"`, "amount", "101 characters long; a decimal has at most 100"}},
		{"amount number over the bound", `{"displayId":"t2","amount":1` + strings.Repeat("0", 200000) + `,"createdAt":"2024-01-15T10:30:00Z"}`, []string{"index 2", `"t2"`, "amount", "200001 characters long"}},
		{"amount exponent far too small", `{"displayId":"t2","amount":"1e-5000","createdAt":"2024-01-15T10:30:00Z"}`, []string{"index 2", `"t2"`, `amount "1e-5000" is out of range`}},
		{"amount exponent far too large", `{"displayId":"t2","amount":1e5000,"createdAt":"2024-01-15T10:30:00Z"}`, []string{"index 2", `"t2"`, "amount 1e5000 is out of range"}},
		{"amount with too many decimals", `{"displayId":"t2","amount":"0.` + strings.Repeat("0", 70) + `1","createdAt":"2024-01-15T10:30:00Z"}`, []string{"index 2", `"t2"`, "out of range"}},
		{"bad timestamp", `{"displayId":"t2","amount":"1","createdAt":"15/01/2024"}`, []string{"index 2", `"t2"`, `createdAt "15/01/2024"`}},
		{"symbol of the wrong kind", `{"displayId":"t2","amount":"1","symbol":7,"createdAt":"2024-01-15T10:30:00Z"}`, []string{"index 2", `"t2"`, "symbol"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := listDesk(t, "["+good+","+tt.record+`,{"displayId":"t3","amount":"1","createdAt":"2024-01-15T10:30:00Z"}]`)
			got, err := collect(context.Background(), newClient(t, d.URL, nil).Transactions)
			if err == nil {
				t.Fatal("no error")
			}
			for _, s := range append(tt.wantIn, "/transactions/{account_id}") {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if len(got) != 2 || got[0].DisplayID != "t0" || !got[1].Amount.Equal(dec("-2")) {
				t.Errorf("delivered %+v, want t0 and t1 only", got)
			}
			if n := d.hits.Load(); n != 1 {
				t.Errorf("%d requests, want 1: a bad record is not retried", n)
			}
		})
	}
}

func TestRequiredFieldsOfEachListAreChecked(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name, body, wantIn string
		run                func(*astra.Client) error
	}{
		{"transfer amount", `[{"id":"7","createdAt":"2024-01-15T10:30:00Z","amount":"x"}]`, `(id "7"): amount "x"`,
			func(c *astra.Client) error { _, err := collect(ctx, c.Transfers); return err }},
		{"transfer id", `[{"createdAt":"2024-01-15T10:30:00Z","amount":"1"}]`, "id is missing",
			func(c *astra.Client) error { _, err := collect(ctx, c.Transfers); return err }},
		{"convert sell quantity", `[{"displayId":"c1","id":1,"buyQuantity":"1","sellQuantity":"1..0","createdAt":"2024-01-15T10:30:00Z"}]`,
			`(id "c1"): sellQuantity "1..0"`, func(c *astra.Client) error { _, err := collect(ctx, c.Converts); return err }},
		{"convert txn id", `[{"displayId":"c1","id":1,"buyQuantity":"1","sellQuantity":"1","buyTxnId":"x","createdAt":"2024-01-15T10:30:00Z"}]`,
			`buyTxnId "x" is not an integer`, func(c *astra.Client) error { _, err := collect(ctx, c.Converts); return err }},
		{"withdrawal amount", `[{"id":"w1","status":"pending","amount":"1e","createdAt":"2024-01-15T10:30:00Z"}]`, `(id "w1"): amount "1e"`,
			func(c *astra.Client) error { _, err := collect(ctx, c.WithdrawalRequests); return err }},
		{"withdrawal status", `[{"id":"w1","amount":"1","createdAt":"2024-01-15T10:30:00Z"}]`, "status is missing",
			func(c *astra.Client) error { _, err := collect(ctx, c.WithdrawalRequests); return err }},
		{"balance amount", `{"i1":{"instrumentId":"i1","amount":"1 BTC"}}`, `(id "i1"): amount "1 BTC"`,
			func(c *astra.Client) error { _, err := c.Balances(ctx); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.run(newClient(t, listDesk(t, tt.body).URL, nil))
			if err == nil || !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("error %v, want it to contain %q", err, tt.wantIn)
			}
		})
	}
}

func TestAmountsSentAsJSONNumbersAreReadFromTheirText(t *testing.T) {
	// 0.1+0.2 style values that float64 would round; decoded from the literal they stay exact.
	d := listDesk(t, `[{"displayId":"a","amount":0.30000000000000000001,"createdAt":"2024-01-15T10:30:00Z"},
	 {"displayId":"b","amount":8.1436e4,"createdAt":"2024-01-15T10:30:00Z"},
	 {"displayId":"c","amount":"1.250","createdAt":"2024-01-15T10:30:00Z"}]`)
	got, err := collect(context.Background(), newClient(t, d.URL, nil).Transactions)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"0.30000000000000000001", "81436", "1.25"} {
		if !got[i].Amount.Equal(dec(want)) {
			t.Errorf("record %d amount %s, want %s", i, got[i].Amount, want)
		}
	}
}

func TestFnErrorStopsTheStreamAndIsReturned(t *testing.T) {
	var b strings.Builder
	b.WriteString("[")
	for i := range 100 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"displayId":"t%d","amount":"1","createdAt":"2024-01-15T10:30:00Z"}`, i)
	}
	b.WriteString("]")
	d := listDesk(t, b.String())
	stop := errors.New("enough")
	calls := 0
	err := newClient(t, d.URL, nil).Transactions(context.Background(), func(astra.Transaction) error {
		calls++
		if calls == 3 {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatalf("got %v, want fn's own error unchanged", err)
	}
	if calls != 3 || d.hits.Load() != 1 {
		t.Errorf("calls %d, requests %d; want 3 and 1", calls, d.hits.Load())
	}
}

func TestUnreadableResponsesNameTheEndpoint(t *testing.T) {
	tests := []struct {
		name, body string
		wantIn     string
		wantHits   int64 // 1: not retried; 3 (MaxAttempts): retried as a transient failure
	}{
		{"html", "<html>bad gateway</html>", "not a JSON array (starts with '<', not JSON)", 1},
		{"bad literal", `[{"displayId":"a","amount":"1","createdAt":"2024-01-15T10:30:00Z","x":tru}]`, "invalid JSON at byte", 1},
		{"control character in a string", "[{\"displayId\":\"a\nb\"}]", "control character", 1},
		{"bad escape", `[{"displayId":"a\qb"}]`, "invalid escape", 1},
		{"number with a leading zero", `[{"displayId":"a","amount":01}]`, "invalid JSON", 1},
		{"object instead of list", `{"data": []}`, "not a JSON array", 1},
		{"null", `null`, "not a JSON array", 1},
		{"numbers instead of records", `[1, 2]`, "record at index 0: record is a number, not a JSON object", 1},
		{"null record", `[null]`, "record at index 0", 1},
		{"string record", `["x"]`, "record is a string", 1},
		{"missing comma", `[{"displayId":"a","amount":"1","createdAt":"2024-01-15T10:30:00Z"} {}]`, "record at index 1", 1},
		{"trailing data", `[] []`, "data after the end", 1},
		{"empty body", ``, "truncated", 3},
		{"cut inside the first record", `[{"displayId":"a","amo`, "truncated", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := listDesk(t, tt.body)
			err := newClient(t, d.URL, nil).Transactions(context.Background(), func(astra.Transaction) error { return nil })
			if err == nil || !strings.Contains(err.Error(), "/transactions/{account_id}") || !strings.Contains(err.Error(), tt.wantIn) {
				t.Fatalf("error %v, want it to name the endpoint and contain %q", err, tt.wantIn)
			}
			if got := d.hits.Load(); got != tt.wantHits {
				t.Errorf("%d requests, want %d", got, tt.wantHits)
			}
		})
	}
}

func TestUnreadableAddressAnswersAreErrors(t *testing.T) {
	for _, body := range []string{`{"address": null}`, `{"address": ""}`, `"bc1q"`, `{"address": 5}`} {
		t.Run(body, func(t *testing.T) {
			_, err := newClient(t, listDesk(t, body).URL, nil).DepositAddress(context.Background(), "bitcoin")
			if err == nil || !strings.Contains(err.Error(), "/deposit-address/{account_id}") {
				t.Fatalf("error %v, want one naming the endpoint", err)
			}
		})
	}
}

func TestOversizedRecordIsRejected(t *testing.T) {
	huge := strings.Repeat("x", 2<<20)
	d := listDesk(t, `[{"displayId":"a","amount":"1","createdAt":"2024-01-15T10:30:00Z","notes":"`+huge+`"}]`)
	err := newClient(t, d.URL, nil).Transactions(context.Background(), func(astra.Transaction) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "exceeds size bound") {
		t.Fatalf("error %v, want the size bound", err)
	}
	if d.hits.Load() != 1 {
		t.Errorf("an oversized record was retried")
	}
}
