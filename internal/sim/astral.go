package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AstralConfig configures the Astral index simulator.
type AstralConfig struct {
	Now    func() time.Time // default time.Now
	Chains []string         // supported chains; default arbitrum, celo, sepolia, base
	// DocShape selects the list shape: true, the doc's {data, count, limit,
	// offset}; false (default), the running server's {data, pagination}.
	DocShape bool
	// NoServerFilter makes the list ignore chain, prover, subject, time and
	// bbox filters (paging still applies): an index whose filtering cannot be
	// trusted, to prove the client side checks every proof again.
	NoServerFilter bool
}

// Proof styles: how a simulated proof carries its point on the wire.
const (
	ProofStyleGeoJSON = "geojson" // location GeoJSON Point, numeric longitude/latitude
	ProofStyleArray   = "array"   // location "[lng, lat]", longitude/latitude null
	ProofStyleStrings = "strings" // longitude/latitude numeric strings, location GeoJSON
	ProofStyleNoPoint = "nopoint" // an address, no coordinates
)

// ProofSpec describes one proof to add to the simulator.
type ProofSpec struct {
	UID       string // generated when empty
	Chain     string // default "base"
	Prover    string
	Subject   string
	EventTime time.Time // default now
	Lng, Lat  float64
	Style     string // one of the ProofStyle constants; default geojson
	Revoked   bool
	Memo      string
}

const (
	// astralDefaultLimit and astralMaxLimit are the running server's paging
	// rules (SPEC 2): limit defaults to 20 and is capped at 100.
	astralDefaultLimit = 20
	astralMaxLimit     = 100
	// astralMaxProofs bounds the store so a runaway test API client cannot
	// exhaust memory.
	astralMaxProofs = 100000
	// astralMaxBody bounds a test API request body.
	astralMaxBody = 1 << 16
	// astralSandboxProver is the prover of sandbox proofs.
	astralSandboxProver = "0x5a4d000000000000000000000000000000000001"
)

type astralProof struct {
	spec      ProofSpec
	createdAt time.Time
}

// Astral simulates the Astral location-proof index over real HTTP: the
// documented read endpoints with the running server's filtering and paging,
// plus a test API under /_sim/astral/. Safe for concurrent use.
type Astral struct {
	cfg     AstralConfig
	handler http.Handler

	mu       sync.Mutex
	proofs   map[string]*astralProof
	seq      int
	down     bool
	requests int
	srv      *http.Server
	ln       net.Listener
	closed   bool
}

// NewAstral builds the simulator. It does no I/O.
func NewAstral(cfg AstralConfig) *Astral {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Chains) == 0 {
		cfg.Chains = []string{"arbitrum", "celo", "sepolia", "base"}
	}
	a := &Astral{cfg: cfg, proofs: map[string]*astralProof{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", a.handleHealth)
	mux.HandleFunc("GET /{$}", a.handleRoot)
	mux.HandleFunc("GET /api/v0/config", a.handleConfig)
	mux.HandleFunc("GET /api/v0/location-proofs", a.handleList)
	mux.HandleFunc("GET /api/v0/location-proofs/stats", a.handleStats)
	mux.HandleFunc("GET /api/v0/location-proofs/{uid}", a.handleGet)
	mux.HandleFunc("POST /_sim/astral/proofs", a.handleSimAdd)
	mux.HandleFunc("POST /_sim/astral/revoke", a.handleSimRevoke)
	mux.HandleFunc("POST /_sim/astral/down", a.handleSimDown)
	mux.HandleFunc("POST /_sim/astral/age", a.handleSimAge)
	a.handler = a.gate(mux)
	return a
}

// gate counts index requests and answers 503 to them while down; the test
// API is never down, so a test can bring the index back.
func (a *Astral) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/_sim/") {
			a.mu.Lock()
			a.requests++
			down := a.down
			a.mu.Unlock()
			if down {
				astralJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "error", "message": "Service unavailable"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves in the background.
func (a *Astral) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("astral sim: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: a.handler, ReadHeaderTimeout: 10 * time.Second}
	a.mu.Lock()
	if a.srv != nil || a.closed {
		a.mu.Unlock()
		ln.Close()
		return errors.New("astral sim: already started or closed")
	}
	a.srv, a.ln = srv, ln
	a.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// BaseURL is the simulator's root URL once started ("" before).
func (a *Astral) BaseURL() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return ""
	}
	return "http://" + a.ln.Addr().String()
}

// Handler serves the simulator without a listener (for httptest or embedding).
func (a *Astral) Handler() http.Handler { return a.handler }

// Close stops the server. Safe to call twice.
func (a *Astral) Close() error {
	a.mu.Lock()
	srv := a.srv
	already := a.closed
	a.closed = true
	a.mu.Unlock()
	if already || srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return srv.Close()
	}
	return nil
}

// AddProof stores a proof and returns its uid (generated when p.UID is empty).
// Adding a uid that exists replaces it. Beyond astralMaxProofs new proofs are
// dropped and "" is returned.
func (a *Astral) AddProof(p ProofSpec) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.Now()
	if p.UID == "" {
		a.seq++
		sum := sha256.Sum256([]byte(fmt.Sprintf("astral-sim-proof-%d", a.seq)))
		p.UID = "0x" + hex.EncodeToString(sum[:])
	}
	if _, exists := a.proofs[p.UID]; !exists && len(a.proofs) >= astralMaxProofs {
		return ""
	}
	if p.Chain == "" {
		p.Chain = "base"
	}
	if p.EventTime.IsZero() {
		p.EventTime = now
	}
	if p.Style == "" {
		p.Style = ProofStyleGeoJSON
	}
	a.proofs[p.UID] = &astralProof{spec: p, createdAt: now}
	return p.UID
}

// Revoke marks a proof revoked (no-op for an unknown uid).
func (a *Astral) Revoke(uid string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if p, ok := a.proofs[uid]; ok {
		p.spec.Revoked = true
	}
}

// SetDown makes every index endpoint answer 503 (true) or serve again (false).
func (a *Astral) SetDown(down bool) {
	a.mu.Lock()
	a.down = down
	a.mu.Unlock()
}

// AgeProofs moves every proof's event time back by d.
func (a *Astral) AgeProofs(d time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.proofs {
		p.spec.EventTime = p.spec.EventTime.Add(-d)
	}
}

// lookup returns a copy of the proof uid as the index holds it, when it was
// added, and the index's clock: the chain simulator (chain.go) reads
// attestations from here.
func (a *Astral) lookup(uid string) (spec ProofSpec, created, now time.Time, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.proofs[uid]
	if !ok {
		return ProofSpec{}, time.Time{}, time.Time{}, false
	}
	return p.spec, p.createdAt, a.cfg.Now(), true
}

// Chains are the chains the index supports.
func (a *Astral) Chains() []string { return append([]string(nil), a.cfg.Chains...) }

// Requests counts index requests served (test API requests excluded).
func (a *Astral) Requests() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests
}

// SandboxProof is a fresh, valid proof for the daemon's sandbox: subject at
// lng,lat on chain, observed a minute before now.
func SandboxProof(subject, chain string, lng, lat float64, now time.Time) ProofSpec {
	return ProofSpec{
		Chain:     chain,
		Prover:    astralSandboxProver,
		Subject:   subject,
		EventTime: now.Add(-time.Minute),
		Lng:       lng,
		Lat:       lat,
		Style:     ProofStyleGeoJSON,
		Memo:      "treasuryd sandbox",
	}
}

func (a *Astral) handleHealth(w http.ResponseWriter, _ *http.Request) {
	astralJSON(w, http.StatusOK, map[string]any{"status": "ok", "message": "Astral API is running"})
}

func (a *Astral) handleRoot(w http.ResponseWriter, _ *http.Request) {
	link := func(rel, href string) map[string]string {
		return map[string]string{"rel": rel, "href": href, "type": "application/json"}
	}
	astralJSON(w, http.StatusOK, map[string]any{
		"title":       "Astral Protocol Location Proof API",
		"description": "API for querying location proof attestations across multiple blockchains",
		"version":     "v0",
		"links": []any{link("self", "/"), link("api", "/api/v0"), link("config", "/api/v0/config"),
			link("sync", "/api/sync"), link("location-proofs", "/api/v0/location-proofs")},
	})
}

func (a *Astral) handleConfig(w http.ResponseWriter, _ *http.Request) {
	chains := map[string]bool{}
	for _, c := range a.cfg.Chains {
		chains[c] = true
	}
	astralJSON(w, http.StatusOK, map[string]any{
		"chains":        chains,
		"schema":        "0xba4171c92572b1e4f241d044c32cdf083be9fd946b8766977558ca6378c824e2",
		"schema_fields": "uint256 eventTimestamp,string srs,string locationType,string location,string[] recipeType,bytes[] recipePayload,string[] mediaType,string[] mediaData,string memo",
		"version":       "v0",
	})
}

// astralFilter is a parsed list query.
type astralFilter struct {
	chain, prover, subject string
	from, to               time.Time
	bbox                   *[4]float64
}

func (f astralFilter) match(p ProofSpec) bool {
	if f.chain != "" && !strings.EqualFold(f.chain, p.Chain) {
		return false
	}
	if f.prover != "" && !strings.EqualFold(f.prover, p.Prover) {
		return false
	}
	if f.subject != "" && !strings.EqualFold(f.subject, p.Subject) {
		return false
	}
	if !f.from.IsZero() && p.EventTime.Before(f.from) {
		return false
	}
	if !f.to.IsZero() && p.EventTime.After(f.to) {
		return false
	}
	if f.bbox != nil {
		b := f.bbox
		if p.Style == ProofStyleNoPoint || p.Lng < b[0] || p.Lat < b[1] || p.Lng > b[2] || p.Lat > b[3] {
			return false
		}
	}
	return true
}

func astralParseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("invalid timestamp %q", s)
}

func astralParseFilter(q url.Values) (astralFilter, error) {
	f := astralFilter{chain: q.Get("chain"), prover: q.Get("prover"), subject: q.Get("subject")}
	var err error
	if s := q.Get("fromTimestamp"); s != "" {
		if f.from, err = astralParseTime(s); err != nil {
			return f, err
		}
	}
	if s := q.Get("toTimestamp"); s != "" {
		if f.to, err = astralParseTime(s); err != nil {
			return f, err
		}
	}
	if s := q.Get("bbox"); s != "" {
		parts := strings.Split(strings.Trim(s, "[]"), ",")
		if len(parts) != 4 {
			return f, fmt.Errorf("invalid bbox %q", s)
		}
		var b [4]float64
		for i, part := range parts {
			if b[i], err = strconv.ParseFloat(strings.TrimSpace(part), 64); err != nil {
				return f, fmt.Errorf("invalid bbox %q", s)
			}
		}
		f.bbox = &b
	}
	return f, nil
}

func astralParseInt(q url.Values, key string, def int) (int, error) {
	s := q.Get(key)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid %s %q", key, s)
	}
	return n, nil
}

func (a *Astral) handleList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := astralParseFilter(q)
	if err != nil {
		astralJSON(w, http.StatusBadRequest, map[string]any{"status": "error", "message": err.Error()})
		return
	}
	limit, err := astralParseInt(q, "limit", astralDefaultLimit)
	if err == nil && limit == 0 {
		limit = astralDefaultLimit
	}
	offset, err2 := astralParseInt(q, "offset", 0)
	if err == nil {
		err = err2
	}
	if err != nil {
		astralJSON(w, http.StatusBadRequest, map[string]any{"status": "error", "message": err.Error()})
		return
	}
	limit = min(limit, astralMaxLimit)

	a.mu.Lock()
	var match []ProofSpec
	for _, p := range a.proofs {
		if a.cfg.NoServerFilter || f.match(p.spec) {
			match = append(match, p.spec)
		}
	}
	now := a.cfg.Now()
	created := map[string]time.Time{}
	for _, p := range match {
		created[p.UID] = a.proofs[p.UID].createdAt
	}
	a.mu.Unlock()
	sort.Slice(match, func(i, j int) bool {
		if !match[i].EventTime.Equal(match[j].EventTime) {
			return match[i].EventTime.After(match[j].EventTime)
		}
		return match[i].UID < match[j].UID
	})
	total := len(match)
	page := []any{}
	for i := offset; i < total && i < offset+limit; i++ {
		page = append(page, astralRecord(match[i], created[match[i].UID], now))
	}
	if a.cfg.DocShape {
		astralJSON(w, http.StatusOK, map[string]any{"data": page, "count": total, "limit": limit, "offset": offset})
		return
	}
	var next any
	if offset+limit < total {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("limit", strconv.Itoa(limit))
		nq.Set("offset", strconv.Itoa(offset+limit))
		next = "/api/v0/location-proofs?" + nq.Encode()
	}
	astralJSON(w, http.StatusOK, map[string]any{"data": page, "pagination": map[string]any{
		// The running server's total comes from COUNT(*), which node-postgres
		// hands over as a string; the client must read both.
		"total": strconv.Itoa(total), "limit": limit, "offset": offset, "next": next,
	}})
}

func (a *Astral) handleGet(w http.ResponseWriter, r *http.Request) {
	uid := r.PathValue("uid")
	a.mu.Lock()
	p, ok := a.proofs[uid]
	var rec map[string]any
	if ok {
		rec = astralRecord(p.spec, p.createdAt, a.cfg.Now())
	}
	a.mu.Unlock()
	if !ok {
		astralJSON(w, http.StatusNotFound, map[string]any{"status": "error", "message": "Location proof not found"})
		return
	}
	astralJSON(w, http.StatusOK, rec)
}

func (a *Astral) handleStats(w http.ResponseWriter, _ *http.Request) {
	a.mu.Lock()
	now := a.cfg.Now()
	byChain := map[string]int{}
	var d1, d7, d30, revoked int
	for _, p := range a.proofs {
		byChain[p.spec.Chain]++
		age := now.Sub(p.spec.EventTime)
		if age <= 24*time.Hour {
			d1++
		}
		if age <= 7*24*time.Hour {
			d7++
		}
		if age <= 30*24*time.Hour {
			d30++
		}
		if p.spec.Revoked {
			revoked++
		}
	}
	total := len(a.proofs)
	a.mu.Unlock()
	astralJSON(w, http.StatusOK, map[string]any{
		"total": total, "by_chain": byChain, "revoked": revoked,
		"by_time": map[string]int{"last_24_hours": d1, "last_7_days": d7, "last_30_days": d30},
	})
}

// astralRecord renders a proof the way the running server does, with the
// point carried per the spec's style.
func astralRecord(p ProofSpec, created, now time.Time) map[string]any {
	ts := p.EventTime.UTC().Format(time.RFC3339Nano)
	rec := map[string]any{
		"uid": p.UID, "chain": p.Chain, "prover": p.Prover, "subject": p.Subject,
		"timestamp": ts, "event_timestamp": ts, "srs": "WGS84",
		"recipe_types": []string{"gps"}, "recipe_payloads": []string{"0x"},
		"media_types": []string{}, "media_data": []string{},
		"memo": p.Memo, "revoked": p.Revoked,
		"created_at": created.UTC().Format(time.RFC3339Nano),
		"updated_at": now.UTC().Format(time.RFC3339Nano),
	}
	lng := strconv.FormatFloat(p.Lng, 'f', -1, 64)
	lat := strconv.FormatFloat(p.Lat, 'f', -1, 64)
	geo := `{"type":"Point","coordinates":[` + lng + `,` + lat + `]}`
	switch p.Style {
	case ProofStyleArray:
		rec["location_type"] = "coordinates-decimal+lon-lat"
		rec["location"] = "[" + lng + ", " + lat + "]"
		rec["longitude"], rec["latitude"] = nil, nil
	case ProofStyleStrings:
		rec["location_type"] = "point"
		rec["location"] = geo
		rec["longitude"], rec["latitude"] = lng, lat
	case ProofStyleNoPoint:
		rec["location_type"] = "address"
		rec["location"] = "Somewhere without coordinates"
		rec["longitude"], rec["latitude"] = nil, nil
	default:
		rec["location_type"] = "point"
		rec["location"] = geo
		rec["longitude"], rec["latitude"] = json.Number(lng), json.Number(lat)
	}
	return rec
}

// handleSimAdd adds a proof from a JSON ProofSpec-like body:
// {"uid","chain","prover","subject","event_time" (RFC 3339),"lng","lat","style","revoked","memo"}.
func (a *Astral) handleSimAdd(w http.ResponseWriter, r *http.Request) {
	var body struct {
		UID       string    `json:"uid"`
		Chain     string    `json:"chain"`
		Prover    string    `json:"prover"`
		Subject   string    `json:"subject"`
		EventTime time.Time `json:"event_time"`
		Lng       float64   `json:"lng"`
		Lat       float64   `json:"lat"`
		Style     string    `json:"style"`
		Revoked   bool      `json:"revoked"`
		Memo      string    `json:"memo"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, astralMaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		astralJSON(w, http.StatusBadRequest, map[string]any{"status": "error", "message": err.Error()})
		return
	}
	switch body.Style {
	case "", ProofStyleGeoJSON, ProofStyleArray, ProofStyleStrings, ProofStyleNoPoint:
	default:
		astralJSON(w, http.StatusBadRequest, map[string]any{"status": "error", "message": "unknown style " + strconv.Quote(body.Style)})
		return
	}
	uid := a.AddProof(ProofSpec{UID: body.UID, Chain: body.Chain, Prover: body.Prover, Subject: body.Subject,
		EventTime: body.EventTime, Lng: body.Lng, Lat: body.Lat, Style: body.Style, Revoked: body.Revoked, Memo: body.Memo})
	if uid == "" {
		astralJSON(w, http.StatusInsufficientStorage, map[string]any{"status": "error", "message": "proof store full"})
		return
	}
	astralJSON(w, http.StatusCreated, map[string]any{"uid": uid})
}

func (a *Astral) handleSimRevoke(w http.ResponseWriter, r *http.Request) {
	uid := r.URL.Query().Get("uid")
	a.mu.Lock()
	_, ok := a.proofs[uid]
	a.mu.Unlock()
	if !ok {
		astralJSON(w, http.StatusNotFound, map[string]any{"status": "error", "message": "unknown uid"})
		return
	}
	a.Revoke(uid)
	astralJSON(w, http.StatusOK, map[string]any{"uid": uid, "revoked": true})
}

func (a *Astral) handleSimDown(w http.ResponseWriter, r *http.Request) {
	on := r.URL.Query().Get("on")
	down := on == "1" || on == "true"
	a.SetDown(down)
	astralJSON(w, http.StatusOK, map[string]any{"down": down})
}

// handleSimAge moves every event time back: POST /_sim/astral/age?by=25h.
func (a *Astral) handleSimAge(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("by"))
	if err != nil {
		astralJSON(w, http.StatusBadRequest, map[string]any{"status": "error", "message": "by: " + err.Error()})
		return
	}
	a.AgeProofs(d)
	astralJSON(w, http.StatusOK, map[string]any{"aged": d.String()})
}

func astralJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
