package astral_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"treasuryd/internal/astral"
	"treasuryd/internal/sim"
)

const subject = "0xAbCdEf1234567890abcdef1234567890abcdef12"

func startSim(t *testing.T, cfg sim.AstralConfig) *sim.Astral {
	t.Helper()
	a := sim.NewAstral(cfg)
	if err := a.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func collect(t *testing.T, c *astral.Client, q astral.Query) []astral.Proof {
	t.Helper()
	var out []astral.Proof
	if err := c.Proofs(context.Background(), q, func(p astral.Proof) error {
		out = append(out, p)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestProofsPagesThroughMoreThan100InBothListShapes(t *testing.T) {
	for _, doc := range []bool{false, true} {
		t.Run(fmt.Sprintf("docShape=%v", doc), func(t *testing.T) {
			now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
			a := startSim(t, sim.AstralConfig{Now: func() time.Time { return now }, DocShape: doc})
			const n = 250
			for i := 0; i < n; i++ {
				a.AddProof(sim.ProofSpec{Subject: subject, EventTime: now.Add(-time.Duration(i) * time.Minute), Lng: 2, Lat: 48})
			}
			a.AddProof(sim.ProofSpec{Subject: "0xother", EventTime: now, Lng: 2, Lat: 48})
			c := astral.New(astral.Options{BaseURL: a.BaseURL()})
			before := a.Requests()
			got := collect(t, c, astral.Query{Subject: subject})
			if len(got) != n {
				t.Fatalf("got %d proofs, want %d", len(got), n)
			}
			seen := map[string]bool{}
			for i, p := range got {
				if seen[p.UID] {
					t.Fatalf("uid %s seen twice", p.UID)
				}
				seen[p.UID] = true
				if i > 0 && p.EventTimestamp.After(got[i-1].EventTimestamp) {
					t.Fatalf("proof %d is newer than proof %d: not newest first", i, i-1)
				}
				if !p.HasPoint || p.Lng != 2 || p.Lat != 48 {
					t.Fatalf("proof %d point = %v %v,%v", i, p.HasPoint, p.Lng, p.Lat)
				}
			}
			// 100 + 100 + 50: the short third page ends the walk.
			if reqs := a.Requests() - before; reqs != 3 {
				t.Fatalf("%d requests, want 3", reqs)
			}
		})
	}
}

func TestProofsExactMultipleOfPageSizeEnds(t *testing.T) {
	for _, doc := range []bool{false, true} {
		t.Run(fmt.Sprintf("docShape=%v", doc), func(t *testing.T) {
			a := startSim(t, sim.AstralConfig{DocShape: doc})
			for i := 0; i < 200; i++ {
				a.AddProof(sim.ProofSpec{Subject: subject, Lng: 1, Lat: 1})
			}
			c := astral.New(astral.Options{BaseURL: a.BaseURL()})
			before := a.Requests()
			if got := collect(t, c, astral.Query{}); len(got) != 200 {
				t.Fatalf("got %d, want 200", len(got))
			}
			// Total (or next: null) ends the walk after the second full page.
			if reqs := a.Requests() - before; reqs != 2 {
				t.Fatalf("%d requests, want 2", reqs)
			}
		})
	}
}

// fakeList serves n proofs in pages of pageSize whatever limit is asked,
// in the shape render gives.
func fakeList(t *testing.T, n, pageSize int, render func(items []string, offset, limit, total int) string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		var items []string
		for i := offset; i < n && i < offset+pageSize; i++ {
			items = append(items, fmt.Sprintf(`{"uid":"u%d","longitude":"1.5","latitude":"2.5"}`, i))
		}
		fmt.Fprint(w, render(items, offset, pageSize, n))
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestProofsFollowsAServerThatClampsToItsDefaultLimit(t *testing.T) {
	// The running server defaults to 20 when it ignores our limit; the echo
	// of 20 says a page of 20 is full, so paging continues.
	srv, calls := fakeList(t, 45, 20, func(items []string, offset, limit, total int) string {
		next := "null"
		if offset+limit < total {
			next = `"/api/v0/location-proofs?offset=` + strconv.Itoa(offset+limit) + `"`
		}
		return fmt.Sprintf(`{"data":[%s],"pagination":{"total":"%d","limit":%d,"offset":%d,"next":%s}}`,
			strings.Join(items, ","), total, limit, offset, next)
	})
	got := collect(t, astral.New(astral.Options{BaseURL: srv.URL}), astral.Query{})
	if len(got) != 45 || got[44].UID != "u44" {
		t.Fatalf("got %d proofs, want 45 ending u44", len(got))
	}
	if calls.Load() != 3 {
		t.Fatalf("%d calls, want 3", calls.Load())
	}
}

func TestProofsDocCountAsPageLengthDoesNotStopEarly(t *testing.T) {
	// A doc-shaped server whose count is the page's length, not the total.
	srv, calls := fakeList(t, 230, 100, func(items []string, offset, limit, total int) string {
		return fmt.Sprintf(`{"data":[%s],"count":%d,"limit":%d,"offset":%d}`, strings.Join(items, ","), len(items), limit, offset)
	})
	got := collect(t, astral.New(astral.Options{BaseURL: srv.URL}), astral.Query{})
	if len(got) != 230 {
		t.Fatalf("got %d proofs, want 230", len(got))
	}
	if calls.Load() != 3 {
		t.Fatalf("%d calls, want 3", calls.Load())
	}
	if !got[0].HasPoint || got[0].Lng != 1.5 || got[0].Lat != 2.5 {
		t.Fatalf("numeric-string point = %v %v,%v", got[0].HasPoint, got[0].Lng, got[0].Lat)
	}
}

func TestProofsEndlessServerIsBounded(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		items := make([]string, 100)
		for i := range items {
			items[i] = `{"uid":"same"}`
		}
		fmt.Fprintf(w, `{"data":[%s]}`, strings.Join(items, ","))
	}))
	t.Cleanup(srv.Close)
	err := astral.New(astral.Options{BaseURL: srv.URL}).Proofs(context.Background(), astral.Query{}, func(astral.Proof) error { return nil })
	if !errors.Is(err, astral.ErrTooManyPages) {
		t.Fatalf("err = %v, want ErrTooManyPages", err)
	}
	if int(calls.Load()) != astral.MaxPages {
		t.Fatalf("%d calls, want %d", calls.Load(), astral.MaxPages)
	}
}

func TestProofsSendsEveryFilterInTheDocumentedForm(t *testing.T) {
	var got atomic.Pointer[string]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.RawQuery
		got.Store(&q)
		fmt.Fprint(w, `{"data":[],"pagination":{"total":0,"limit":100,"offset":0,"next":null}}`)
	}))
	t.Cleanup(srv.Close)
	paris := time.FixedZone("CEST", 2*3600)
	q := astral.Query{
		Chain: "base", Prover: "0xP", Subject: subject,
		From: time.Date(2025, 6, 1, 14, 0, 0, 0, paris), To: time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC),
		BBox: &[4]float64{-10, 35.5, 30, 60},
	}
	collect(t, astral.New(astral.Options{BaseURL: srv.URL + "/"}), q)
	raw := got.Load()
	if raw == nil {
		t.Fatal("no request")
	}
	vals, _ := urlParse(*raw)
	want := map[string]string{
		"chain": "base", "prover": "0xP", "subject": subject,
		"fromTimestamp": "2025-06-01T12:00:00Z", "toTimestamp": "2025-06-02T00:00:00Z",
		"bbox": "-10,35.5,30,60", "limit": "100", "offset": "0",
	}
	for k, v := range want {
		if vals[k] != v {
			t.Errorf("%s = %q, want %q", k, vals[k], v)
		}
	}
}

func urlParse(raw string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(kv, "=")
		v = strings.ReplaceAll(v, "%2C", ",")
		v = strings.ReplaceAll(v, "%3A", ":")
		out[k] = v
	}
	return out, nil
}

func TestProofByUIDAndNotFound(t *testing.T) {
	a := startSim(t, sim.AstralConfig{})
	uid := a.AddProof(sim.ProofSpec{Subject: subject, Lng: -73.98, Lat: 40.75, Style: sim.ProofStyleArray, Memo: "nyc"})
	var endpoints sync.Map
	c := astral.New(astral.Options{BaseURL: a.BaseURL(), Observe: func(endpoint, code string, d time.Duration) {
		endpoints.Store(endpoint+" "+code, true)
	}})
	p, err := c.Proof(context.Background(), uid)
	if err != nil {
		t.Fatal(err)
	}
	if p.UID != uid || !p.HasPoint || p.Lng != -73.98 || p.Lat != 40.75 || p.Memo != "nyc" {
		t.Fatalf("proof = %+v", p)
	}
	_, err = c.Proof(context.Background(), "0xmissing")
	if !errors.Is(err, astral.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	var apiErr *astral.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 404 || apiErr.Endpoint != astral.EndpointProof {
		t.Fatalf("err = %#v, want *APIError 404 on the uid template", err)
	}
	for _, k := range []string{astral.EndpointProof + " 200", astral.EndpointProof + " 404"} {
		if _, ok := endpoints.Load(k); !ok {
			t.Errorf("Observe not called with %q (route template, not filled-in path)", k)
		}
	}
}

func TestConfigHealthAndStatsFromTheSimulator(t *testing.T) {
	now := time.Now()
	a := startSim(t, sim.AstralConfig{Now: func() time.Time { return now }})
	a.AddProof(sim.ProofSpec{Chain: "base", EventTime: now.Add(-time.Hour)})
	a.AddProof(sim.ProofSpec{Chain: "celo", EventTime: now.Add(-48 * time.Hour), Revoked: true})
	c := astral.New(astral.Options{BaseURL: a.BaseURL()})
	ctx := context.Background()
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range []string{"arbitrum", "celo", "sepolia", "base"} {
		if !cfg.Chains[ch] {
			t.Errorf("chain %s not supported in %v", ch, cfg.Chains)
		}
	}
	if cfg.Version != "v0" || !strings.HasPrefix(cfg.Schema, "0xba41") {
		t.Errorf("config = %+v", cfg)
	}
	st, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != 2 || st.ByChain["base"] != 1 || st.ByChain["celo"] != 1 || st.Revoked != 1 || st.Last24Hours != 1 || st.Last7Days != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestDocSamplesDecodeToTheirValues(t *testing.T) {
	bodies := map[string]string{
		"/api/v0/config": `{"chains":{"arbitrum":true,"celo":true,"sepolia":true,"base":true},
			"schema":"0xba4171c92572b1e4f241d044c32cdf083be9fd946b8766977558ca6378c824e2",
			"schema_fields":"uint256 eventTimestamp,string srs","version":"v0"}`,
		"/api/v0/location-proofs/stats": `{"total":1250,"by_chain":{"arbitrum":320,"celo":180,"sepolia":450,"base":"300"},
			"by_time":{"last_24_hours":50,"last_7_days":210,"last_30_days":480},"revoked":"15"}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, bodies[r.URL.Path])
	}))
	t.Cleanup(srv.Close)
	c := astral.New(astral.Options{BaseURL: srv.URL})
	cfg, err := c.Config(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Chains) != 4 || !cfg.Chains["sepolia"] || cfg.Schema != "0xba4171c92572b1e4f241d044c32cdf083be9fd946b8766977558ca6378c824e2" || cfg.Version != "v0" {
		t.Fatalf("config = %+v", cfg)
	}
	st, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := astral.Stats{Total: 1250, Last24Hours: 50, Last7Days: 210, Last30Days: 480, Revoked: 15}
	if st.Total != want.Total || st.Last24Hours != want.Last24Hours || st.Last7Days != want.Last7Days ||
		st.Last30Days != want.Last30Days || st.Revoked != want.Revoked || st.ByChain["base"] != 300 || st.ByChain["arbitrum"] != 320 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestGetRetriesTransientFailuresButNotClientErrors(t *testing.T) {
	tests := []struct {
		name      string
		statuses  []int // answered in order; the last repeats
		wantErr   int   // 0: success
		wantCalls int32
	}{
		{"503 then ok", []int{503, 200}, 0, 2},
		{"429 then ok", []int{429, 200}, 0, 2},
		{"always 500 gives up after the attempt bound", []int{500}, 500, 3},
		{"400 is not retried", []int{400}, 400, 1},
		{"404 is not retried", []int{404}, 404, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(calls.Add(1)) - 1
				st := tt.statuses[min(i, len(tt.statuses)-1)]
				if st == 429 {
					w.Header().Set("Retry-After", "0")
				}
				w.WriteHeader(st)
				if st == 200 {
					fmt.Fprint(w, `{"status":"ok"}`)
				} else {
					fmt.Fprint(w, `{"status":"error","message":"nope","error":"db down"}`)
				}
			}))
			t.Cleanup(srv.Close)
			err := astral.New(astral.Options{BaseURL: srv.URL}).Health(context.Background())
			if got := calls.Load(); got != tt.wantCalls {
				t.Fatalf("%d calls, want %d", got, tt.wantCalls)
			}
			if tt.wantErr == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var apiErr *astral.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != tt.wantErr || apiErr.Message != "nope: db down" {
				t.Fatalf("err = %v, want APIError %d with the server's message", err, tt.wantErr)
			}
		})
	}
}

func TestNetworkErrorsAreRetriedThenReported(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	var observed atomic.Int32
	c := astral.New(astral.Options{BaseURL: url, Timeout: time.Second, Observe: func(endpoint, code string, d time.Duration) {
		if code == "error" {
			observed.Add(1)
		}
	}})
	if err := c.Health(context.Background()); err == nil {
		t.Fatal("want an error from a closed port")
	}
	if observed.Load() != 3 {
		t.Fatalf("%d attempts observed as error, want 3", observed.Load())
	}
}

func TestGarbageBodiesAreErrorsNotPanics(t *testing.T) {
	bodies := []string{``, `null`, `{"data": 5}`, `{"data": [1, 2]}`, `{"data": ["x"]}`, `<html>`, `{"data": [{"uid": 1}], "pagination": "x"}`,
		`{"data": [null]}`, `[`, `{"chains": 7}`, `{"total": {}}`}
	for _, body := range bodies {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) }))
		c := astral.New(astral.Options{BaseURL: srv.URL, MaxAttempts: 1})
		ctx := context.Background()
		_ = c.Proofs(ctx, astral.Query{}, func(astral.Proof) error { return nil })
		_, _ = c.Proof(ctx, "u")
		_, _ = c.Config(ctx)
		_, _ = c.Stats(ctx)
		srv.Close()
	}
	// A list whose records are not objects is an error, never silently empty.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"data": [1]}`) }))
	t.Cleanup(srv.Close)
	err := astral.New(astral.Options{BaseURL: srv.URL}).Proofs(context.Background(), astral.Query{}, func(astral.Proof) error { return nil })
	var apiErr *astral.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %v, want *APIError for an unreadable record", err)
	}
}

func TestProofsStopsWhenTheCallbackFails(t *testing.T) {
	a := startSim(t, sim.AstralConfig{})
	for i := 0; i < 5; i++ {
		a.AddProof(sim.ProofSpec{Subject: subject})
	}
	stop := errors.New("enough")
	n := 0
	err := astral.New(astral.Options{BaseURL: a.BaseURL()}).Proofs(context.Background(), astral.Query{}, func(astral.Proof) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err = %v after %d calls, want the callback's error after 1", err, n)
	}
}
