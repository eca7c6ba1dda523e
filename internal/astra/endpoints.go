package astra

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// path is the URL path of endpoint for the client's account.
func (c *Client) path(endpoint string) string {
	return strings.Replace(endpoint, "{account_id}", url.PathEscape(c.opts.AccountID), 1)
}

type wireBalance struct {
	InstrumentID string   `json:"instrumentId"`
	Symbol       string   `json:"symbol"`
	Amount       jsonText `json:"amount"`
	Network      string   `json:"network"`
	Address      string   `json:"address"`
}

// Balances fetches the account's balances, sorted by symbol then
// instrument id. An entry whose amount does not parse fails the call.
func (c *Client) Balances(ctx context.Context) ([]Balance, error) {
	var out []Balance
	read := func(body *bodyReader) error {
		out = out[:0]
		dec := json.NewDecoder(body)
		body.limit = maxRecordBytes
		if err := openDelim(dec, epBalances, '{'); err != nil {
			return err
		}
		n := 0
		for ; dec.More(); n++ {
			body.mark()
			where := fmt.Sprintf("balance at index %d", n)
			tok, err := dec.Token()
			if err != nil {
				return streamErr(epBalances, where, err)
			}
			key, _ := tok.(string)
			if n >= maxBalances {
				return &permanent{fmt.Errorf("astra %s: more than %d balances", epBalances, maxBalances)}
			}
			var w wireBalance
			if err := dec.Decode(&w); err != nil {
				if decodeFault(err) {
					return &permanent{&recordError{Endpoint: epBalances, Index: n, ID: key, Err: err}}
				}
				return streamErr(epBalances, where, err)
			}
			b, err := convBalance(key, &w)
			if err != nil {
				return &permanent{&recordError{Endpoint: epBalances, Index: n, ID: key, Err: err}}
			}
			out = append(out, b)
		}
		return closeDelim(dec, epBalances, n)
	}
	if err := c.get(ctx, epBalances, c.path(epBalances), read, func() bool { return true }); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Balance) int {
		return cmp.Or(strings.Compare(a.Symbol, b.Symbol), strings.Compare(a.InstrumentID, b.InstrumentID))
	})
	return out, nil
}

func convBalance(key string, w *wireBalance) (Balance, error) {
	id := w.InstrumentID
	switch {
	case id == "":
		id = key
	case key != id:
		return Balance{}, fmt.Errorf("instrumentId %q differs from its key", id)
	}
	if id == "" {
		return Balance{}, errors.New("instrument id is missing")
	}
	amount, err := decimalField("amount", w.Amount)
	if err != nil {
		return Balance{}, err
	}
	return Balance{InstrumentID: id, Symbol: w.Symbol, Amount: amount, Network: w.Network, Address: w.Address}, nil
}

type wireTransfer struct {
	ID           jsonText        `json:"id"`
	CreatedAt    string          `json:"createdAt"`
	Symbol       string          `json:"symbol"`
	Amount       jsonText        `json:"amount"`
	TransferType string          `json:"transferType"`
	Metadata     json.RawMessage `json:"metadata"`
	UpdatedAt    string          `json:"updatedAt"`
}

// Transfers streams the account's deposits and withdrawals, newest first,
// calling fn for each; fn's error stops the stream and is returned.
func (c *Client) Transfers(ctx context.Context, fn func(Transfer) error) error {
	return streamList(c, ctx, epTransfers, func(w *wireTransfer) string { return w.ID.s }, convTransfer, fn)
}

func convTransfer(w *wireTransfer) (Transfer, error) {
	var t Transfer
	var err error
	if t.ID, err = idField("id", w.ID, true); err != nil {
		return t, err
	}
	if t.Amount, err = decimalField("amount", w.Amount); err != nil {
		return t, err
	}
	if t.CreatedAt, err = timeField("createdAt", w.CreatedAt, true); err != nil {
		return t, err
	}
	if t.UpdatedAt, err = timeField("updatedAt", w.UpdatedAt, false); err != nil {
		return t, err
	}
	t.Symbol, t.TransferType, t.Metadata = w.Symbol, w.TransferType, rawObject(w.Metadata)
	if t.WithdrawalID, err = withdrawalID(t.Metadata); err != nil {
		return t, err
	}
	return t, nil
}

// withdrawalID is metadata.withdrawal_id, "" when metadata is not an object
// or lacks it.
func withdrawalID(meta json.RawMessage) (string, error) {
	if len(meta) == 0 || meta[0] != '{' {
		return "", nil
	}
	var m struct {
		WithdrawalID jsonText `json:"withdrawal_id"`
	}
	if err := json.Unmarshal(meta, &m); err != nil {
		return "", fmt.Errorf("metadata: %w", err)
	}
	return idField("metadata.withdrawal_id", m.WithdrawalID, false)
}

type wireConvert struct {
	DisplayID        string   `json:"displayId"`
	ID               jsonText `json:"id"`
	TakerAccountID   string   `json:"takerAccountId"`
	MakerAccountID   string   `json:"makerAccountId"`
	BuyInstrumentID  string   `json:"buyInstrumentId"`
	BuyQuantity      jsonText `json:"buyQuantity"`
	BuyTxnID         jsonText `json:"buyTxnId"`
	SellInstrumentID string   `json:"sellInstrumentId"`
	SellQuantity     jsonText `json:"sellQuantity"`
	SellTxnID        jsonText `json:"sellTxnId"`
	Category         string   `json:"category"`
	Notes            string   `json:"notes"`
	CreatedAt        string   `json:"createdAt"`
	UpdatedAt        string   `json:"updatedAt"`
	BuySymbol        string   `json:"buySymbol"`
	SellSymbol       string   `json:"sellSymbol"`
}

// Converts streams the account's OTC trades, newest first, calling fn for
// each; fn's error stops the stream and is returned.
func (c *Client) Converts(ctx context.Context, fn func(Convert) error) error {
	return streamList(c, ctx, epConverts, func(w *wireConvert) string { return cmp.Or(w.DisplayID, w.ID.s) }, convConvert, fn)
}

func convConvert(w *wireConvert) (Convert, error) {
	v := Convert{
		DisplayID: w.DisplayID, TakerAccountID: w.TakerAccountID, MakerAccountID: w.MakerAccountID,
		BuyInstrumentID: w.BuyInstrumentID, SellInstrumentID: w.SellInstrumentID,
		Category: w.Category, Notes: w.Notes, BuySymbol: w.BuySymbol, SellSymbol: w.SellSymbol,
	}
	id, err := intField("id", w.ID)
	if err != nil {
		return v, err
	}
	if id == nil {
		return v, errors.New("id is missing")
	}
	v.ID = *id
	if v.BuyQuantity, err = decimalField("buyQuantity", w.BuyQuantity); err != nil {
		return v, err
	}
	if v.SellQuantity, err = decimalField("sellQuantity", w.SellQuantity); err != nil {
		return v, err
	}
	if v.BuyTxnID, err = intField("buyTxnId", w.BuyTxnID); err != nil {
		return v, err
	}
	if v.SellTxnID, err = intField("sellTxnId", w.SellTxnID); err != nil {
		return v, err
	}
	if v.CreatedAt, err = timeField("createdAt", w.CreatedAt, true); err != nil {
		return v, err
	}
	if v.UpdatedAt, err = timeField("updatedAt", w.UpdatedAt, false); err != nil {
		return v, err
	}
	return v, nil
}

type wireTransaction struct {
	DisplayID      string   `json:"displayId"`
	InstrumentID   string   `json:"instrumentId"`
	Symbol         string   `json:"symbol"`
	Amount         jsonText `json:"amount"`
	DebitFrom      string   `json:"debitFrom"`
	CreditTo       string   `json:"creditTo"`
	Notes          string   `json:"notes"`
	CreatedAt      string   `json:"createdAt"`
	IdemKey        string   `json:"idemKey"`
	Type           string   `json:"type"`
	TradeDisplayID string   `json:"tradeDisplayId"`
}

// Transactions streams the account's raw ledger, newest first, calling fn
// for each entry; fn's error stops the stream and is returned. Memory stays
// at one record however long the history is.
func (c *Client) Transactions(ctx context.Context, fn func(Transaction) error) error {
	return streamList(c, ctx, epTransactions, func(w *wireTransaction) string { return w.DisplayID }, convTransaction, fn)
}

func convTransaction(w *wireTransaction) (Transaction, error) {
	t := Transaction{
		DisplayID: w.DisplayID, InstrumentID: w.InstrumentID, Symbol: w.Symbol,
		DebitFrom: w.DebitFrom, CreditTo: w.CreditTo, Notes: w.Notes,
		IdemKey: w.IdemKey, Type: w.Type, TradeDisplayID: w.TradeDisplayID,
	}
	var err error
	if t.Amount, err = decimalField("amount", w.Amount); err != nil {
		return t, err
	}
	if t.CreatedAt, err = timeField("createdAt", w.CreatedAt, true); err != nil {
		return t, err
	}
	return t, nil
}

type wireWithdrawal struct {
	ID           jsonText        `json:"id"`
	CreatedAt    string          `json:"createdAt"`
	Symbol       string          `json:"symbol"`
	Amount       jsonText        `json:"amount"`
	TransferType string          `json:"transferType"`
	Status       string          `json:"status"`
	Metadata     json.RawMessage `json:"metadata"`
	UpdatedAt    string          `json:"updatedAt"`
	Network      string          `json:"network"`
	Address      string          `json:"address"`
	Error        string          `json:"error"`
	NetworkTxID  string          `json:"networkTxId"`
}

// WithdrawalRequests streams the account's withdrawal requests, newest
// first, calling fn for each; fn's error stops the stream and is returned.
func (c *Client) WithdrawalRequests(ctx context.Context, fn func(WithdrawalRequest) error) error {
	return streamList(c, ctx, epWithdrawals, func(w *wireWithdrawal) string { return w.ID.s }, convWithdrawal, fn)
}

func convWithdrawal(w *wireWithdrawal) (WithdrawalRequest, error) {
	r := WithdrawalRequest{
		Symbol: w.Symbol, TransferType: w.TransferType, Status: w.Status, Metadata: rawObject(w.Metadata),
		Network: w.Network, Address: w.Address, Error: w.Error, NetworkTxID: w.NetworkTxID,
	}
	var err error
	if r.ID, err = idField("id", w.ID, true); err != nil {
		return r, err
	}
	if r.Amount, err = decimalField("amount", w.Amount); err != nil {
		return r, err
	}
	if r.Status == "" {
		return r, errors.New("status is missing")
	}
	if r.CreatedAt, err = timeField("createdAt", w.CreatedAt, true); err != nil {
		return r, err
	}
	if r.UpdatedAt, err = timeField("updatedAt", w.UpdatedAt, false); err != nil {
		return r, err
	}
	return r, nil
}

// CreateWithdrawal posts a withdrawal request and returns its id. It is sent
// once, never retried. A 4xx is an *APIError: the desk refused it. When the
// outcome is unknown (5xx, timeout, reset, or a 2xx without a readable id),
// errors.Is(err, ErrUnknownOutcome) holds: the request may exist, and the
// caller settles it by reading WithdrawalRequests, never by sending again.
func (c *Client) CreateWithdrawal(ctx context.Context, w NewWithdrawal) (string, error) {
	switch {
	case w.InstrumentSymbol == "" || w.Network == "" || w.Address == "":
		return "", errors.New("astra: withdrawal needs a symbol, a network and an address")
	case !w.Amount.IsPositive():
		return "", fmt.Errorf("astra: withdrawal amount %s is not positive", w.Amount)
	}
	body, err := json.Marshal(struct {
		InstrumentSymbol string `json:"instrumentSymbol"`
		Amount           string `json:"amount"`
		Network          string `json:"network"`
		Address          string `json:"address"`
	}{w.InstrumentSymbol, w.Amount.String(), w.Network, w.Address})
	if err != nil {
		return "", fmt.Errorf("astra: encode withdrawal: %w", err)
	}
	raw, readErr, err := c.post(ctx, epCreateWithdrawal, c.path(epCreateWithdrawal), body)
	if err != nil {
		return "", err
	}
	if readErr != nil {
		return "", c.scrub(fmt.Errorf("%w (%w)", readErr, ErrUnknownOutcome))
	}
	var ans struct {
		ID jsonText `json:"id"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil || (ans.ID.kind != textString && ans.ID.kind != textNumber) || ans.ID.s == "" {
		return "", fmt.Errorf("astra POST %s: success without a withdrawal id in %q (%w)",
			epCreateWithdrawal, c.redact(truncate(string(raw))), ErrUnknownOutcome)
	}
	return ans.ID.s, nil
}

// DepositAddress fetches the account's deposit address on network.
func (c *Client) DepositAddress(ctx context.Context, network string) (string, error) {
	if network == "" {
		return "", errors.New("astra: deposit address needs a network")
	}
	target := c.path(epDepositAddress) + "?" + url.Values{"network": {network}}.Encode()
	return c.address(ctx, epDepositAddress, target)
}

// ExpressDepositAddress fetches the express deposit address for coin on
// network.
func (c *Client) ExpressDepositAddress(ctx context.Context, coin, network string) (string, error) {
	if coin == "" || network == "" {
		return "", errors.New("astra: express deposit address needs a coin and a network")
	}
	target := epExpressDeposit + "?" + url.Values{"coin": {coin}, "network": {network}}.Encode()
	return c.address(ctx, epExpressDeposit, target)
}

// address GETs an {"address": "..."} answer.
func (c *Client) address(ctx context.Context, endpoint, target string) (string, error) {
	var addr string
	read := func(body *bodyReader) error {
		raw, err := body.readAll(maxObjectBody)
		if err != nil {
			if errors.Is(err, errTooLarge) {
				return &permanent{fmt.Errorf("astra %s: %w", endpoint, err)}
			}
			return fmt.Errorf("astra %s: reading response: %w", endpoint, err)
		}
		var ans struct {
			Address *string `json:"address"`
		}
		if err := json.Unmarshal(raw, &ans); err != nil {
			return &permanent{fmt.Errorf("astra %s: response does not decode: %w", endpoint, err)}
		}
		if ans.Address == nil || *ans.Address == "" {
			return &permanent{fmt.Errorf("astra %s: response has no address", endpoint)}
		}
		addr = *ans.Address
		return nil
	}
	if err := c.get(ctx, endpoint, target, read, func() bool { return true }); err != nil {
		return "", err
	}
	return addr, nil
}

// AcceptQuote accepts a quote, sending rawQuote back byte for byte as it was
// received (SPEC 2: the signature covers it): the body is exactly
// `{"quote":` + rawQuote + `}`. It is sent once, never retried. A 4xx is an
// *APIError (the desk refused the trade); when the outcome is unknown (5xx,
// timeout, reset), errors.Is(err, ErrUnknownOutcome) holds and the trade is
// settled later against Converts.
func (c *Client) AcceptQuote(ctx context.Context, rawQuote []byte) error {
	trimmed := bytes.TrimLeft(rawQuote, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(rawQuote) {
		return errors.New("astra: accept needs the quote as a raw JSON object")
	}
	body := make([]byte, 0, len(`{"quote":}`)+len(rawQuote))
	body = append(body, `{"quote":`...)
	body = append(body, rawQuote...)
	body = append(body, '}')
	_, _, err := c.post(ctx, epAcceptQuote, c.path(epAcceptQuote), body)
	return err
}

// Member readers of the wire records (see object.go).

var balanceNames = []string{"instrumentId", "symbol", "amount", "network", "address"}

func (w *wireBalance) UnmarshalJSON(b []byte) error { return readObject(b, balanceNames, w) }

func (w *wireBalance) set(name string, v []byte) (err error) {
	switch name {
	case "instrumentId":
		w.InstrumentID, err = stringValue(name, v)
	case "symbol":
		w.Symbol, err = stringValue(name, v)
	case "amount":
		w.Amount = text(v)
	case "network":
		w.Network, err = stringValue(name, v)
	case "address":
		w.Address, err = stringValue(name, v)
	}
	return err
}

var transferNames = []string{"id", "createdAt", "symbol", "amount", "transferType", "metadata", "updatedAt"}

func (w *wireTransfer) UnmarshalJSON(b []byte) error { return readObject(b, transferNames, w) }

func (w *wireTransfer) set(name string, v []byte) (err error) {
	switch name {
	case "id":
		w.ID = text(v)
	case "createdAt":
		w.CreatedAt, err = stringValue(name, v)
	case "symbol":
		w.Symbol, err = stringValue(name, v)
	case "amount":
		w.Amount = text(v)
	case "transferType":
		w.TransferType, err = stringValue(name, v)
	case "metadata":
		w.Metadata = rawValue(v)
	case "updatedAt":
		w.UpdatedAt, err = stringValue(name, v)
	}
	return err
}

var convertNames = []string{"displayId", "id", "takerAccountId", "makerAccountId", "buyInstrumentId", "buyQuantity",
	"buyTxnId", "sellInstrumentId", "sellQuantity", "sellTxnId", "category", "notes", "createdAt", "updatedAt",
	"buySymbol", "sellSymbol"}

func (w *wireConvert) UnmarshalJSON(b []byte) error { return readObject(b, convertNames, w) }

func (w *wireConvert) set(name string, v []byte) (err error) {
	switch name {
	case "displayId":
		w.DisplayID, err = stringValue(name, v)
	case "id":
		w.ID = text(v)
	case "takerAccountId":
		w.TakerAccountID, err = stringValue(name, v)
	case "makerAccountId":
		w.MakerAccountID, err = stringValue(name, v)
	case "buyInstrumentId":
		w.BuyInstrumentID, err = stringValue(name, v)
	case "buyQuantity":
		w.BuyQuantity = text(v)
	case "buyTxnId":
		w.BuyTxnID = text(v)
	case "sellInstrumentId":
		w.SellInstrumentID, err = stringValue(name, v)
	case "sellQuantity":
		w.SellQuantity = text(v)
	case "sellTxnId":
		w.SellTxnID = text(v)
	case "category":
		w.Category, err = stringValue(name, v)
	case "notes":
		w.Notes, err = stringValue(name, v)
	case "createdAt":
		w.CreatedAt, err = stringValue(name, v)
	case "updatedAt":
		w.UpdatedAt, err = stringValue(name, v)
	case "buySymbol":
		w.BuySymbol, err = stringValue(name, v)
	case "sellSymbol":
		w.SellSymbol, err = stringValue(name, v)
	}
	return err
}

var transactionNames = []string{"displayId", "instrumentId", "symbol", "amount", "debitFrom", "creditTo", "notes",
	"createdAt", "idemKey", "type", "tradeDisplayId"}

func (w *wireTransaction) UnmarshalJSON(b []byte) error { return readObject(b, transactionNames, w) }

func (w *wireTransaction) set(name string, v []byte) (err error) {
	switch name {
	case "displayId":
		w.DisplayID, err = stringValue(name, v)
	case "instrumentId":
		w.InstrumentID, err = stringValue(name, v)
	case "symbol":
		w.Symbol, err = stringValue(name, v)
	case "amount":
		w.Amount = text(v)
	case "debitFrom":
		w.DebitFrom, err = stringValue(name, v)
	case "creditTo":
		w.CreditTo, err = stringValue(name, v)
	case "notes":
		w.Notes, err = stringValue(name, v)
	case "createdAt":
		w.CreatedAt, err = stringValue(name, v)
	case "idemKey":
		w.IdemKey, err = stringValue(name, v)
	case "type":
		w.Type, err = stringValue(name, v)
	case "tradeDisplayId":
		w.TradeDisplayID, err = stringValue(name, v)
	}
	return err
}

var withdrawalNames = []string{"id", "createdAt", "symbol", "amount", "transferType", "status", "metadata",
	"updatedAt", "network", "address", "error", "networkTxId"}

func (w *wireWithdrawal) UnmarshalJSON(b []byte) error { return readObject(b, withdrawalNames, w) }

func (w *wireWithdrawal) set(name string, v []byte) (err error) {
	switch name {
	case "id":
		w.ID = text(v)
	case "createdAt":
		w.CreatedAt, err = stringValue(name, v)
	case "symbol":
		w.Symbol, err = stringValue(name, v)
	case "amount":
		w.Amount = text(v)
	case "transferType":
		w.TransferType, err = stringValue(name, v)
	case "status":
		w.Status, err = stringValue(name, v)
	case "metadata":
		w.Metadata = rawValue(v)
	case "updatedAt":
		w.UpdatedAt, err = stringValue(name, v)
	case "network":
		w.Network, err = stringValue(name, v)
	case "address":
		w.Address, err = stringValue(name, v)
	case "error":
		w.Error, err = stringValue(name, v)
	case "networkTxId":
		w.NetworkTxID, err = stringValue(name, v)
	}
	return err
}
