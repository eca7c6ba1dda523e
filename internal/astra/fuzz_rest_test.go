package astra_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
)

// The REST fuzz targets serve a fuzzed body as a 200 answer from a loopback
// desk and call the real client method. Beyond "no panic", each checks the
// SPEC 2 promise against an independent reading of the same body with
// encoding/json: every record handed to the caller carries exactly the
// amount the wire held, and a record whose amount is not a decimal fails the
// call instead of arriving as a zero.

const (
	fzKey     = "SECRET-fuzz-key-8d2c71"
	fzAccount = "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"
)

// fzDesk answers every request with 200 and the current body.
type fzDesk struct {
	body atomic.Pointer[[]byte]
}

func (d *fzDesk) serve(b []byte) { d.body.Store(&b) }

// fzStart starts one desk per fuzz target (not per input) and a client that
// never retries, so a garbage 200 costs one request.
func fzStart(f *testing.F) (*fzDesk, *astra.Client) {
	f.Helper()
	d := &fzDesk{}
	d.serve(nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(*d.body.Load())
	}))
	f.Cleanup(srv.Close)
	c, err := astra.New(astra.Options{
		BaseURL:     srv.URL + "/v2",
		WSURL:       "ws://x",
		APIKey:      fzKey,
		AccountID:   fzAccount,
		Timeout:     2 * time.Second,
		MaxAttempts: 1,
	})
	if err != nil {
		f.Fatal(err)
	}
	return d, c
}

// fzSeed adds the reference sample from testdata and variants of it.
func fzSeed(f *testing.F, name string, extra ...string) {
	f.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	for _, e := range extra {
		f.Add([]byte(e))
	}
}

// fzDecimal reads an amount's wire text the way SPEC 2 defines it: a
// decimal string, or a JSON number taken from its literal. ok is false for
// anything else (absent, null, garbage, objects).
func fzDecimal(raw json.RawMessage) (decimal.Decimal, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return decimal.Decimal{}, false
	}
	text := string(raw)
	switch {
	case raw[0] == '"':
		if json.Unmarshal(raw, &text) != nil {
			return decimal.Decimal{}, false
		}
	case raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9'):
	default:
		return decimal.Decimal{}, false
	}
	// The client's bounds (wire.go): at most 100 characters, an exponent
	// within ±64; beyond them an amount must be refused, not delivered.
	if len(text) > 100 {
		return decimal.Decimal{}, false
	}
	d, err := decimal.NewFromString(text)
	if err == nil && (d.Exponent() < -64 || d.Exponent() > 64) {
		return decimal.Decimal{}, false
	}
	return d, err == nil
}

// fzOracle reads a list body independently: per record, its amount fields'
// raw text, up to the first record encoding/json cannot read. complete is
// true when the whole body is one well-formed array and nothing follows it.
func fzOracle[R any](body []byte, amounts func(*R) []json.RawMessage) (recs [][]json.RawMessage, complete bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return nil, false
	}
	for dec.More() {
		var r R
		if err := dec.Decode(&r); err != nil {
			return recs, false
		}
		recs = append(recs, amounts(&r))
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		return recs, false
	}
	_, err := dec.Token()
	return recs, err == io.EOF
}

// fzCheckList asserts the amount contract of one streamed list call:
// got[i] are the amounts of the i-th delivered record.
func fzCheckList(t *testing.T, body []byte, got [][]decimal.Decimal, err error, want [][]json.RawMessage, complete bool) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), fzKey) {
		t.Fatalf("error carries the API key: %v", err)
	}
	if len(got) > len(want) {
		t.Fatalf("%d records delivered, but encoding/json reads only %d from %q", len(got), len(want), body)
	}
	for i, rec := range want {
		for j, raw := range rec {
			w, ok := fzDecimal(raw)
			if i >= len(got) {
				if !ok && err == nil {
					t.Fatalf("record %d has amount %s, not a decimal, yet the call succeeded", i, raw)
				}
				continue
			}
			if !ok {
				t.Fatalf("record %d delivered with amount %s, but the wire amount %s is not a decimal (silent zero?)", i, got[i][j], raw)
			}
			a := got[i][j]
			if !a.Equal(w) {
				t.Fatalf("record %d amount %d = %s, wire says %s", i, j, a, raw)
			}
			if back, perr := decimal.NewFromString(a.String()); perr != nil || !back.Equal(a) {
				t.Fatalf("record %d amount %s does not survive its own text: %v", i, a, perr)
			}
		}
	}
	if err == nil {
		if !complete {
			t.Fatalf("call succeeded on a body encoding/json cannot read whole: %q", body)
		}
		if len(got) != len(want) {
			t.Fatalf("call succeeded with %d of %d records delivered", len(got), len(want))
		}
	}
}

func fzCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

type fzAmount struct {
	Amount json.RawMessage `json:"amount"`
}

func fzAmountOf(r *fzAmount) []json.RawMessage { return []json.RawMessage{r.Amount} }

// badAmountList is a seed whose second record's amount is garbage.
const badAmountList = `[{"id":"1","displayId":"d1","amount":"1.5","status":"sent","createdAt":"2024-01-15T10:30:00Z"},
{"id":"2","displayId":"d2","amount":"1,5","status":"sent","createdAt":"2024-01-15T10:30:00Z"}]`

func FuzzBalances(f *testing.F) {
	fzSeed(f, "balances.json",
		`{}`, `{"a":{"amount":"1"}}`, `{"a":{"instrumentId":"a","amount":12.50}}`, `{"a":{"amount":"x"}}`,
		`{"a":{"amount":null}}`, `{"a":{"instrumentId":"b","amount":"1"}}`, `{"a":{"amount":"1"},"a":{"amount":"2"}}`, `[]`, `{"a":1}`)
	d, c := fzStart(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d.serve(body)
		bals, err := c.Balances(fzCtx(t))
		if err != nil {
			if strings.Contains(err.Error(), fzKey) {
				t.Fatalf("error carries the API key: %v", err)
			}
			if bals != nil {
				t.Fatalf("Balances returned %d balances with error %v", len(bals), err)
			}
		}
		// The independent reading: an object of key -> record.
		type entry struct {
			key    string
			amount json.RawMessage
			used   bool
		}
		var want []*entry
		complete := false
		func() {
			dec := json.NewDecoder(bytes.NewReader(body))
			if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
				return
			}
			for dec.More() {
				tok, err := dec.Token()
				if err != nil {
					return
				}
				key, _ := tok.(string)
				var r fzAmount
				if err := dec.Decode(&r); err != nil {
					return
				}
				want = append(want, &entry{key: key, amount: r.Amount})
			}
			if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
				return
			}
			_, err := dec.Token()
			complete = err == io.EOF
		}()
		if err != nil {
			return
		}
		if !complete {
			t.Fatalf("Balances succeeded on a body encoding/json cannot read whole: %q", body)
		}
		if len(bals) != len(want) {
			t.Fatalf("%d balances returned, the body holds %d", len(bals), len(want))
		}
		for _, e := range want {
			if _, ok := fzDecimal(e.amount); !ok {
				t.Fatalf("balance %q has amount %s, not a decimal, yet Balances succeeded", e.key, e.amount)
			}
		}
		for _, b := range bals {
			if back, perr := decimal.NewFromString(b.Amount.String()); perr != nil || !back.Equal(b.Amount) {
				t.Fatalf("balance %q amount %s does not survive its own text", b.InstrumentID, b.Amount)
			}
			found := false
			for _, e := range want {
				if w, _ := fzDecimal(e.amount); !e.used && e.key == b.InstrumentID && w.Equal(b.Amount) {
					e.used, found = true, true
					break
				}
			}
			if !found {
				t.Fatalf("balance %+v matches no entry of the body %q", b, body)
			}
		}
	})
}

// fzList runs one streamed list call and returns each delivered record's
// amounts.
func fzList[T any](ctx context.Context, list func(context.Context, func(T) error) error, amounts func(T) []decimal.Decimal) ([][]decimal.Decimal, error) {
	var got [][]decimal.Decimal
	err := list(ctx, func(v T) error {
		got = append(got, amounts(v))
		return nil
	})
	return got, err
}

func FuzzTransfers(f *testing.F) {
	fzSeed(f, "transfers.json", `[]`, badAmountList,
		`[{"id":7,"amount":0.1e2,"createdAt":"2024-01-15T10:30:00.123+02:00","metadata":{"withdrawal_id":9}}]`,
		`[{"id":"1","amount":"1","createdAt":"2024-01-15T10:30:00Z","metadata":"x"}]`)
	d, c := fzStart(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d.serve(body)
		got, err := fzList(fzCtx(t), c.Transfers, func(v astra.Transfer) []decimal.Decimal {
			if v.ID == "" || v.CreatedAt.IsZero() {
				t.Errorf("transfer delivered without id or createdAt: %+v", v)
			}
			return []decimal.Decimal{v.Amount}
		})
		want, complete := fzOracle(body, fzAmountOf)
		fzCheckList(t, body, got, err, want, complete)
	})
}

func FuzzConverts(f *testing.F) {
	fzSeed(f, "converts.json", `[]`,
		`[{"id":"5","buyQuantity":1.50,"sellQuantity":"2","createdAt":"2024-01-15T10:30:00Z","buyTxnId":"6"}]`,
		`[{"id":5,"buyQuantity":"1","sellQuantity":"two","createdAt":"2024-01-15T10:30:00Z"}]`,
		`[{"id":5,"buyQuantity":"1","sellQuantity":null,"createdAt":"2024-01-15T10:30:00Z"}]`)
	d, c := fzStart(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d.serve(body)
		got, err := fzList(fzCtx(t), c.Converts, func(v astra.Convert) []decimal.Decimal {
			if v.CreatedAt.IsZero() {
				t.Errorf("convert delivered without createdAt: %+v", v)
			}
			return []decimal.Decimal{v.BuyQuantity, v.SellQuantity}
		})
		want, complete := fzOracle(body, func(r *struct {
			Buy  json.RawMessage `json:"buyQuantity"`
			Sell json.RawMessage `json:"sellQuantity"`
		}) []json.RawMessage {
			return []json.RawMessage{r.Buy, r.Sell}
		})
		fzCheckList(t, body, got, err, want, complete)
	})
}

func FuzzTransactions(f *testing.F) {
	fzSeed(f, "transactions.json", `[]`, badAmountList,
		`[{"displayId":"t","amount":-0.00000001,"createdAt":"2024-01-15T10:30:00Z"}]`,
		`[{"displayId":"t","amount":"1e3","createdAt":"2024-01-15T10:30:00Z"}]`,
		`[{"displayId":"t","amount":"\u0031","createdAt":"2024-01-15T10:30:00Z"}] `)
	d, c := fzStart(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d.serve(body)
		got, err := fzList(fzCtx(t), c.Transactions, func(v astra.Transaction) []decimal.Decimal {
			if v.CreatedAt.IsZero() {
				t.Errorf("transaction delivered without createdAt: %+v", v)
			}
			return []decimal.Decimal{v.Amount}
		})
		want, complete := fzOracle(body, fzAmountOf)
		fzCheckList(t, body, got, err, want, complete)
	})
}

func FuzzWithdrawalRequests(f *testing.F) {
	fzSeed(f, "withdrawal_requests.json", `[]`, badAmountList,
		`[{"id":"1","amount":"1`+strings.Repeat("0", 120)+`","status":"sent","createdAt":"2024-01-15T10:30:00Z"}]`,
		`[{"id":"1","amount":1e-99999,"status":"sent","createdAt":"2024-01-15T10:30:00Z"}]`,
		`[{"id":"1","amount":"`+strings.Repeat("9", 100)+`","status":"sent","createdAt":"2024-01-15T10:30:00Z"}]`,
		`[{"id":1,"amount":"0.5","status":"failed","error":"x","createdAt":"2024-01-15T10:30:00Z","updatedAt":""}]`)
	d, c := fzStart(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d.serve(body)
		got, err := fzList(fzCtx(t), c.WithdrawalRequests, func(v astra.WithdrawalRequest) []decimal.Decimal {
			if v.ID == "" || v.Status == "" || v.CreatedAt.IsZero() {
				t.Errorf("withdrawal request delivered without id, status or createdAt: %+v", v)
			}
			return []decimal.Decimal{v.Amount}
		})
		want, complete := fzOracle(body, fzAmountOf)
		fzCheckList(t, body, got, err, want, complete)
	})
}

// FuzzCreateWithdrawalResponse: a 2xx answer to the POST either yields the
// id it holds, or is an unknown outcome — never an id the body lacks, and
// never a definite refusal (the desk said yes; only the id is unreadable).
func FuzzCreateWithdrawalResponse(f *testing.F) {
	fzSeed(f, "create_withdrawal.json", `{"id":12}`, `{"id":""}`, `{"id":null}`, `{}`, `{"id":{"x":1}}`, ``, `[`, `"id"`)
	d, c := fzStart(f)
	req := astra.NewWithdrawal{InstrumentSymbol: "BTC", Amount: decimal.RequireFromString("0.5"), Network: "bitcoin", Address: "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"}
	f.Fuzz(func(t *testing.T, body []byte) {
		d.serve(body)
		id, err := c.CreateWithdrawal(fzCtx(t), req)
		if err != nil {
			if strings.Contains(err.Error(), fzKey) {
				t.Fatalf("error carries the API key: %v", err)
			}
			if !errors.Is(err, astra.ErrUnknownOutcome) {
				t.Fatalf("a 200 answer failed with %v, which is not ErrUnknownOutcome", err)
			}
			if id != "" {
				t.Fatalf("id %q returned with error %v", id, err)
			}
			return
		}
		var ans struct {
			ID json.RawMessage `json:"id"`
		}
		if json.Unmarshal(body, &ans) != nil {
			t.Fatalf("id %q read from a body encoding/json rejects: %q", id, body)
		}
		raw := bytes.TrimSpace(ans.ID)
		want := string(raw)
		if len(raw) > 0 && raw[0] == '"' {
			if json.Unmarshal(raw, &want) != nil {
				t.Fatalf("id %q from an unreadable id %s", id, raw)
			}
		} else if len(raw) == 0 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
			t.Fatalf("id %q from an id %s that is neither a string nor a number", id, raw)
		}
		if id == "" || id != want {
			t.Fatalf("id = %q, body's id is %s", id, raw)
		}
	})
}

// FuzzAddressResponse: a deposit address answer yields the non-empty address
// it holds, or an error.
func FuzzAddressResponse(f *testing.F) {
	fzSeed(f, "deposit_address.json", `{"address":""}`, `{"address":null}`, `{"address":5}`, `{}`, `null`, `[]`, `{"address":"a"} x`)
	d, c := fzStart(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d.serve(body)
		addr, err := c.DepositAddress(fzCtx(t), "bitcoin")
		if err != nil {
			if strings.Contains(err.Error(), fzKey) {
				t.Fatalf("error carries the API key: %v", err)
			}
			if addr != "" {
				t.Fatalf("address %q returned with error %v", addr, err)
			}
			return
		}
		var ans struct {
			Address *string `json:"address"`
		}
		if json.Unmarshal(body, &ans) != nil || ans.Address == nil {
			t.Fatalf("address %q read from a body without one: %q", addr, body)
		}
		if addr == "" || addr != *ans.Address {
			t.Fatalf("address = %q, body holds %q", addr, *ans.Address)
		}
	})
}
