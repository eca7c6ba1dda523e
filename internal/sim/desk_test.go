package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/shopspring/decimal"
)

const (
	testAccount = "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"
	testKey     = "test-key"
	otherAcct   = "11111111-2222-4333-8444-555555555555"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// startDesk starts a desk on loopback with a controllable clock.
func startDesk(t *testing.T, mods ...func(*DeskConfig)) (*Desk, *testClock) {
	t.Helper()
	clk := newTestClock()
	cfg := DeskConfig{
		AccountID:      testAccount,
		APIKey:         testKey,
		Seed:           7,
		Balances:       map[string]decimal.Decimal{"BTC": dec("5"), "USD": dec("250000"), "ETH": dec("40")},
		Prices:         map[string]decimal.Decimal{"BTC-USD": dec("65000"), "ETH-USD": dec("3200")},
		QuoteInterval:  20 * time.Millisecond,
		QuoteTTL:       5 * time.Second,
		WithdrawalStep: time.Second,
		Now:            clk.Now,
	}
	for _, m := range mods {
		m(&cfg)
	}
	d, err := NewDesk(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, clk
}

func do(t *testing.T, method, u, key string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set(deskAPIKeyHeader, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func getJSON(t *testing.T, d *Desk, path string, v any) {
	t.Helper()
	resp, body := do(t, "GET", d.BaseURL()+path, testKey, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

func dial(t *testing.T, d *Desk, query string) *websocket.Conn {
	t.Helper()
	h := http.Header{}
	h.Set(deskAPIKeyHeader, testKey)
	conn, resp, err := websocket.DefaultDialer.Dial(d.WSURL()+"/ws/stream-otc-quotes/"+testAccount+"?"+query, h)
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", query, err, code)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

type gotQuote struct {
	raw      json.RawMessage // the quote object, byte for byte
	id       string
	from, to string
	fromQty  decimal.Decimal
	toQty    decimal.Decimal
}

// parseQuote strictly decodes a frame into a quote; malformed frames fail.
func parseQuote(frame []byte) (gotQuote, error) {
	var env struct {
		Quote json.RawMessage `json:"quote"`
	}
	if err := json.Unmarshal(frame, &env); err != nil {
		return gotQuote{}, err
	}
	var m map[string]any
	dc := json.NewDecoder(bytes.NewReader(env.Quote))
	dc.UseNumber()
	if err := dc.Decode(&m); err != nil {
		return gotQuote{}, err
	}
	q := gotQuote{raw: env.Quote}
	for _, k := range []string{"quoteId", "accountId", "fromAsset", "toAsset", "signature"} {
		if s, ok := m[k].(string); !ok || s == "" {
			return gotQuote{}, errors.New("missing " + k)
		}
	}
	for _, k := range []string{"fromAssetQuantity", "toAssetQuantity", "expiryTime"} {
		if _, ok := m[k].(json.Number); !ok {
			return gotQuote{}, errors.New(k + " is not a number")
		}
	}
	q.id, q.from, q.to = m["quoteId"].(string), m["fromAsset"].(string), m["toAsset"].(string)
	q.fromQty = dec(string(m["fromAssetQuantity"].(json.Number)))
	q.toQty = dec(string(m["toAssetQuantity"].(json.Number)))
	return q, nil
}

func readQuote(t *testing.T, conn *websocket.Conn) gotQuote {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, frame, err := conn.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	q, err := parseQuote(frame)
	if err != nil {
		t.Fatalf("frame %s: %v", frame, err)
	}
	return q
}

func acceptBody(raw []byte) []byte {
	return append(append([]byte(`{"quote":`), raw...), '}')
}

func accept(t *testing.T, d *Desk, body []byte) (int, string) {
	t.Helper()
	resp, b := do(t, "POST", d.BaseURL()+"/otc/accept-quote/"+testAccount, testKey, body)
	return resp.StatusCode, string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type txJSON struct {
	DisplayID      string  `json:"displayId"`
	InstrumentID   string  `json:"instrumentId"`
	Symbol         string  `json:"symbol"`
	Amount         string  `json:"amount"`
	DebitFrom      string  `json:"debitFrom"`
	CreditTo       string  `json:"creditTo"`
	CreatedAt      string  `json:"createdAt"`
	IdemKey        *string `json:"idemKey"`
	Type           *string `json:"type"`
	TradeDisplayID *string `json:"tradeDisplayId"`
}

// netsFromHistory is Σ credits − Σ debits of the account per symbol.
func netsFromHistory(t *testing.T, txs []txJSON) map[string]decimal.Decimal {
	t.Helper()
	net := map[string]decimal.Decimal{}
	for _, tx := range txs {
		a := dec(tx.Amount)
		if !a.IsPositive() {
			t.Fatalf("transaction %s has non-positive amount %s", tx.DisplayID, tx.Amount)
		}
		switch testAccount {
		case tx.CreditTo:
			net[tx.Symbol] = net[tx.Symbol].Add(a)
		case tx.DebitFrom:
			net[tx.Symbol] = net[tx.Symbol].Sub(a)
		default:
			t.Fatalf("transaction %s touches neither side of the account", tx.DisplayID)
		}
	}
	return net
}

func balancesBySymbol(t *testing.T, d *Desk) map[string]decimal.Decimal {
	t.Helper()
	var raw map[string]balanceJSON
	getJSON(t, d, "/balances/"+testAccount, &raw)
	out := map[string]decimal.Decimal{}
	for id, b := range raw {
		if b.InstrumentID != id || b.Symbol == nil {
			t.Fatalf("balance entry %s malformed: %+v", id, b)
		}
		out[*b.Symbol] = dec(b.Amount)
	}
	return out
}

func TestLedgerNetsToBalancesAfterTradesWithdrawalsDepositsFees(t *testing.T) {
	d, clk := startDesk(t)
	conn := dial(t, d, "from=BTC&to=USD&fromQty=0.5")
	q := readQuote(t, conn)
	if code, body := accept(t, d, acceptBody(q.raw)); code != 200 {
		t.Fatalf("accept: %d %s", code, body)
	}
	d.FailNextWithdrawals(1, "address rejected")
	for _, b := range []string{
		`{"instrumentSymbol":"ETH","amount":"2","network":"ethereum","address":"0xabc"}`, // fails, refunded
		`{"instrumentSymbol":"BTC","amount":"1.25","network":"bitcoin","address":"bc1qdest"}`,
	} {
		if resp, body := do(t, "POST", d.BaseURL()+"/withdrawal-request/"+testAccount, testKey, []byte(b)); resp.StatusCode != 200 {
			t.Fatalf("withdraw: %d %s", resp.StatusCode, body)
		}
	}
	clk.Advance(5 * time.Second)
	d.Deposit("USD", dec("1000.5"))
	d.Fee("BTC", dec("0.0001"))
	d.ExternalWithdrawal("ETH", dec("1"), "ethereum", "0xthief")
	d.ExternalTrade("ETH", dec("1"), "USD", dec("3200"))
	d.SeedHistory(100)

	var txs []txJSON
	getJSON(t, d, "/transactions/"+testAccount, &txs)
	if got, want := int64(len(txs)), d.TransactionCount(); got != want {
		t.Fatalf("history has %d transactions, desk counts %d", got, want)
	}
	nets := netsFromHistory(t, txs)
	bals := balancesBySymbol(t, d)
	for sym, bal := range bals {
		if !bal.Equal(nets[sym]) {
			t.Errorf("%s: balance %s, history nets to %s", sym, bal, nets[sym])
		}
		if !bal.Equal(d.Balance(sym)) {
			t.Errorf("%s: REST balance %s, ground truth %s", sym, bal, d.Balance(sym))
		}
	}
	wantBTC := dec("5").Add(dec("0.5")).Sub(dec("1.25")).Sub(dec("0.0001"))
	if !bals["BTC"].Equal(wantBTC) {
		t.Errorf("BTC balance %s, want %s", bals["BTC"], wantBTC)
	}
	wantETH := dec("40").Sub(dec("1")).Add(dec("1")) // failed withdrawal refunded; external out; trade in
	if !bals["ETH"].Equal(wantETH) {
		t.Errorf("ETH balance %s, want %s", bals["ETH"], wantETH)
	}
	seen := map[string]bool{}
	for _, tx := range txs {
		if tx.IdemKey == nil || seen[*tx.IdemKey] {
			t.Fatalf("idemKey missing or repeated: %+v", tx)
		}
		seen[*tx.IdemKey] = true
	}
	for i := 1; i < len(txs); i++ {
		if txs[i-1].CreatedAt < txs[i].CreatedAt {
			t.Fatalf("history not newest first at %d: %s before %s", i, txs[i-1].CreatedAt, txs[i].CreatedAt)
		}
	}
}

func TestDuplicateTransactionAndDriftBreakTheLedger(t *testing.T) {
	d, _ := startDesk(t)
	d.Fee("BTC", dec("0.1"))
	d.DuplicateTransaction()
	d.DriftBalance("USD", dec("7"))
	var txs []txJSON
	getJSON(t, d, "/transactions/"+testAccount, &txs)
	if *txs[0].IdemKey != *txs[1].IdemKey || txs[0].DisplayID == txs[1].DisplayID {
		t.Fatalf("duplicate should repeat the idemKey with a new display id: %+v %+v", txs[0], txs[1])
	}
	if got := d.Balance("BTC"); !got.Equal(dec("4.8")) {
		t.Fatalf("duplicate fee should move the balance twice: BTC %s", got)
	}
	nets := netsFromHistory(t, txs)
	if drift := d.Balance("USD").Sub(nets["USD"]); !drift.Equal(dec("7")) {
		t.Fatalf("USD drift %s, want 7", drift)
	}
}

func TestQuotePricingFixesOneSideAndRoundsForTheDesk(t *testing.T) {
	tests := []struct {
		name           string
		query          string
		from, to       string
		fromQty, toQty string
	}{
		{"buy BTC fixed from", "from=BTC&to=USD&fromQty=0.3", "BTC", "USD", "0.3", "19500"},
		{"buy BTC fixed to rounds received down", "from=BTC&to=USD&toQty=1000", "BTC", "USD", "0.01538461", "1000"},
		{"inverted pair rounds paid up", "from=USD&to=BTC&fromQty=1000", "USD", "BTC", "1000", "0.01538462"},
		{"inverted pair fixed to", "from=USD&to=BTC&toQty=0.1", "USD", "BTC", "6500", "0.1"},
	}
	d, _ := startDesk(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := readQuote(t, dial(t, d, tt.query))
			if q.from != tt.from || q.to != tt.to || !q.fromQty.Equal(dec(tt.fromQty)) || !q.toQty.Equal(dec(tt.toQty)) {
				t.Fatalf("got %s %s -> %s %s, want %s %s -> %s %s", q.fromQty, q.from, q.toQty, q.to,
					tt.fromQty, tt.from, tt.toQty, tt.to)
			}
		})
	}
}

func TestValidAcceptBooksConvertAndTwoTransactions(t *testing.T) {
	d, _ := startDesk(t)
	q := readQuote(t, dial(t, d, "from=ETH&to=USD&fromQty=1.25"))
	body := acceptBody(q.raw)
	code, resp := accept(t, d, body)
	if code != 200 || strings.TrimSpace(resp) != "{}" {
		t.Fatalf("accept: %d %s", code, resp)
	}
	if got := d.AcceptBodies(); len(got) != 1 || !bytes.Equal(got[0], body) {
		t.Fatalf("accept bodies %q", got)
	}
	cs := d.Converts()
	if len(cs) != 1 || cs[0].QuoteID != q.id || cs[0].BuySymbol != "ETH" || !cs[0].BuyQty.Equal(dec("1.25")) ||
		cs[0].SellSymbol != "USD" || !cs[0].SellQty.Equal(q.toQty) {
		t.Fatalf("converts %+v for quote %+v", cs, q)
	}
	if !d.Balance("ETH").Equal(dec("41.25")) || !d.Balance("USD").Equal(dec("250000").Sub(q.toQty)) {
		t.Fatalf("balances ETH %s USD %s", d.Balance("ETH"), d.Balance("USD"))
	}
	var converts []convertJSON
	getJSON(t, d, "/converts/"+testAccount, &converts)
	if len(converts) != 1 || converts[0].DisplayID != cs[0].DisplayID || converts[0].BuyQuantity != "1.25" ||
		converts[0].TakerAccountID != testAccount || converts[0].Category != "otc" {
		t.Fatalf("GET converts %+v", converts)
	}
	var txs []txJSON
	getJSON(t, d, "/transactions/"+testAccount, &txs)
	var trade []txJSON
	for _, tx := range txs {
		if tx.Type != nil && *tx.Type == "trade" {
			trade = append(trade, tx)
		}
	}
	if len(trade) != 2 {
		t.Fatalf("want two trade transactions, got %+v", trade)
	}
	for _, tx := range trade {
		if tx.TradeDisplayID == nil || *tx.TradeDisplayID != cs[0].DisplayID {
			t.Fatalf("trade transaction not linked to the convert: %+v", tx)
		}
	}
}

func TestAcceptRefusalsBookNothing(t *testing.T) {
	d, clk := startDesk(t)
	conn := dial(t, d, "from=BTC&to=USD&fromQty=0.1")
	big := dial(t, d, "from=BTC&to=USD&fromQty=100") // costs 6.5M USD, far above the balance
	used := readQuote(t, conn)
	if code, body := accept(t, d, acceptBody(used.raw)); code != 200 {
		t.Fatalf("first accept: %d %s", code, body)
	}
	foreign := wireQuote{quoteID: "q-foreign", accountID: otherAcct, from: "BTC", to: "USD", fromQty: "0.1",
		toQty: "6500", expiry: "99999999999999999"}
	foreign.signature = d.sign(foreign)
	foreignFrame := foreign.frame()
	foreignRaw := foreignFrame[len(`{"quote":`) : len(foreignFrame)-1]

	tests := []struct {
		name   string
		body   func() []byte
		status int
		msg    string
	}{
		{"bad signature", func() []byte {
			raw := readQuote(t, conn).raw
			i := bytes.Index(raw, []byte(`"signature":"`)) + len(`"signature":"`)
			raw = append([]byte(nil), raw...)
			raw[i] ^= 1
			return acceptBody(raw)
		}, 400, "invalid signature"},
		{"re-encoded quantity", func() []byte {
			raw := bytes.Replace(readQuote(t, conn).raw, []byte(`"fromAssetQuantity":0.1`), []byte(`"fromAssetQuantity":0.10`), 1)
			return acceptBody(raw)
		}, 400, "invalid signature"},
		{"insufficient balance", func() []byte { return acceptBody(readQuote(t, big).raw) }, 400, "insufficient balance"},
		{"quantity as a string", func() []byte {
			raw := bytes.Replace(readQuote(t, conn).raw, []byte(`"fromAssetQuantity":0.1`), []byte(`"fromAssetQuantity":"0.1"`), 1)
			return acceptBody(raw)
		}, 400, "JSON numbers"},
		{"expired", func() []byte {
			raw := readQuote(t, conn).raw
			clk.Advance(5 * time.Second)
			return acceptBody(raw)
		}, 400, "quote expired"},
		{"wrong account", func() []byte {
			return acceptBody(foreignRaw)
		}, 400, "another account"},
		{"reused", func() []byte { return acceptBody(used.raw) }, 409, "already used"},
		{"no quote", func() []byte { return []byte(`{}`) }, 400, "quote"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body()
			before := d.TransactionCount()
			btc, usd := d.Balance("BTC"), d.Balance("USD")
			code, resp := accept(t, d, body)
			var m struct{ Message string }
			json.Unmarshal([]byte(resp), &m)
			if code != tt.status || !strings.Contains(m.Message, tt.msg) {
				t.Fatalf("got %d %s, want %d %q", code, resp, tt.status, tt.msg)
			}
			if len(d.Converts()) != 1 || d.TransactionCount() != before || !d.Balance("BTC").Equal(btc) || !d.Balance("USD").Equal(usd) {
				t.Fatalf("refused accept booked something: converts %d", len(d.Converts()))
			}
		})
	}
}

type withdrawalWire struct {
	ID          string  `json:"id"`
	Status      string  `json:"status"`
	Amount      string  `json:"amount"`
	Address     string  `json:"address"`
	Error       *string `json:"error"`
	NetworkTxID *string `json:"networkTxId"`
}

func withdrawalStatus(t *testing.T, d *Desk, id string) withdrawalWire {
	t.Helper()
	var all []withdrawalWire
	getJSON(t, d, "/withdrawal-request/"+testAccount+"/all", &all)
	for _, w := range all {
		if w.ID == id {
			return w
		}
	}
	t.Fatalf("withdrawal %s not listed", id)
	return withdrawalWire{}
}

func createWithdrawal(t *testing.T, d *Desk, body string) string {
	t.Helper()
	resp, b := do(t, "POST", d.BaseURL()+"/withdrawal-request/"+testAccount, testKey, []byte(body))
	var out struct{ ID string }
	if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil || out.ID == "" {
		t.Fatalf("create withdrawal: %d %s", resp.StatusCode, b)
	}
	return out.ID
}

func TestWithdrawalLifecycleFollowsInjectedClock(t *testing.T) {
	d, clk := startDesk(t)
	id := createWithdrawal(t, d, `{"instrumentSymbol":"BTC","amount":"0.5","network":"bitcoin","address":"bc1qdest"}`)
	if !d.Balance("BTC").Equal(dec("4.5")) {
		t.Fatalf("debit not booked at creation: %s", d.Balance("BTC"))
	}
	for i, want := range []string{"pending", "processing", "sent", "completed", "completed"} {
		w := withdrawalStatus(t, d, id)
		if w.Status != want {
			t.Fatalf("step %d: status %s, want %s", i, w.Status, want)
		}
		if (w.NetworkTxID != nil) != (i >= 2) {
			t.Fatalf("step %d: networkTxId %v", i, w.NetworkTxID)
		}
		clk.Advance(time.Second)
	}
	var transfers []transferJSON
	getJSON(t, d, "/transfers/"+testAccount, &transfers)
	if transfers[0].TransferType != "withdrawal" || transfers[0].Metadata == nil || transfers[0].Metadata.WithdrawalID != id ||
		transfers[0].Metadata.Network != "bitcoin" {
		t.Fatalf("newest transfer should link the withdrawal: %+v", transfers[0])
	}

	d.FailNextWithdrawals(1, "address rejected")
	id = createWithdrawal(t, d, `{"instrumentSymbol":"BTC","amount":"1","network":"bitcoin","address":"bc1qdest"}`)
	clk.Advance(time.Second)
	if w := withdrawalStatus(t, d, id); w.Status != "processing" || !d.Balance("BTC").Equal(dec("3.5")) {
		t.Fatalf("before failing: %+v, BTC %s", w, d.Balance("BTC"))
	}
	clk.Advance(time.Second)
	w := withdrawalStatus(t, d, id)
	if w.Status != "failed" || w.Error == nil || *w.Error != "address rejected" {
		t.Fatalf("want failed with error, got %+v", w)
	}
	if !d.Balance("BTC").Equal(dec("4.5")) {
		t.Fatalf("failed withdrawal not refunded: BTC %s", d.Balance("BTC"))
	}
}

func TestWithdrawalValidationRefusesBadRequests(t *testing.T) {
	tests := []struct {
		name, body, msg string
	}{
		{"negative amount", `{"instrumentSymbol":"BTC","amount":"-1","network":"bitcoin","address":"a"}`, "positive"},
		{"not a decimal", `{"instrumentSymbol":"BTC","amount":"1,5","network":"bitcoin","address":"a"}`, "positive"},
		{"number not string", `{"instrumentSymbol":"BTC","amount":1,"network":"bitcoin","address":"a"}`, "invalid body"},
		{"unknown symbol", `{"instrumentSymbol":"DOGE","amount":"1","network":"bitcoin","address":"a"}`, "unknown"},
		{"empty address", `{"instrumentSymbol":"BTC","amount":"1","network":"bitcoin","address":""}`, "address"},
		{"wrong network", `{"instrumentSymbol":"BTC","amount":"1","network":"ethereum","address":"a"}`, "network"},
		{"insufficient", `{"instrumentSymbol":"BTC","amount":"5.00000001","network":"bitcoin","address":"a"}`, "insufficient"},
	}
	d, _ := startDesk(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := do(t, "POST", d.BaseURL()+"/withdrawal-request/"+testAccount, testKey, []byte(tt.body))
			if resp.StatusCode != 400 || !strings.Contains(string(b), tt.msg) {
				t.Fatalf("got %d %s, want 400 %q", resp.StatusCode, b, tt.msg)
			}
			if len(d.Withdrawals()) != 0 || !d.Balance("BTC").Equal(dec("5")) {
				t.Fatal("refused withdrawal changed the ledger")
			}
		})
	}
}

func TestAuthAccountAndStreamParameters(t *testing.T) {
	d, _ := startDesk(t)
	tests := []struct {
		name, path, key string
		status          int
		msg             string
	}{
		{"wrong key", "/balances/" + testAccount, "nope", 401, "invalid api key"},
		{"no key", "/balances/" + testAccount, "", 401, "invalid api key"},
		{"unknown account", "/balances/" + otherAcct, testKey, 404, "account"},
		{"unknown account transactions", "/transactions/" + otherAcct, testKey, 404, "account"},
		{"unsupported deposit network", "/deposit-address/" + testAccount + "?network=solana", testKey, 400, "network"},
		{"stream wrong key", "/ws/stream-otc-quotes/" + testAccount + "?from=BTC&to=USD&fromQty=1", "nope", 401, "invalid api key"},
		{"stream both quantities", "/ws/stream-otc-quotes/" + testAccount + "?from=BTC&to=USD&fromQty=1&toQty=2", testKey, 400, "exactly one"},
		{"stream no quantity", "/ws/stream-otc-quotes/" + testAccount + "?from=BTC&to=USD", testKey, 400, "exactly one"},
		{"stream negative quantity", "/ws/stream-otc-quotes/" + testAccount + "?from=BTC&to=USD&fromQty=-1", testKey, 400, "positive"},
		{"stream unknown asset", "/ws/stream-otc-quotes/" + testAccount + "?from=DOGE&to=USD&fromQty=1", testKey, 400, "pair"},
		{"stream unquoted pair", "/ws/stream-otc-quotes/" + testAccount + "?from=BTC&to=ETH&fromQty=1", testKey, 400, "pair"},
		{"stream unknown account", "/ws/stream-otc-quotes/" + otherAcct + "?from=BTC&to=USD&fromQty=1", testKey, 404, "account"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.HasPrefix(tt.path, "/ws/") {
				h := http.Header{}
				if tt.key != "" {
					h.Set(deskAPIKeyHeader, tt.key)
				}
				_, resp, err := websocket.DefaultDialer.Dial(d.WSURL()+tt.path, h)
				if err == nil || resp == nil || resp.StatusCode != tt.status {
					t.Fatalf("handshake: err %v resp %v, want %d", err, resp, tt.status)
				}
				return
			}
			resp, b := do(t, "GET", d.BaseURL()+tt.path, tt.key, nil)
			if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.msg) {
				t.Fatalf("got %d %s, want %d %q", resp.StatusCode, b, tt.status, tt.msg)
			}
		})
	}
}

func TestBalancesAndDepositAddressesAreDeterministic(t *testing.T) {
	a, _ := startDesk(t)
	b, _ := startDesk(t)
	var ba, bb map[string]balanceJSON
	getJSON(t, a, "/balances/"+testAccount, &ba)
	getJSON(t, b, "/balances/"+testAccount, &bb)
	if len(ba) != 3 {
		t.Fatalf("want BTC, ETH, USD balances, got %+v", ba)
	}
	for id, e := range ba {
		if bb[id].InstrumentID != id || e.Network != nil || e.Address != nil {
			t.Fatalf("instrument %s not stable or not blockchain-agnostic: %+v vs %+v", id, e, bb[id])
		}
	}
	var addrA, addrB, express struct{ Address string }
	getJSON(t, a, "/deposit-address/"+testAccount+"?network=bitcoin", &addrA)
	getJSON(t, b, "/deposit-address/"+testAccount+"?network=bitcoin", &addrB)
	getJSON(t, a, "/express-deposit-address?coin=BTC&network=bitcoin", &express)
	if addrA.Address != addrB.Address || !strings.HasPrefix(addrA.Address, "bc1q") || express.Address == addrA.Address ||
		express.Address == "" {
		t.Fatalf("addresses %q %q express %q", addrA.Address, addrB.Address, express.Address)
	}
	if resp, _ := do(t, "GET", a.BaseURL()+"/express-deposit-address?coin=BTC&network=ethereum", testKey, nil); resp.StatusCode != 400 {
		t.Fatalf("express BTC on ethereum: %d", resp.StatusCode)
	}
}

func TestSameSeedSameFirstQuotes(t *testing.T) {
	vol := func(c *DeskConfig) { c.VolatilityBps = dec("20") }
	a, _ := startDesk(t, vol)
	b, _ := startDesk(t, vol)
	c, _ := startDesk(t, vol, func(c *DeskConfig) { c.Seed = 8 })
	frames := func(d *Desk) []string {
		conn := dial(t, d, "from=BTC&to=USD&fromQty=0.5")
		var out []string
		for range 3 {
			out = append(out, string(readQuote(t, conn).raw))
		}
		return out
	}
	fa, fb, fc := frames(a), frames(b), frames(c)
	for i := range fa {
		if fa[i] != fb[i] {
			t.Fatalf("quote %d differs under the same seed:\n%s\n%s", i, fa[i], fb[i])
		}
		if fa[i] == fc[i] {
			t.Fatalf("quote %d identical under another seed", i)
		}
	}
	if fa[0] == fa[1] || fa[1] == fa[2] {
		t.Fatal("successive quotes should differ")
	}
}

func TestDropClosesStreams(t *testing.T) {
	tests := []struct {
		name string
		drop func(*Desk)
	}{
		{"DropStreams", func(d *Desk) { d.DropStreams() }},
		{"StreamDrop fault", func(d *Desk) { d.SetFaults(Faults{StreamDrop: 1}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := startDesk(t)
			conn := dial(t, d, "from=BTC&to=USD&fromQty=1")
			readQuote(t, conn)
			tt.drop(d)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			var err error
			for err == nil {
				_, _, err = conn.ReadMessage()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("stream was not closed: %v", err)
			}
			if websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				t.Fatalf("drop must be abrupt, got a close frame: %v", err)
			}
			waitFor(t, "stream unregistered", func() bool { return d.OpenStreams() == 0 })
		})
	}
}

func TestMalformedFramesArriveThenQuotesResume(t *testing.T) {
	d, _ := startDesk(t)
	d.MalformNextFrames(4)
	conn := dial(t, d, "from=BTC&to=USD&fromQty=1")
	for i := range 4 {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, frame, err := conn.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseQuote(frame); err == nil {
			t.Fatalf("frame %d should be malformed: %s", i, frame)
		}
	}
	readQuote(t, conn)
	if d.QuotesSent() < 1 {
		t.Fatal("valid quote not counted")
	}
}

func TestStallStreamsSendsNothingButKeepsTheConnection(t *testing.T) {
	d, _ := startDesk(t)
	conn := dial(t, d, "from=BTC&to=USD&fromQty=1")
	readQuote(t, conn)
	d.StallStreams(time.Hour)
	sent := d.QuotesSent()
	conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond)) // 15 quote intervals
	// A frame already in flight when the stall began may still arrive.
	var err error
	for err == nil {
		_, _, err = conn.ReadMessage()
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("want a read timeout during the stall, got %v", err)
	}
	if d.OpenStreams() != 1 || d.QuotesSent() > sent+1 {
		t.Fatalf("stalled stream: open %d, quotes %d -> %d", d.OpenStreams(), sent, d.QuotesSent())
	}
}

func TestRESTFaultsAnswerWithoutEffect(t *testing.T) {
	body := []byte(`{"instrumentSymbol":"BTC","amount":"1","network":"bitcoin","address":"bc1q"}`)
	tests := []struct {
		name       string
		arm        func(*Desk)
		statuses   []int
		retryAfter string
	}{
		{"FailNextREST 429", func(d *Desk) { d.SetFaults(Faults{RetryAfter: 1500 * time.Millisecond}); d.FailNextREST(1, 429) }, []int{429}, "2"},
		{"FailNextREST 503", func(d *Desk) { d.FailNextREST(1, 503) }, []int{503}, ""},
		{"REST429 fault default Retry-After", func(d *Desk) { d.SetFaults(Faults{REST429: 1}) }, []int{429}, "1"},
		{"REST5xx fault", func(d *Desk) { d.SetFaults(Faults{REST5xx: 1}) }, []int{500, 502, 503}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := startDesk(t)
			tt.arm(d)
			resp, b := do(t, "POST", d.BaseURL()+"/withdrawal-request/"+testAccount, testKey, body)
			ok := false
			for _, s := range tt.statuses {
				ok = ok || resp.StatusCode == s
			}
			if !ok || resp.Header.Get("Retry-After") != tt.retryAfter {
				t.Fatalf("got %d Retry-After %q (%s), want %v %q", resp.StatusCode, resp.Header.Get("Retry-After"), b,
					tt.statuses, tt.retryAfter)
			}
			if len(d.Withdrawals()) != 0 {
				t.Fatal("faulted request took effect")
			}
		})
	}
}

func TestRESTLatencyDelaysAnswers(t *testing.T) {
	d, _ := startDesk(t)
	d.SetFaults(Faults{RESTLatency: 100 * time.Millisecond})
	start := time.Now()
	var bals map[string]balanceJSON
	getJSON(t, d, "/balances/"+testAccount, &bals)
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Fatalf("answered after %v, want at least the 100ms latency", el)
	}
}

func TestBlackholedAcceptTakesEffectButNeverAnswers(t *testing.T) {
	d, _ := startDesk(t)
	q := readQuote(t, dial(t, d, "from=BTC&to=USD&fromQty=0.2"))
	d.BlackholeNextAccepts(1)
	client := &http.Client{Timeout: 200 * time.Millisecond}
	req, _ := http.NewRequest("POST", d.BaseURL()+"/otc/accept-quote/"+testAccount, bytes.NewReader(acceptBody(q.raw)))
	req.Header.Set(deskAPIKeyHeader, testKey)
	resp, err := client.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("blackholed accept answered %d", resp.StatusCode)
	}
	if cs := d.Converts(); len(cs) != 1 || cs[0].QuoteID != q.id {
		t.Fatalf("blackholed accept should still book the trade: %+v", cs)
	}
}

func TestBlackholedWithdrawalIsCreatedAndCloseReleasesIt(t *testing.T) {
	d, _ := startDesk(t)
	d.BlackholeNextWithdrawals(1)
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("POST", d.BaseURL()+"/withdrawal-request/"+testAccount,
			strings.NewReader(`{"instrumentSymbol":"BTC","amount":"1","network":"bitcoin","address":"bc1q"}`))
		req.Header.Set(deskAPIKeyHeader, testKey)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			err = nil
			errc <- errors.New("answered " + resp.Status)
			return
		}
		errc <- nil
	}()
	waitFor(t, "withdrawal created", func() bool { return len(d.Withdrawals()) == 1 })
	d.Close()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not release the blackholed request")
	}
}

func TestControlAPIDrivesTheDesk(t *testing.T) {
	d, _ := startDesk(t)
	root := strings.TrimSuffix(d.BaseURL(), "/v2")
	post := func(path, body string) {
		t.Helper()
		resp, b := do(t, "POST", root+"/_sim/"+path, "", []byte(body))
		if resp.StatusCode != 200 {
			t.Fatalf("POST /_sim/%s: %d %s", path, resp.StatusCode, b)
		}
	}
	post("deposit", `{"symbol":"BTC","amount":"0.5"}`)
	post("faults", `{"rest429":1,"retryAfter":"3s"}`)
	if got := d.Balance("BTC"); !got.Equal(dec("5.5")) {
		t.Fatalf("deposit via /_sim/: BTC %s", got)
	}
	resp, _ := do(t, "GET", d.BaseURL()+"/balances/"+testAccount, testKey, nil)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
		t.Fatalf("faults via /_sim/: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	var st deskState
	resp, b := do(t, "GET", root+"/_sim/state", "", nil)
	if resp.StatusCode != 200 || json.Unmarshal(b, &st) != nil || st.Faults.REST429 != 1 || st.Balances["BTC"] != "5.5" {
		t.Fatalf("state %d %s", resp.StatusCode, b)
	}
	if resp, _ := do(t, "POST", root+"/_sim/faults", "", []byte(`{"rest5xx":2}`)); resp.StatusCode != 400 {
		t.Fatalf("probability 2 accepted: %d", resp.StatusCode)
	}
}

func TestSeedHistoryKeepsBalancesAndStaysCompact(t *testing.T) {
	d, _ := startDesk(t)
	before := balancesBySymbol(t, d)
	d.SeedHistory(5000)
	d.Fee("USD", dec("1"))
	var txs []txJSON
	getJSON(t, d, "/transactions/"+testAccount, &txs)
	if len(txs) != 3+10000+1 {
		t.Fatalf("want 10004 transactions, got %d", len(txs))
	}
	nets := netsFromHistory(t, txs)
	for sym, b := range before {
		want := b
		if sym == "USD" {
			want = want.Sub(dec("1"))
		}
		if !d.Balance(sym).Equal(want) || !nets[sym].Equal(want) {
			t.Fatalf("%s: balance %s nets %s, want %s", sym, d.Balance(sym), nets[sym], want)
		}
	}
	if *txs[0].Type != "fee" || !strings.HasPrefix(*txs[1].IdemKey, "seed_") {
		t.Fatalf("order wrong: %+v %+v", txs[0], txs[1])
	}
	if d.TransactionCount() != int64(len(txs)) || len(d.segs) != 5 {
		t.Fatalf("seeded block should be one segment: %d segments", len(d.segs))
	}
}

func TestManyStreamsAreServedAtOnce(t *testing.T) {
	d, _ := startDesk(t, func(c *DeskConfig) { c.QuoteInterval = time.Hour })
	const n = 200
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = dial(t, d, "from=BTC&to=USD&fromQty="+url.QueryEscape("0.01"))
	}
	for _, c := range conns {
		readQuote(t, c)
	}
	if d.OpenStreams() != n {
		t.Fatalf("open streams %d, want %d", d.OpenStreams(), n)
	}
	d.Close()
	if d.OpenStreams() != 0 {
		t.Fatalf("Close left %d streams", d.OpenStreams())
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func BenchmarkServeMillionTransactions(b *testing.B) {
	d, err := NewDesk(DeskConfig{AccountID: testAccount, APIKey: testKey, Seed: 1,
		Balances: map[string]decimal.Decimal{"BTC": dec("1"), "USD": dec("1")}})
	if err != nil {
		b.Fatal(err)
	}
	if err := d.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	d.SeedHistory(500_000)
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("GET", d.BaseURL()+"/transactions/"+testAccount, nil)
		req.Header.Set(deskAPIKeyHeader, testKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		b.ReportMetric(float64(n)/1e6, "MB/op")
	}
}

// TestQuotePhaseSchedulesTheFirstQuote: when the n-th stream to connect
// sends its first quote under each DeskConfig.QuotePhase, at 10 ms past an
// instant of the 40 ms epoch grid.
func TestQuotePhaseSchedulesTheFirstQuote(t *testing.T) {
	const iv = 40 * time.Millisecond
	grid := time.Unix(1_800_000_000, 0) // a multiple of 40 ms since the epoch
	now := grid.Add(10 * time.Millisecond)
	for _, c := range []struct {
		phase string
		n     int
		want  time.Duration
	}{
		{"", 7, 0},
		{"connect", 0, 0},
		{"aligned", 0, 30 * time.Millisecond},
		{"aligned", 31, 30 * time.Millisecond},
		{"spread", 0, 30 * time.Millisecond},                        // offset 0: the next grid instant
		{"spread", 1, 14*time.Millisecond + 721359*time.Nanosecond}, // offset 0.618… × 40 ms = 24.72 ms
		{"spread", 2, 39*time.Millisecond + 442719*time.Nanosecond}, // offset 9.44 ms, just passed: the next interval's
	} {
		d, err := NewDesk(DeskConfig{AccountID: testAccount, APIKey: testKey, QuoteInterval: iv, QuotePhase: c.phase})
		if err != nil {
			t.Fatal(err)
		}
		if got := d.firstQuoteIn(c.n, now); got != c.want {
			t.Errorf("phase %q, stream %d: first quote in %s, want %s", c.phase, c.n, got, c.want)
		}
	}

	// Spread: 50 streams' instants within the interval are apart, and are
	// the same whenever the desk (or its streams) started.
	d, err := NewDesk(DeskConfig{AccountID: testAccount, APIKey: testKey, QuoteInterval: iv, QuotePhase: "spread"})
	if err != nil {
		t.Fatal(err)
	}
	phases := make([]time.Duration, 50)
	for n := range phases {
		at := now.Add(d.firstQuoteIn(n, now))
		later := now.Add(17*iv + 3*time.Millisecond)
		if again := later.Add(d.firstQuoteIn(n, later)); again.Sub(at)%iv != 0 {
			t.Fatalf("stream %d: first quote at %s from one start, %s from another: not the same phase", n, at, again)
		}
		phases[n] = at.Sub(grid) % iv
	}
	slices.Sort(phases)
	for i := 1; i < len(phases); i++ {
		if gap := phases[i] - phases[i-1]; gap < iv/200 {
			t.Fatalf("streams %s apart within the interval: not spread (%v)", gap, phases)
		}
	}

	if _, err := NewDesk(DeskConfig{AccountID: testAccount, APIKey: testKey, QuotePhase: "bursty"}); err == nil ||
		!strings.Contains(err.Error(), `"bursty"`) {
		t.Fatalf("NewDesk with quote phase bursty: %v, want an error naming it", err)
	}
}
