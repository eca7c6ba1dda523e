package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/shopspring/decimal"
)

// controlRequest is the body of every POST on the /_sim/ test API; each route
// reads the fields it needs. Decimals may be JSON strings or numbers.
type controlRequest struct {
	Symbol     string          `json:"symbol"`
	Amount     decimal.Decimal `json:"amount"`
	Delta      decimal.Decimal `json:"delta"`
	Network    string          `json:"network"`
	Address    string          `json:"address"`
	BuySymbol  string          `json:"buySymbol"`
	BuyQty     decimal.Decimal `json:"buyQty"`
	SellSymbol string          `json:"sellSymbol"`
	SellQty    decimal.Decimal `json:"sellQty"`
	Pair       string          `json:"pair"`
	Price      decimal.Decimal `json:"price"`
	Bps        decimal.Decimal `json:"bps"`
	N          int             `json:"n"`
	Status     int             `json:"status"`
	Message    string          `json:"message"`
	Duration   string          `json:"duration"`
}

// controlRoutes serves the desk's controls under /_sim/ so a standalone
// astra-sim can be driven from outside. They need no API key: the simulator
// listens on loopback.
func (d *Desk) controlRoutes(mux *http.ServeMux) {
	post := func(path string, f func(controlRequest) (any, string)) {
		mux.HandleFunc("POST /_sim/"+path, func(w http.ResponseWriter, r *http.Request) {
			var req controlRequest
			body, err := io.ReadAll(io.LimitReader(r.Body, deskMaxBody))
			if err == nil && len(body) > 0 {
				err = json.Unmarshal(body, &req)
			}
			if err != nil {
				deskMessage(w, http.StatusBadRequest, "invalid body: "+err.Error())
				return
			}
			out, msg := f(req)
			if msg != "" {
				deskMessage(w, http.StatusBadRequest, msg)
				return
			}
			if out == nil {
				out = struct{}{}
			}
			deskJSON(w, http.StatusOK, out)
		})
	}
	mux.HandleFunc("GET /_sim/state", func(w http.ResponseWriter, r *http.Request) { deskJSON(w, http.StatusOK, d.state()) })
	mux.HandleFunc("GET /_sim/faults", func(w http.ResponseWriter, r *http.Request) { deskJSON(w, http.StatusOK, d.CurrentFaults()) })
	mux.HandleFunc("POST /_sim/faults", func(w http.ResponseWriter, r *http.Request) {
		var f Faults
		if err := json.NewDecoder(io.LimitReader(r.Body, deskMaxBody)).Decode(&f); err != nil {
			deskMessage(w, http.StatusBadRequest, "invalid faults: "+err.Error())
			return
		}
		d.SetFaults(f)
		deskJSON(w, http.StatusOK, f)
	})
	needSymbolAmount := func(q controlRequest) string {
		if q.Symbol == "" || !q.Amount.IsPositive() {
			return "symbol and a positive amount are required"
		}
		return ""
	}
	post("deposit", func(q controlRequest) (any, string) {
		if msg := needSymbolAmount(q); msg != "" {
			return nil, msg
		}
		d.Deposit(q.Symbol, q.Amount)
		return nil, ""
	})
	post("fee", func(q controlRequest) (any, string) {
		if msg := needSymbolAmount(q); msg != "" {
			return nil, msg
		}
		d.Fee(q.Symbol, q.Amount)
		return nil, ""
	})
	post("external-withdrawal", func(q controlRequest) (any, string) {
		if msg := needSymbolAmount(q); msg != "" {
			return nil, msg
		}
		return map[string]string{"id": d.ExternalWithdrawal(q.Symbol, q.Amount, q.Network, q.Address)}, ""
	})
	post("external-trade", func(q controlRequest) (any, string) {
		if q.BuySymbol == "" || q.SellSymbol == "" || !q.BuyQty.IsPositive() || !q.SellQty.IsPositive() {
			return nil, "buySymbol, sellSymbol and positive buyQty, sellQty are required"
		}
		return map[string]string{"displayId": d.ExternalTrade(q.BuySymbol, q.BuyQty, q.SellSymbol, q.SellQty)}, ""
	})
	post("duplicate-transaction", func(controlRequest) (any, string) { d.DuplicateTransaction(); return nil, "" })
	post("drift-balance", func(q controlRequest) (any, string) {
		if q.Symbol == "" {
			return nil, "symbol is required"
		}
		d.DriftBalance(q.Symbol, q.Delta)
		return nil, ""
	})
	post("seed-history", func(q controlRequest) (any, string) { d.SeedHistory(q.N); return nil, "" })
	post("price", func(q controlRequest) (any, string) {
		if _, _, ok := deskSplitPair(q.Pair); !ok || !q.Price.IsPositive() {
			return nil, "pair BASE-QUOTE and a positive price are required"
		}
		d.SetPrice(q.Pair, q.Price)
		return nil, ""
	})
	post("volatility", func(q controlRequest) (any, string) { d.SetVolatility(q.Bps); return nil, "" })
	post("blackhole-accepts", func(q controlRequest) (any, string) { d.BlackholeNextAccepts(q.N); return nil, "" })
	post("blackhole-withdrawals", func(q controlRequest) (any, string) { d.BlackholeNextWithdrawals(q.N); return nil, "" })
	post("fail-withdrawals", func(q controlRequest) (any, string) { d.FailNextWithdrawals(q.N, q.Message); return nil, "" })
	post("substitute-withdrawals", func(q controlRequest) (any, string) {
		if q.N <= 0 || q.Amount.IsNegative() {
			return nil, "a positive n is required (and an amount, if any, must be positive)"
		}
		d.SubstituteNextWithdrawals(q.N, Substitution{Address: q.Address, Amount: q.Amount})
		return nil, ""
	})
	post("fail-rest", func(q controlRequest) (any, string) {
		if q.Status < 400 || q.Status > 599 {
			return nil, "status must be 4xx or 5xx"
		}
		d.FailNextREST(q.N, q.Status)
		return nil, ""
	})
	post("malform-frames", func(q controlRequest) (any, string) { d.MalformNextFrames(q.N); return nil, "" })
	post("drop-streams", func(controlRequest) (any, string) { d.DropStreams(); return nil, "" })
	post("stall-streams", func(q controlRequest) (any, string) {
		dur, err := time.ParseDuration(q.Duration)
		if err != nil {
			return nil, "duration: " + err.Error()
		}
		d.StallStreams(dur)
		return nil, ""
	})
}

type stateConvert struct {
	DisplayID  string `json:"displayId"`
	QuoteID    string `json:"quoteId"`
	BuySymbol  string `json:"buySymbol"`
	BuyQty     string `json:"buyQty"`
	SellSymbol string `json:"sellSymbol"`
	SellQty    string `json:"sellQty"`
	CreatedAt  string `json:"createdAt"`
}

type stateWithdrawal struct {
	ID        string `json:"id"`
	Symbol    string `json:"symbol"`
	Amount    string `json:"amount"`
	Network   string `json:"network"`
	Address   string `json:"address"`
	Status    string `json:"status"`
	Error     string `json:"error,omitempty"`
	CreatedAt string `json:"createdAt"`
}

type deskState struct {
	AccountID        string            `json:"accountId"`
	Balances         map[string]string `json:"balances"`
	Prices           map[string]string `json:"prices"`
	Converts         []stateConvert    `json:"converts"`
	Withdrawals      []stateWithdrawal `json:"withdrawals"`
	OpenStreams      int               `json:"openStreams"`
	QuotesSent       int               `json:"quotesSent"`
	Accepts          int               `json:"accepts"`
	TransactionCount int64             `json:"transactionCount"`
	Faults           Faults            `json:"faults"`
}

func (d *Desk) state() deskState {
	d.mu.Lock()
	d.advanceLocked()
	st := deskState{
		AccountID: d.cfg.AccountID, Balances: map[string]string{}, Prices: map[string]string{},
		Converts: []stateConvert{}, Withdrawals: []stateWithdrawal{},
		OpenStreams: len(d.streams), QuotesSent: d.quotesSent, Accepts: len(d.acceptBodies),
		TransactionCount: d.txCount, Faults: d.faults,
	}
	for s, b := range d.balances {
		st.Balances[s] = b.String()
	}
	for p, v := range d.prices {
		st.Prices[p] = v.String()
	}
	for _, c := range d.converts {
		st.Converts = append(st.Converts, stateConvert{DisplayID: c.DisplayID, QuoteID: c.QuoteID, BuySymbol: c.BuySymbol,
			BuyQty: c.BuyQty.String(), SellSymbol: c.SellSymbol, SellQty: c.SellQty.String(), CreatedAt: deskTime(c.CreatedAt)})
	}
	for _, w := range d.withdrawals {
		st.Withdrawals = append(st.Withdrawals, stateWithdrawal{ID: w.ID, Symbol: w.Symbol, Amount: w.Amount.String(),
			Network: w.Network, Address: w.Address, Status: w.Status, Error: w.Error, CreatedAt: deskTime(w.CreatedAt)})
	}
	d.mu.Unlock()
	return st
}
