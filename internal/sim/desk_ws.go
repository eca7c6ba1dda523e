package sim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/shopspring/decimal"
)

// Quantities are rounded to this many decimals, in the desk's favour.
const qtyPlaces = 8

// pricePlaces keeps walked prices from growing digits without bound.
const pricePlaces = 12

// streamWriteTimeout bounds one frame write, so a client that stops reading
// cannot pin a stream goroutine forever.
const streamWriteTimeout = 10 * time.Second

// streamReadLimit bounds what a client may send on a quote stream (nothing
// but control frames is expected).
const streamReadLimit = 4096

type deskFrameKind int

const (
	deskFrameQuote deskFrameKind = iota
	deskFrameMalformed
	deskFrameDrop
	deskFrameStall
)

type deskStream struct {
	conn       *websocket.Conn
	from, to   string
	fixedFrom  bool
	qty        decimal.Decimal
	pair       string // key into Desk.prices
	inverted   bool   // the configured pair is to-from
	stallUntil atomic.Int64
	gone       chan struct{} // closed when the client side is gone
}

var deskUpgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	CheckOrigin:     func(*http.Request) bool { return true },
}

// resolvePairLocked finds the configured price for buying from with to.
func (d *Desk) resolvePairLocked(from, to string) (pair string, inverted, ok bool) {
	if _, ok := d.prices[from+"-"+to]; ok {
		return from + "-" + to, false, true
	}
	if _, ok := d.prices[to+"-"+from]; ok {
		return to + "-" + from, true, true
	}
	return "", false, false
}

func (d *Desk) handleStream(w http.ResponseWriter, r *http.Request) {
	if !d.accountOK(w, r) {
		return
	}
	q := r.URL.Query()
	s := &deskStream{from: q.Get("from"), to: q.Get("to"), gone: make(chan struct{})}
	fromQty, toQty := q.Get("fromQty"), q.Get("toQty")
	if (fromQty == "") == (toQty == "") {
		deskMessage(w, http.StatusBadRequest, "exactly one of fromQty and toQty is required")
		return
	}
	raw := toQty
	if fromQty != "" {
		s.fixedFrom, raw = true, fromQty
	}
	qty, err := decimal.NewFromString(raw)
	if err != nil || !qty.IsPositive() {
		deskMessage(w, http.StatusBadRequest, "quantity must be a positive decimal")
		return
	}
	s.qty = qty
	d.mu.Lock()
	known := d.knownLocked(s.from) && d.knownLocked(s.to) && s.from != s.to
	var ok bool
	if known {
		s.pair, s.inverted, ok = d.resolvePairLocked(s.from, s.to)
	}
	d.mu.Unlock()
	if !known || !ok {
		deskMessage(w, http.StatusBadRequest, "unsupported asset pair")
		return
	}
	conn, err := deskUpgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the deskUpgrader has answered
	}
	conn.SetReadLimit(streamReadLimit)
	s.conn = conn
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		conn.Close()
		return
	}
	d.streams[s] = struct{}{}
	n := d.streamsSeen
	d.streamsSeen++
	d.wg.Add(2)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		defer close(s.gone)
		for {
			if _, _, err := conn.NextReader(); err != nil {
				return
			}
		}
	}()
	defer d.wg.Done()
	defer func() {
		d.mu.Lock()
		delete(d.streams, s)
		d.mu.Unlock()
		conn.Close()
	}()
	d.runStream(s, n)
}

func (d *Desk) runStream(s *deskStream, n int) {
	first := true
	if wait := d.firstQuoteIn(n, time.Now()); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.gone:
			t.Stop()
			return
		case <-d.done:
			t.Stop()
			return
		}
	}
	ticker := time.NewTicker(d.cfg.QuoteInterval)
	defer ticker.Stop()
	for ; ; first = false {
		if !first {
			select {
			case <-ticker.C:
			case <-s.gone:
				return
			case <-d.done:
				return
			}
		}
		if time.Now().UnixNano() < s.stallUntil.Load() {
			continue
		}
		kind, data, stall := d.nextFrame(s)
		switch kind {
		case deskFrameDrop:
			s.conn.Close() // abrupt: no close frame
			return
		case deskFrameStall:
			s.stallUntil.Store(time.Now().Add(stall).UnixNano())
			continue
		}
		if kind == deskFrameQuote {
			d.lat.frameWritten(data)
		}
		s.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if err := s.conn.WriteMessage(websocket.TextMessage, data); err != nil {
			return
		}
	}
}

// firstQuoteIn is how long the n-th stream to connect (from 0) waits, at
// now, before its first quote (DeskConfig.QuotePhase).
func (d *Desk) firstQuoteIn(n int, now time.Time) time.Duration {
	iv := d.cfg.QuoteInterval
	var offset time.Duration
	switch d.cfg.QuotePhase {
	case "aligned":
	case "spread":
		const phi = 0.6180339887498949 // the golden ratio's fraction
		frac := float64(n) * phi
		offset = time.Duration((frac - float64(int64(frac))) * float64(iv))
	default:
		return 0
	}
	next := now.Truncate(iv).Add(offset)
	for !next.After(now) {
		next = next.Add(iv)
	}
	return next.Sub(now)
}

// nextFrame decides what the stream sends now: faults first, then a quote,
// possibly malformed.
func (d *Desk) nextFrame(s *deskStream) (deskFrameKind, []byte, time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f := d.faults
	if f.StreamDrop > 0 && d.rngFault.Float64() < f.StreamDrop {
		return deskFrameDrop, nil, 0
	}
	if f.StreamStall > 0 && d.rngFault.Float64() < f.StreamStall {
		stall := f.StallFor
		if stall <= 0 {
			stall = 10 * time.Second
		}
		return deskFrameStall, nil, stall
	}
	if len(d.inject) > 0 {
		f := d.inject[0]
		d.inject = d.inject[1:]
		return deskFrameQuote, f, 0
	}
	malformed := false
	if d.malformNext > 0 {
		d.malformNext--
		malformed = true
	} else if f.MalformedFrame > 0 && d.rngFault.Float64() < f.MalformedFrame {
		malformed = true
	}
	qt := d.quoteLocked(s)
	if malformed {
		return deskFrameMalformed, d.malformLocked(qt), 0
	}
	d.quotesSent++
	return deskFrameQuote, qt.frame(), 0
}

type wireQuote struct {
	quoteID, accountID, from, to, fromQty, toQty, expiry, signature string
}

func (q wireQuote) frame() []byte {
	b := make([]byte, 0, 320)
	b = append(b, `{"quote":{"quoteId":"`...)
	b = append(b, q.quoteID...)
	b = append(b, `","accountId":"`...)
	b = append(b, q.accountID...)
	b = append(b, `","fromAsset":`...)
	b = deskAppendString(b, q.from)
	b = append(b, `,"toAsset":`...)
	b = deskAppendString(b, q.to)
	b = append(b, `,"fromAssetQuantity":`...)
	b = append(b, q.fromQty...)
	b = append(b, `,"toAssetQuantity":`...)
	b = append(b, q.toQty...)
	b = append(b, `,"expiryTime":`...)
	b = append(b, q.expiry...)
	b = append(b, `,"signature":"`...)
	b = append(b, q.signature...)
	b = append(b, `"}}`...)
	return b
}

// quoteLocked walks the pair's price one step and prices a quote for s.
func (d *Desk) quoteLocked(s *deskStream) wireQuote {
	p := d.prices[s.pair]
	if d.volatility.IsPositive() {
		r := d.rngQuote.Int64N(2001) - 1000 // -1000..1000 thousandths of a step
		step := d.volatility.Mul(decimal.New(r, -7))
		if np := p.Mul(decimal.NewFromInt(1).Add(step)).Round(pricePlaces); np.IsPositive() {
			p = np
			d.prices[s.pair] = p
		}
	}
	var fromQ, toQ decimal.Decimal
	// p is to-per-from unless inverted. The account pays (to) rounded up and
	// receives (from) rounded down: the desk's favour.
	if s.fixedFrom {
		fromQ = s.qty
		if s.inverted {
			toQ = fromQ.DivRound(p, 2*qtyPlaces).RoundCeil(qtyPlaces)
		} else {
			toQ = fromQ.Mul(p).RoundCeil(qtyPlaces)
		}
	} else {
		toQ = s.qty
		if s.inverted {
			fromQ = toQ.Mul(p).RoundFloor(qtyPlaces)
		} else {
			fromQ = toQ.DivRound(p, 2*qtyPlaces).RoundFloor(qtyPlaces)
		}
	}
	var id [16]byte
	binary.LittleEndian.PutUint64(id[:8], d.rngQuote.Uint64())
	binary.LittleEndian.PutUint64(id[8:], d.rngQuote.Uint64())
	q := wireQuote{
		quoteID:   deskUUID(id[:]),
		accountID: d.cfg.AccountID,
		from:      s.from,
		to:        s.to,
		fromQty:   fromQ.String(),
		toQty:     toQ.String(),
		expiry:    strconv.FormatInt(d.now().Add(d.cfg.QuoteTTL).UnixMicro(), 10),
	}
	q.signature = d.sign(q)
	return q
}

// sign is the quote signature: HMAC-SHA256 under a key derived from the seed,
// over the canonical fields with the numbers' literal text.
func (d *Desk) sign(q wireQuote) string {
	m := hmac.New(sha256.New, d.signKey)
	for i, f := range []string{q.quoteID, q.accountID, q.from, q.to, q.fromQty, q.toQty, q.expiry} {
		if i > 0 {
			m.Write([]byte{'|'})
		}
		m.Write([]byte(f))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// malformLocked turns a quote into one of three bad frames: garbage, truncated
// JSON, or a quote with a wrong field (no quoteId, quantity as a string).
func (d *Desk) malformLocked(q wireQuote) []byte {
	switch d.rngFault.IntN(3) {
	case 0:
		return []byte("\x00garbage{not json")
	case 1:
		f := q.frame()
		return f[:len(f)/2]
	default:
		b := []byte(`{"quote":{"quote_id":"` + q.quoteID + `","accountId":"` + q.accountID + `","fromAsset":`)
		b = deskAppendString(b, q.from)
		b = append(b, `,"toAsset":`...)
		b = deskAppendString(b, q.to)
		b = append(b, `,"fromAssetQuantity":"`+q.fromQty+`","toAssetQuantity":`+q.toQty+
			`,"expiryTime":`+q.expiry+`,"signature":"`+q.signature+`"}}`...)
		return b
	}
}

// DropStreams closes every open quote stream now, abruptly.
func (d *Desk) DropStreams() {
	for _, s := range d.openStreams() {
		s.conn.Close()
	}
}

// StallStreams makes every open stream send nothing for dur.
func (d *Desk) StallStreams(dur time.Duration) {
	until := time.Now().Add(dur).UnixNano()
	for _, s := range d.openStreams() {
		s.stallUntil.Store(until)
	}
}

func (d *Desk) openStreams() []*deskStream {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*deskStream, 0, len(d.streams))
	for s := range d.streams {
		out = append(out, s)
	}
	return out
}

// SetPrice sets the current price of a configured pair (or adds one).
func (d *Desk) SetPrice(pair string, price decimal.Decimal) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if base, quote, ok := deskSplitPair(pair); ok {
		if _, exists := d.prices[pair]; !exists {
			if rev := quote + "-" + base; d.prices[rev].IsPositive() {
				d.prices[rev] = decimal.NewFromInt(1).DivRound(price, pricePlaces)
				return
			}
		}
		d.addSymbolLocked(base)
		d.addSymbolLocked(quote)
		d.prices[pair] = price
	}
}

// Price is the current price of a configured pair (zero if unknown).
func (d *Desk) Price(pair string) decimal.Decimal {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.prices[pair]
}

// SetVolatility sets the random walk step per quote, in basis points.
func (d *Desk) SetVolatility(bps decimal.Decimal) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.volatility = bps
}
