package sim

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// deskAPIKeyHeader is the header that carries the desk's API key.
const deskAPIKeyHeader = "x-astra-api-key"

func (d *Desk) routes() http.Handler {
	mux := http.NewServeMux()
	rest := func(pattern string, h http.HandlerFunc) { mux.Handle(pattern, d.restMiddleware(h)) }
	rest("GET /v2/balances/{account_id}", d.handleBalances)
	rest("GET /v2/transfers/{account_id}", d.handleTransfers)
	rest("GET /v2/converts/{account_id}", d.handleConverts)
	rest("GET /v2/transactions/{account_id}", d.handleTransactions)
	rest("GET /v2/withdrawal-request/{account_id}/all", d.handleWithdrawals)
	rest("POST /v2/withdrawal-request/{account_id}", d.handleCreateWithdrawal)
	rest("GET /v2/deposit-address/{account_id}", d.handleDepositAddress)
	rest("GET /v2/express-deposit-address", d.handleExpressDepositAddress)
	rest("POST /v2/otc/accept-quote/{account_id}", d.handleAccept)
	mux.HandleFunc("GET /v2/ws/stream-otc-quotes/{account_id}", func(w http.ResponseWriter, r *http.Request) {
		if d.authOK(w, r) {
			d.handleStream(w, r)
		}
	})
	d.controlRoutes(mux)
	d.latencyRoutes(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		deskMessage(w, http.StatusNotFound, "not found")
	})
	return mux
}

func (d *Desk) authOK(w http.ResponseWriter, r *http.Request) bool {
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(deskAPIKeyHeader)), []byte(d.cfg.APIKey)) != 1 {
		deskMessage(w, http.StatusUnauthorized, "invalid api key")
		return false
	}
	return true
}

func (d *Desk) accountOK(w http.ResponseWriter, r *http.Request) bool {
	if r.PathValue("account_id") != d.cfg.AccountID {
		deskMessage(w, http.StatusNotFound, "account not found")
		return false
	}
	return true
}

// restMiddleware checks the key, then applies the REST faults: latency, and
// an error status in place of the handler (the request takes no effect).
func (d *Desk) restMiddleware(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.authOK(w, r) {
			return
		}
		d.mu.Lock()
		f := d.faults
		status := 0
		switch {
		case d.failREST > 0:
			d.failREST--
			status = d.failStatus
		case f.REST429 > 0 && d.rngFault.Float64() < f.REST429:
			status = http.StatusTooManyRequests
		case f.REST5xx > 0 && d.rngFault.Float64() < f.REST5xx:
			status = [...]int{500, 502, 503}[d.rngFault.IntN(3)]
		}
		d.mu.Unlock()
		if f.RESTLatency > 0 {
			t := time.NewTimer(f.RESTLatency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			case <-d.done:
				t.Stop()
				return
			}
		}
		if status != 0 {
			if status == http.StatusTooManyRequests {
				ra := f.RetryAfter
				if ra <= 0 {
					ra = time.Second
				}
				secs := int64((ra + time.Second - 1) / time.Second)
				w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
			}
			deskMessage(w, status, "simulated fault: "+http.StatusText(status))
			return
		}
		h(w, r)
	})
}

// blackhole never answers: it holds the request until the client goes away
// or the desk closes, then drops the connection without a response.
func (d *Desk) blackhole(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-d.done:
	}
	panic(http.ErrAbortHandler)
}

func deskJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"message":"encode"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}

func deskMessage(w http.ResponseWriter, status int, msg string) {
	deskJSON(w, status, map[string]string{"message": msg})
}

func deskOptString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// deskAgnostic symbols show up without network or address in balances, like the
// reference's sample.
var deskAgnostic = map[string]bool{"BTC": true, "ETH": true, "USD": true, "USDC": true, "USDT": true}

type balanceJSON struct {
	InstrumentID string  `json:"instrumentId"`
	Symbol       *string `json:"symbol"`
	Amount       string  `json:"amount"`
	Network      *string `json:"network"`
	Address      *string `json:"address"`
}

func (d *Desk) handleBalances(w http.ResponseWriter, r *http.Request) {
	if !d.accountOK(w, r) {
		return
	}
	d.mu.Lock()
	d.advanceLocked()
	out := make(map[string]balanceJSON, len(d.symbols))
	for _, s := range d.symbols {
		id := d.instrumentIDs[s]
		b := balanceJSON{InstrumentID: id, Symbol: deskOptString(s), Amount: d.balances[s].String()}
		if !deskAgnostic[s] {
			b.Network = deskOptString(d.networks[s])
		}
		out[id] = b
	}
	d.mu.Unlock()
	deskJSON(w, http.StatusOK, out)
}

type transferJSON struct {
	ID           string          `json:"id"`
	CreatedAt    string          `json:"createdAt"`
	Symbol       string          `json:"symbol"`
	Amount       string          `json:"amount"`
	TransferType string          `json:"transferType"`
	Metadata     *transferMetaJS `json:"metadata"`
	UpdatedAt    string          `json:"updatedAt"`
}

type transferMetaJS struct {
	Type         string `json:"type"`
	Address      string `json:"address"`
	Network      string `json:"network"`
	WithdrawalID string `json:"withdrawal_id"`
}

func (d *Desk) handleTransfers(w http.ResponseWriter, r *http.Request) {
	if !d.accountOK(w, r) {
		return
	}
	d.mu.Lock()
	d.advanceLocked()
	out := make([]transferJSON, 0, len(d.transfers))
	for i := len(d.transfers) - 1; i >= 0; i-- {
		t := d.transfers[i]
		j := transferJSON{ID: strconv.FormatInt(t.id, 10), CreatedAt: deskTime(t.createdAt), Symbol: t.symbol,
			Amount: t.amount.String(), TransferType: t.typ, UpdatedAt: deskTime(t.createdAt)}
		if t.wd != nil {
			j.UpdatedAt = deskTime(t.wd.updatedAt)
			j.Metadata = &transferMetaJS{Type: "withdrawal", Address: t.wd.Address, Network: t.wd.Network, WithdrawalID: t.wd.ID}
		}
		out = append(out, j)
	}
	d.mu.Unlock()
	deskJSON(w, http.StatusOK, out)
}

type convertJSON struct {
	DisplayID        string  `json:"displayId"`
	ID               int64   `json:"id"`
	TakerAccountID   string  `json:"takerAccountId"`
	MakerAccountID   string  `json:"makerAccountId"`
	BuyInstrumentID  string  `json:"buyInstrumentId"`
	BuyQuantity      string  `json:"buyQuantity"`
	BuyTxnID         int64   `json:"buyTxnId"`
	SellInstrumentID string  `json:"sellInstrumentId"`
	SellQuantity     string  `json:"sellQuantity"`
	SellTxnID        int64   `json:"sellTxnId"`
	Category         string  `json:"category"`
	Notes            *string `json:"notes"`
	CreatedAt        string  `json:"createdAt"`
	UpdatedAt        string  `json:"updatedAt"`
	BuySymbol        string  `json:"buySymbol"`
	SellSymbol       string  `json:"sellSymbol"`
}

func (d *Desk) handleConverts(w http.ResponseWriter, r *http.Request) {
	if !d.accountOK(w, r) {
		return
	}
	d.mu.Lock()
	out := make([]convertJSON, 0, len(d.converts))
	for i := len(d.converts) - 1; i >= 0; i-- {
		c := d.converts[i]
		at := deskTime(c.CreatedAt)
		out = append(out, convertJSON{
			DisplayID: c.DisplayID, ID: c.id, TakerAccountID: d.cfg.AccountID, MakerAccountID: d.makerID,
			BuyInstrumentID: d.instrumentIDs[c.BuySymbol], BuyQuantity: c.BuyQty.String(), BuyTxnID: c.buyTxnID,
			SellInstrumentID: d.instrumentIDs[c.SellSymbol], SellQuantity: c.SellQty.String(), SellTxnID: c.sellTxnID,
			Category: "otc", CreatedAt: at, UpdatedAt: at, BuySymbol: c.BuySymbol, SellSymbol: c.SellSymbol,
		})
	}
	d.mu.Unlock()
	deskJSON(w, http.StatusOK, out)
}

// transactionsFlushBytes is when the streamed transaction list is handed to
// the connection: big enough to amortise writes, small enough to stay flat.
const transactionsFlushBytes = 64 << 10

// handleTransactions streams the history newest first without building it in
// memory: real records are snapshotted (they are immutable), seeded blocks are
// generated from their index.
func (d *Desk) handleTransactions(w http.ResponseWriter, r *http.Request) {
	if !d.accountOK(w, r) {
		return
	}
	d.mu.Lock()
	d.advanceLocked()
	segs := d.segs[:len(d.segs):len(d.segs)]
	ids := make(map[string]string, len(d.instrumentIDs))
	for s, id := range d.instrumentIDs {
		ids[s] = id
	}
	d.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, transactionsFlushBytes)
	buf := make([]byte, 0, 1024)
	buf = append(buf, '[')
	first := true
	sep := func() {
		if !first {
			buf = append(buf, ',')
		}
		first = false
	}
	for i := len(segs) - 1; i >= 0; i-- {
		sg := segs[i]
		if sg.tx != nil {
			sep()
			buf = deskAppendTx(buf, sg.tx, ids[sg.tx.symbol])
		} else {
			for g := sg.seedFirst + sg.seedCount - 1; g >= sg.seedFirst; g-- {
				sep()
				buf = d.appendSeededTx(buf, sg, g, ids)
				if len(buf) >= 512 {
					if _, err := bw.Write(buf); err != nil {
						return
					}
					buf = buf[:0]
				}
			}
		}
		if _, err := bw.Write(buf); err != nil {
			return
		}
		buf = buf[:0]
	}
	buf = append(buf, ']')
	bw.Write(buf)
	bw.Flush()
}

func deskAppendTx(b []byte, t *txRec, instrumentID string) []byte {
	b = append(b, `{"displayId":`...)
	b = deskAppendString(b, t.displayID)
	b = append(b, `,"instrumentId":`...)
	b = deskAppendString(b, instrumentID)
	b = append(b, `,"symbol":`...)
	b = deskAppendString(b, t.symbol)
	b = append(b, `,"amount":"`...)
	b = append(b, t.amount.String()...)
	b = append(b, `","debitFrom":`...)
	b = deskAppendString(b, t.debitFrom)
	b = append(b, `,"creditTo":`...)
	b = deskAppendString(b, t.creditTo)
	b = append(b, `,"notes":`...)
	b = deskAppendOptString(b, t.notes)
	b = append(b, `,"createdAt":"`...)
	b = t.createdAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","idemKey":`...)
	b = deskAppendOptString(b, t.idemKey)
	b = append(b, `,"type":`...)
	b = deskAppendOptString(b, t.typ)
	b = append(b, `,"tradeDisplayId":`...)
	b = deskAppendOptString(b, t.tradeDisplayID)
	return append(b, '}')
}

func (d *Desk) appendSeededTx(b []byte, sg txSeg, g int64, ids map[string]string) []byte {
	sym, units, credit := deskSeededFields(sg, g)
	b = append(b, `{"displayId":"`...)
	b = append(b, d.seedPrefix...)
	b = deskAppendHex12(b, uint64(g))
	b = append(b, `","instrumentId":"`...)
	b = append(b, ids[sym]...)
	b = append(b, `","symbol":`...)
	b = deskAppendString(b, sym)
	b = append(b, `,"amount":"0.00000`...)
	b = append(b, byte('0'+units/100), byte('0'+units/10%10), byte('0'+units%10))
	if credit {
		b = append(b, `","debitFrom":"`...)
		b = append(b, d.externalID...)
		b = append(b, `","creditTo":"`...)
		b = append(b, d.cfg.AccountID...)
		b = append(b, `","notes":"Deposit","createdAt":"`...)
	} else {
		b = append(b, `","debitFrom":"`...)
		b = append(b, d.cfg.AccountID...)
		b = append(b, `","creditTo":"`...)
		b = append(b, d.feeID...)
		b = append(b, `","notes":"Fee","createdAt":"`...)
	}
	b = append(b, sg.seedAt...)
	b = append(b, `","idemKey":"seed_`...)
	b = strconv.AppendInt(b, g, 10)
	if credit {
		b = append(b, `","type":"deposit","tradeDisplayId":null}`...)
	} else {
		b = append(b, `","type":"fee","tradeDisplayId":null}`...)
	}
	return b
}

func deskAppendHex12(b []byte, v uint64) []byte {
	const digits = "0123456789abcdef"
	for i := 11; i >= 0; i-- {
		b = append(b, digits[(v>>(4*uint(i)))&0xf])
	}
	return b
}

// deskAppendString appends s as a JSON string; plain ASCII takes a fast path.
func deskAppendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func deskAppendOptString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return deskAppendString(b, s)
}

type withdrawalJSON struct {
	ID           string  `json:"id"`
	CreatedAt    string  `json:"createdAt"`
	Symbol       string  `json:"symbol"`
	Amount       string  `json:"amount"`
	TransferType string  `json:"transferType"`
	Status       string  `json:"status"`
	Metadata     any     `json:"metadata"`
	UpdatedAt    string  `json:"updatedAt"`
	Network      string  `json:"network"`
	Address      string  `json:"address"`
	Error        *string `json:"error"`
	NetworkTxID  *string `json:"networkTxId"`
}

func (d *Desk) handleWithdrawals(w http.ResponseWriter, r *http.Request) {
	if !d.accountOK(w, r) {
		return
	}
	d.mu.Lock()
	d.advanceLocked()
	out := make([]withdrawalJSON, 0, len(d.withdrawals))
	for i := len(d.withdrawals) - 1; i >= 0; i-- {
		wd := d.withdrawals[i]
		out = append(out, withdrawalJSON{
			ID: wd.ID, CreatedAt: deskTime(wd.CreatedAt), Symbol: wd.Symbol, Amount: wd.Amount.String(),
			TransferType: "withdrawal", Status: wd.Status, UpdatedAt: deskTime(wd.updatedAt),
			Network: wd.Network, Address: wd.Address, Error: deskOptString(wd.Error), NetworkTxID: deskOptString(wd.txID),
		})
	}
	d.mu.Unlock()
	deskJSON(w, http.StatusOK, out)
}

type withdrawalBody struct {
	InstrumentSymbol string `json:"instrumentSymbol"`
	Amount           string `json:"amount"`
	Network          string `json:"network"`
	Address          string `json:"address"`
}

func (d *Desk) handleCreateWithdrawal(w http.ResponseWriter, r *http.Request) {
	if !d.accountOK(w, r) {
		return
	}
	var body withdrawalBody
	if err := json.NewDecoder(io.LimitReader(r.Body, deskMaxBody)).Decode(&body); err != nil {
		deskMessage(w, http.StatusBadRequest, "invalid body: "+err.Error())
		return
	}
	amount, err := decimal.NewFromString(body.Amount)
	d.mu.Lock()
	d.advanceLocked()
	msg := ""
	switch {
	case !d.knownLocked(body.InstrumentSymbol):
		msg = "unknown instrument symbol"
	case err != nil || !amount.IsPositive():
		msg = "amount must be a positive decimal string"
	case body.Network == "":
		msg = "network is required"
	case d.networks[body.InstrumentSymbol] != "" && d.networks[body.InstrumentSymbol] != body.Network:
		msg = "unsupported network for " + body.InstrumentSymbol
	case strings.TrimSpace(body.Address) == "":
		msg = "address is required"
	case d.balances[body.InstrumentSymbol].LessThan(amount):
		msg = "insufficient balance"
	}
	if msg != "" {
		d.mu.Unlock()
		deskMessage(w, http.StatusBadRequest, msg)
		return
	}
	f := d.faults
	failMsg := ""
	if len(d.failWd) > 0 {
		failMsg, d.failWd = d.failWd[0], d.failWd[1:]
	} else if f.WithdrawFail > 0 && d.rngFault.Float64() < f.WithdrawFail {
		failMsg = "simulated withdrawal failure"
	}
	address := body.Address
	if len(d.substWd) > 0 {
		sub := d.substWd[0]
		d.substWd = d.substWd[1:]
		if sub.Address != "" {
			address = sub.Address
		}
		if !sub.Amount.IsZero() {
			amount = sub.Amount
		}
	} else if f.WithdrawSubstitute > 0 && d.rngFault.Float64() < f.WithdrawSubstitute {
		address = SubstituteAddress
	}
	wd := d.withdrawLocked(body.InstrumentSymbol, amount, body.Network, address, failMsg, d.now())
	bh := false
	if d.blackholeWd > 0 {
		d.blackholeWd--
		bh = true
	} else if f.WithdrawBlackhole > 0 && d.rngFault.Float64() < f.WithdrawBlackhole {
		bh = true
	}
	d.mu.Unlock()
	if bh {
		d.blackhole(r)
	}
	deskJSON(w, http.StatusOK, map[string]string{"id": wd.ID})
}

// handleAccept records the raw body, checks the quote as received and books
// the trade. A blackholed accept takes effect and then never answers.
func (d *Desk) handleAccept(w http.ResponseWriter, r *http.Request) {
	received := d.lat.clock()
	if !d.accountOK(w, r) {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, deskMaxBody))
	if err != nil {
		deskMessage(w, http.StatusBadRequest, "read body")
		return
	}
	d.lat.acceptReceived(body, received)
	d.mu.Lock()
	d.acceptBodies = append(d.acceptBodies, body)
	status, msg := d.acceptLocked(body)
	bh := false
	if d.blackholeAcc > 0 {
		d.blackholeAcc--
		bh = true
	} else if d.faults.AcceptBlackhole > 0 && d.rngFault.Float64() < d.faults.AcceptBlackhole {
		bh = true
	}
	d.mu.Unlock()
	if bh {
		d.blackhole(r)
	}
	if status != http.StatusOK {
		deskMessage(w, status, msg)
		return
	}
	deskJSON(w, http.StatusOK, struct{}{})
}

type acceptQuote struct {
	QuoteID   string          `json:"quoteId"`
	AccountID string          `json:"accountId"`
	FromAsset string          `json:"fromAsset"`
	ToAsset   string          `json:"toAsset"`
	FromQty   json.RawMessage `json:"fromAssetQuantity"`
	ToQty     json.RawMessage `json:"toAssetQuantity"`
	Expiry    json.RawMessage `json:"expiryTime"`
	Signature string          `json:"signature"`
}

func (d *Desk) acceptLocked(body []byte) (int, string) {
	var env struct {
		Quote json.RawMessage `json:"quote"`
	}
	if err := json.Unmarshal(body, &env); err != nil || len(env.Quote) == 0 || bytes.Equal(env.Quote, []byte("null")) {
		return http.StatusBadRequest, `body must be {"quote": {...}}`
	}
	var q acceptQuote
	if err := json.Unmarshal(env.Quote, &q); err != nil {
		return http.StatusBadRequest, "invalid quote: " + err.Error()
	}
	if q.QuoteID == "" || q.AccountID == "" || q.FromAsset == "" || q.ToAsset == "" || q.Signature == "" {
		return http.StatusBadRequest, "quote is incomplete"
	}
	// Quantities and expiry must be JSON numbers; their literal text is what
	// the signature covers.
	for _, raw := range []json.RawMessage{q.FromQty, q.ToQty, q.Expiry} {
		if len(raw) == 0 || raw[0] == '"' || raw[0] == 'n' {
			return http.StatusBadRequest, "quantities and expiryTime must be JSON numbers"
		}
	}
	want := d.sign(wireQuote{quoteID: q.QuoteID, accountID: q.AccountID, from: q.FromAsset, to: q.ToAsset,
		fromQty: string(q.FromQty), toQty: string(q.ToQty), expiry: string(q.Expiry)})
	got, err := hex.DecodeString(q.Signature)
	wantRaw, _ := hex.DecodeString(want)
	if err != nil || !hmac.Equal(got, wantRaw) {
		return http.StatusBadRequest, "invalid signature"
	}
	if q.AccountID != d.cfg.AccountID {
		return http.StatusBadRequest, "quote is for another account"
	}
	if d.usedQuotes[q.QuoteID] {
		return http.StatusConflict, "quote already used"
	}
	exp, err := strconv.ParseInt(string(q.Expiry), 10, 64)
	if err != nil {
		return http.StatusBadRequest, "invalid expiryTime"
	}
	if d.now().UnixMicro() >= exp {
		return http.StatusBadRequest, "quote expired"
	}
	fromQ, err1 := decimal.NewFromString(string(q.FromQty))
	toQ, err2 := decimal.NewFromString(string(q.ToQty))
	if err1 != nil || err2 != nil || !fromQ.IsPositive() || !toQ.IsPositive() {
		return http.StatusBadRequest, "invalid quantities"
	}
	if d.balances[q.ToAsset].LessThan(toQ) {
		return http.StatusBadRequest, "insufficient balance"
	}
	d.usedQuotes[q.QuoteID] = true
	d.tradeLocked(q.QuoteID, q.FromAsset, fromQ, q.ToAsset, toQ, d.now())
	return http.StatusOK, ""
}

func (d *Desk) supportedNetworkLocked(nw string) bool {
	if nw == "" {
		return false
	}
	for _, n := range d.networks {
		if n == nw {
			return true
		}
	}
	return false
}

// depositAddress is a deterministic address for (label, network).
func (d *Desk) depositAddress(label, network string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "astra-sim/%d/address/%s/%s/%s", d.cfg.Seed, d.cfg.AccountID, label, network))
	h := hex.EncodeToString(sum[:])
	switch network {
	case "bitcoin":
		return "bc1q" + h[:38]
	case "solana", "algorand", "stellar", "sui", "noble":
		return h[:44]
	default:
		return "0x" + h[:40]
	}
}

func (d *Desk) handleDepositAddress(w http.ResponseWriter, r *http.Request) {
	if !d.accountOK(w, r) {
		return
	}
	nw := r.URL.Query().Get("network")
	d.mu.Lock()
	ok := d.supportedNetworkLocked(nw)
	d.mu.Unlock()
	if !ok {
		deskMessage(w, http.StatusBadRequest, "unsupported network")
		return
	}
	deskJSON(w, http.StatusOK, map[string]string{"address": d.depositAddress("standard", nw)})
}

func (d *Desk) handleExpressDepositAddress(w http.ResponseWriter, r *http.Request) {
	coin, nw := r.URL.Query().Get("coin"), r.URL.Query().Get("network")
	d.mu.Lock()
	msg := ""
	switch {
	case !d.knownLocked(coin):
		msg = "unknown coin"
	case !d.supportedNetworkLocked(nw):
		msg = "unsupported network"
	case d.networks[coin] != "" && d.networks[coin] != nw:
		msg = "unsupported network for " + coin
	}
	d.mu.Unlock()
	if msg != "" {
		deskMessage(w, http.StatusBadRequest, msg)
		return
	}
	deskJSON(w, http.StatusOK, map[string]string{"address": d.depositAddress("express/"+coin, nw)})
}
