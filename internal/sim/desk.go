// Package sim holds in-process simulators of the two upstream APIs treasuryd
// talks to: the Astra OTC desk (desk*.go) and the Astral location-proof index.
// They serve real HTTP and WebSocket on loopback, keep a ground truth that tests
// can read, and inject the faults treasuryd must survive. Everything random is
// drawn from a seeded generator, so a seed reproduces a run.
package sim

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/shopspring/decimal"
)

// DeskConfig configures a simulated Astra desk.
type DeskConfig struct {
	AccountID      string                     // required (UUID)
	APIKey         string                     // required: any other x-astra-api-key gets 401
	Seed           int64                      // all randomness from this seed (deterministic)
	Balances       map[string]decimal.Decimal // symbol -> starting amount, booked as deposits
	Prices         map[string]decimal.Decimal // "BTC-USD" -> USD per BTC; quoted either direction
	VolatilityBps  decimal.Decimal            // random walk step per quote (0: constant price)
	QuoteInterval  time.Duration              // default 1s
	QuotePhase     string                     // when a stream's quotes go: "" or "connect", "aligned", "spread" (see QuotePhases)
	QuoteTTL       time.Duration              // default 5s
	WithdrawalStep time.Duration              // time per status step, default 1s
	Networks       map[string]string          // symbol -> network (default BTC->bitcoin, ETH->ethereum)
	Now            func() time.Time           // default time.Now
}

// SimConvert is one booked trade, as the desk's ground truth holds it.
type SimConvert struct {
	DisplayID  string
	QuoteID    string // "" for ExternalTrade
	BuySymbol  string
	BuyQty     decimal.Decimal
	SellSymbol string
	SellQty    decimal.Decimal
	CreatedAt  time.Time
}

// SimWithdrawal is one withdrawal request, as the desk's ground truth holds it.
type SimWithdrawal struct {
	ID        string
	Symbol    string
	Amount    decimal.Decimal
	Network   string
	Address   string
	Status    string
	Error     string
	CreatedAt time.Time
}

// Withdrawal statuses, in lifecycle order.
const (
	wdPending    = "pending"
	wdProcessing = "processing"
	wdSent       = "sent"
	wdCompleted  = "completed"
	wdFailed     = "failed"
)

var wdLifecycle = [...]string{wdPending, wdProcessing, wdSent, wdCompleted}

// deskMaxBody bounds every request body the desk reads: real bodies are a few
// hundred bytes.
const deskMaxBody = 1 << 20

// txRec is one booked transaction. Records are immutable once appended.
type txRec struct {
	num            int64
	displayID      string
	symbol         string
	amount         decimal.Decimal
	debitFrom      string
	creditTo       string
	notes          string
	createdAt      time.Time
	idemKey        string
	typ            string
	tradeDisplayID string
}

// txSeg is a stretch of the transaction history: either one real record or a
// block of SeedHistory transactions generated on the fly from their index.
type txSeg struct {
	tx        *txRec
	seedFirst int64 // global seeded index of the block's first transaction
	seedCount int64
	seedAt    string   // RFC 3339 time of the block
	seedSyms  []string // symbols the block cycles through
}

type convertRec struct {
	SimConvert
	id        int64
	buyTxnID  int64
	sellTxnID int64
}

type withdrawalRec struct {
	SimWithdrawal
	updatedAt time.Time
	failMsg   string // planned failure: the request fails after processing
	txID      string // network tx id once sent
}

type transferRec struct {
	id        int64
	createdAt time.Time
	symbol    string
	amount    decimal.Decimal
	typ       string         // deposit or withdrawal
	wd        *withdrawalRec // withdrawals only
}

// Desk is a simulated Astra OTC desk for one account.
type Desk struct {
	cfg      DeskConfig
	now      func() time.Time
	signKey  []byte
	handler  http.Handler
	networks map[string]string

	// Stable identifiers derived from the seed.
	instrumentIDs map[string]string
	makerID       string // counterparty of trades
	externalID    string // source of deposits
	sinkID        string // destination of withdrawals
	feeID         string // destination of fees
	seedPrefix    string // display id prefix of SeedHistory transactions

	mu           sync.Mutex
	symbols      []string // sorted known symbols
	balances     map[string]decimal.Decimal
	prices       map[string]decimal.Decimal // by configured pair name
	volatility   decimal.Decimal
	rngQuote     *rand.Rand
	rngFault     *rand.Rand
	rngID        *rand.Rand
	segs         []txSeg
	txCount      int64
	seeded       int64
	converts     []*convertRec
	withdrawals  []*withdrawalRec
	open         []*withdrawalRec // not yet terminal
	transfers    []*transferRec
	usedQuotes   map[string]bool
	acceptBodies [][]byte
	faults       Faults
	blackholeAcc int
	blackholeWd  int
	failWd       []string
	substWd      []Substitution
	failREST     int
	failStatus   int
	malformNext  int
	inject       [][]byte // frames to send as they are, before any new quote
	streams      map[*deskStream]struct{}
	streamsSeen  int // streams connected so far: the n of QuotePhase "spread"
	quotesSent   int
	lat          acceptLatency // desk_latency.go

	closed   bool
	done     chan struct{}
	wg       sync.WaitGroup
	srv      *http.Server
	addr     string
	closeErr error
}

// QuotePhases are the DeskConfig.QuotePhase values: "" (the same as
// "connect"), "connect" (a stream's first quote when it connects, then every
// QuoteInterval), "aligned" (every quote at a multiple of QuoteInterval since
// the Unix epoch, so that every stream of every desk so configured sends
// together, whenever it connected) and "spread" (the n-th stream to connect
// at the same fixed offset within that grid on every desk, the offsets of
// successive streams spread over the interval by the golden ratio: a steady
// flow of quotes, and two desks that send the same flow at the same
// instants).
var QuotePhases = []string{"", "connect", "aligned", "spread"}

// NewDesk builds a desk. It does no I/O; Start serves it.
func NewDesk(cfg DeskConfig) (*Desk, error) {
	if cfg.AccountID == "" {
		return nil, errors.New("sim: desk account id is required")
	}
	if cfg.APIKey == "" {
		return nil, errors.New("sim: desk api key is required")
	}
	if !slices.Contains(QuotePhases, cfg.QuotePhase) {
		return nil, fmt.Errorf("sim: quote phase %q: want one of %s", cfg.QuotePhase, strings.Join(QuotePhases[1:], ", "))
	}
	if cfg.QuoteInterval <= 0 {
		cfg.QuoteInterval = time.Second
	}
	if cfg.QuoteTTL <= 0 {
		cfg.QuoteTTL = 5 * time.Second
	}
	if cfg.WithdrawalStep <= 0 {
		cfg.WithdrawalStep = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	d := &Desk{
		cfg:           cfg,
		now:           cfg.Now,
		networks:      map[string]string{"BTC": "bitcoin", "ETH": "ethereum"},
		instrumentIDs: map[string]string{},
		balances:      map[string]decimal.Decimal{},
		prices:        map[string]decimal.Decimal{},
		volatility:    cfg.VolatilityBps,
		rngQuote:      rand.New(rand.NewPCG(uint64(cfg.Seed), 1)),
		rngFault:      rand.New(rand.NewPCG(uint64(cfg.Seed), 2)),
		rngID:         rand.New(rand.NewPCG(uint64(cfg.Seed), 3)),
		usedQuotes:    map[string]bool{},
		streams:       map[*deskStream]struct{}{},
		done:          make(chan struct{}),
	}
	for sym, nw := range cfg.Networks {
		d.networks[sym] = nw
	}
	key := sha256.Sum256(fmt.Appendf(nil, "astra-sim/quote-signing/%d", cfg.Seed))
	d.signKey = key[:]
	d.makerID = d.derivedUUID("maker")
	d.externalID = d.derivedUUID("external")
	d.sinkID = d.derivedUUID("withdrawal-sink")
	d.feeID = d.derivedUUID("fees")
	d.seedPrefix = d.derivedUUID("seed-history")[:24]
	for pair, p := range cfg.Prices {
		base, quote, ok := deskSplitPair(pair)
		if !ok || !p.IsPositive() {
			return nil, fmt.Errorf("sim: price %q: want BASE-QUOTE with a positive price", pair)
		}
		d.prices[pair] = p
		d.addSymbolLocked(base)
		d.addSymbolLocked(quote)
	}
	syms := make([]string, 0, len(cfg.Balances))
	for s := range cfg.Balances {
		syms = append(syms, s)
	}
	sort.Strings(syms)
	now := d.now()
	for _, s := range syms {
		amt := cfg.Balances[s]
		if amt.IsNegative() {
			return nil, fmt.Errorf("sim: balance %s: negative", s)
		}
		d.addSymbolLocked(s)
		if amt.IsPositive() {
			d.depositLocked(s, amt, now)
		}
	}
	d.handler = d.routes()
	return d, nil
}

// derivedUUID is a UUID that depends only on the seed and the label.
func (d *Desk) derivedUUID(label string) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "astra-sim/%d/%s", d.cfg.Seed, label))
	return deskUUID(sum[:16])
}

func deskUUID(b []byte) string {
	var u [16]byte
	copy(u[:], b)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// newIDLocked draws a random UUID from the seeded id generator.
func (d *Desk) newIDLocked() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], d.rngID.Uint64())
	binary.LittleEndian.PutUint64(b[8:], d.rngID.Uint64())
	return deskUUID(b[:])
}

func (d *Desk) addSymbolLocked(s string) {
	if _, ok := d.instrumentIDs[s]; ok {
		return
	}
	d.instrumentIDs[s] = d.derivedUUID("instrument/" + s)
	if _, ok := d.balances[s]; !ok {
		d.balances[s] = decimal.Zero
	}
	d.symbols = append(d.symbols, s)
	sort.Strings(d.symbols)
}

func (d *Desk) knownLocked(s string) bool {
	_, ok := d.instrumentIDs[s]
	return ok
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves in the background.
func (d *Desk) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("sim: desk listen: %w", err)
	}
	d.mu.Lock()
	if d.closed || d.srv != nil {
		d.mu.Unlock()
		ln.Close()
		return errors.New("sim: desk already started or closed")
	}
	d.srv = &http.Server{Handler: d.handler, ReadHeaderTimeout: 10 * time.Second}
	d.addr = ln.Addr().String()
	srv := d.srv
	d.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_ = srv.Serve(ln)
	}()
	return nil
}

// BaseURL is the REST base, "http://127.0.0.1:PORT/v2" ("" before Start).
func (d *Desk) BaseURL() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.addr == "" {
		return ""
	}
	return "http://" + d.addr + "/v2"
}

// WSURL is the WebSocket base, "ws://127.0.0.1:PORT/v2" ("" before Start).
func (d *Desk) WSURL() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.addr == "" {
		return ""
	}
	return "ws://" + d.addr + "/v2"
}

// Handler serves the desk's REST, WebSocket and /_sim/ test API.
func (d *Desk) Handler() http.Handler { return d.handler }

// Close stops the server, closes every stream and releases blackholed
// handlers. Safe to call twice.
func (d *Desk) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return d.closeErr
	}
	d.closed = true
	close(d.done)
	srv := d.srv
	conns := make([]*websocket.Conn, 0, len(d.streams))
	for s := range d.streams {
		conns = append(conns, s.conn)
	}
	d.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	var err error
	if srv != nil {
		err = srv.Close()
	}
	d.wg.Wait()
	d.mu.Lock()
	d.closeErr = err
	d.mu.Unlock()
	return err
}

// --- ledger -----------------------------------------------------------------

// bookLocked appends one transaction and moves the balance.
func (d *Desk) bookLocked(t *txRec) *txRec {
	d.txCount++
	t.num = d.txCount
	if t.displayID == "" {
		t.displayID = d.newIDLocked()
	}
	d.segs = append(d.segs, txSeg{tx: t})
	switch {
	case t.creditTo == d.cfg.AccountID:
		d.balances[t.symbol] = d.balances[t.symbol].Add(t.amount)
	case t.debitFrom == d.cfg.AccountID:
		d.balances[t.symbol] = d.balances[t.symbol].Sub(t.amount)
	}
	return t
}

func (d *Desk) depositLocked(symbol string, amount decimal.Decimal, at time.Time) {
	d.addSymbolLocked(symbol)
	t := d.bookLocked(&txRec{symbol: symbol, amount: amount, debitFrom: d.externalID, creditTo: d.cfg.AccountID,
		notes: "Deposit", createdAt: at, typ: "deposit"})
	t.idemKey = fmt.Sprintf("deposit_%d", t.num)
	d.transfers = append(d.transfers, &transferRec{id: int64(len(d.transfers) + 1), createdAt: at, symbol: symbol,
		amount: amount, typ: "deposit"})
}

func (d *Desk) tradeLocked(quoteID, buy string, buyQty decimal.Decimal, sell string, sellQty decimal.Decimal, at time.Time) *convertRec {
	d.addSymbolLocked(buy)
	d.addSymbolLocked(sell)
	display := d.newIDLocked()
	bt := d.bookLocked(&txRec{symbol: buy, amount: buyQty, debitFrom: d.makerID, creditTo: d.cfg.AccountID,
		notes: "OTC Trade", createdAt: at, typ: "trade", tradeDisplayID: display})
	bt.idemKey = fmt.Sprintf("trade_%s_buy", display)
	st := d.bookLocked(&txRec{symbol: sell, amount: sellQty, debitFrom: d.cfg.AccountID, creditTo: d.makerID,
		notes: "OTC Trade", createdAt: at, typ: "trade", tradeDisplayID: display})
	st.idemKey = fmt.Sprintf("trade_%s_sell", display)
	c := &convertRec{
		SimConvert: SimConvert{DisplayID: display, QuoteID: quoteID, BuySymbol: buy, BuyQty: buyQty,
			SellSymbol: sell, SellQty: sellQty, CreatedAt: at},
		id: int64(len(d.converts) + 1), buyTxnID: bt.num, sellTxnID: st.num,
	}
	d.converts = append(d.converts, c)
	return c
}

// withdrawLocked creates a withdrawal request and books its debit.
func (d *Desk) withdrawLocked(symbol string, amount decimal.Decimal, network, address, failMsg string, at time.Time) *withdrawalRec {
	d.addSymbolLocked(symbol)
	w := &withdrawalRec{
		SimWithdrawal: SimWithdrawal{ID: d.newIDLocked(), Symbol: symbol, Amount: amount, Network: network,
			Address: address, Status: wdPending, CreatedAt: at},
		updatedAt: at, failMsg: failMsg,
	}
	d.bookLocked(&txRec{symbol: symbol, amount: amount, debitFrom: d.cfg.AccountID, creditTo: d.sinkID,
		notes: "Withdrawal", createdAt: at, idemKey: "withdrawal_" + w.ID, typ: "withdrawal"})
	d.withdrawals = append(d.withdrawals, w)
	d.open = append(d.open, w)
	d.transfers = append(d.transfers, &transferRec{id: int64(len(d.transfers) + 1), createdAt: at, symbol: symbol,
		amount: amount, typ: "withdrawal", wd: w})
	return w
}

// advanceLocked moves withdrawal requests along their lifecycle by the clock:
// one status per WithdrawalStep since creation; a planned failure strikes
// after processing and refunds the amount with a credit transaction.
func (d *Desk) advanceLocked() {
	if len(d.open) == 0 {
		return
	}
	now := d.now()
	step := d.cfg.WithdrawalStep
	keep := d.open[:0]
	for _, w := range d.open {
		n := int(now.Sub(w.CreatedAt) / step)
		if n < 0 {
			n = 0
		}
		if w.failMsg != "" && n >= 2 {
			w.Status = wdFailed
			w.Error = w.failMsg
			w.updatedAt = w.CreatedAt.Add(2 * step)
			d.bookLocked(&txRec{symbol: w.Symbol, amount: w.Amount, debitFrom: d.sinkID, creditTo: d.cfg.AccountID,
				notes: "Withdrawal refund: " + w.failMsg, createdAt: now, idemKey: "withdrawal_refund_" + w.ID,
				typ: "withdrawal"})
			continue
		}
		if n > len(wdLifecycle)-1 {
			n = len(wdLifecycle) - 1
		}
		if st := wdLifecycle[n]; st != w.Status {
			w.Status = st
			w.updatedAt = w.CreatedAt.Add(time.Duration(n) * step)
			if n >= 2 && w.txID == "" {
				sum := sha256.Sum256([]byte("txid/" + w.ID))
				w.txID = fmt.Sprintf("%x", sum)
				if w.Network != "bitcoin" {
					w.txID = "0x" + w.txID
				}
			}
		}
		if w.Status != wdCompleted {
			keep = append(keep, w)
		}
	}
	clear(d.open[len(keep):])
	d.open = keep
}

// --- ground truth -----------------------------------------------------------

// Balance is the account's current balance of symbol.
func (d *Desk) Balance(symbol string) decimal.Decimal {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advanceLocked()
	return d.balances[symbol]
}

// AcceptBodies returns the raw body of every accept POST received, in order.
func (d *Desk) AcceptBodies() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([][]byte, len(d.acceptBodies))
	for i, b := range d.acceptBodies {
		out[i] = append([]byte(nil), b...)
	}
	return out
}

// Converts returns every booked trade, oldest first.
func (d *Desk) Converts() []SimConvert {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]SimConvert, len(d.converts))
	for i, c := range d.converts {
		out[i] = c.SimConvert
	}
	return out
}

// Withdrawals returns every withdrawal request, oldest first, with its status
// as of now.
func (d *Desk) Withdrawals() []SimWithdrawal {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advanceLocked()
	out := make([]SimWithdrawal, len(d.withdrawals))
	for i, w := range d.withdrawals {
		out[i] = w.SimWithdrawal
	}
	return out
}

// OpenStreams is the number of quote streams currently open.
func (d *Desk) OpenStreams() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.streams)
}

// QuotesSent is the number of well-formed quote frames sent so far.
func (d *Desk) QuotesSent() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.quotesSent
}

// TransactionCount is the number of transactions in the history.
func (d *Desk) TransactionCount() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.advanceLocked()
	return d.txCount
}

// --- discrepancy hooks ------------------------------------------------------

// Deposit books an incoming deposit (transaction and transfer).
func (d *Desk) Deposit(symbol string, amount decimal.Decimal) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.depositLocked(symbol, amount, d.now())
}

// Fee books a fee debited from the account.
func (d *Desk) Fee(symbol string, amount decimal.Decimal) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addSymbolLocked(symbol)
	t := d.bookLocked(&txRec{symbol: symbol, amount: amount, debitFrom: d.cfg.AccountID, creditTo: d.feeID,
		notes: "Fee", createdAt: d.now(), typ: "fee"})
	t.idemKey = fmt.Sprintf("fee_%d", t.num)
}

// ExternalWithdrawal creates a withdrawal request treasuryd did not make and
// returns its id. It follows the normal lifecycle.
func (d *Desk) ExternalWithdrawal(symbol string, amount decimal.Decimal, network, address string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.withdrawLocked(symbol, amount, network, address, "", d.now()).ID
}

// ExternalTrade books a trade treasuryd did not make and returns its display id.
func (d *Desk) ExternalTrade(buySymbol string, buyQty decimal.Decimal, sellSymbol string, sellQty decimal.Decimal) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.tradeLocked("", buySymbol, buyQty, sellSymbol, sellQty, d.now()).DisplayID
}

// DuplicateTransaction books the newest transaction again with the same
// idemKey (and a new display id); the balance moves a second time.
func (d *Desk) DuplicateTransaction() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.segs) == 0 {
		return
	}
	last := d.segs[len(d.segs)-1]
	var t txRec
	if last.tx != nil {
		t = *last.tx
	} else {
		t = d.seededTx(last, last.seedFirst+last.seedCount-1)
	}
	t.displayID = ""
	t.createdAt = d.now()
	d.bookLocked(&t)
}

// DriftBalance changes the balance without any transaction.
func (d *Desk) DriftBalance(symbol string, delta decimal.Decimal) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.addSymbolLocked(symbol)
	d.balances[symbol] = d.balances[symbol].Add(delta)
}

// SeedHistory appends n small balanced pairs of transactions (a deposit and
// a fee of the same amount): 2n transactions, balances unchanged. They are
// stored as one block and generated from their index when served, so a
// million cost a few bytes.
func (d *Desk) SeedHistory(n int) {
	if n <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.symbols) == 0 {
		d.addSymbolLocked("BTC")
	}
	cnt := 2 * int64(n)
	syms := append([]string(nil), d.symbols...)
	d.segs = append(d.segs, txSeg{seedFirst: d.seeded, seedCount: cnt, seedAt: deskTime(d.now()), seedSyms: syms})
	d.seeded += cnt
	d.txCount += cnt
}

// seededTx materialises seeded transaction g (used only for DuplicateTransaction).
func (d *Desk) seededTx(seg txSeg, g int64) txRec {
	sym, units, credit := deskSeededFields(seg, g)
	amt := decimal.New(units, -8)
	t := txRec{symbol: sym, amount: amt, createdAt: d.now(), idemKey: fmt.Sprintf("seed_%d", g)}
	if credit {
		t.debitFrom, t.creditTo, t.typ, t.notes = d.externalID, d.cfg.AccountID, "deposit", "Deposit"
	} else {
		t.debitFrom, t.creditTo, t.typ, t.notes = d.cfg.AccountID, d.feeID, "fee", "Fee"
	}
	return t
}

// deskSeededFields are the symbol, amount (in units of 1e-8) and direction of
// seeded transaction g: pair g/2 is a credit then a debit of the same amount.
func deskSeededFields(seg txSeg, g int64) (symbol string, units int64, credit bool) {
	p := g / 2
	return seg.seedSyms[p%int64(len(seg.seedSyms))], p%997 + 1, g%2 == 0
}

// deskSplitPair splits "BTC-USD" into its two symbols.
func deskSplitPair(pair string) (base, quote string, ok bool) {
	base, quote, ok = strings.Cut(pair, "-")
	return base, quote, ok && base != "" && quote != "" && base != quote
}

func deskTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
