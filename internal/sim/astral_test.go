package sim_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"treasuryd/internal/sim"
)

type astralTestClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *astralTestClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func astralStart(t *testing.T, cfg sim.AstralConfig) (*sim.Astral, *astralTestClock) {
	t.Helper()
	clk := &astralTestClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	cfg.Now = clk.Now
	a := sim.NewAstral(cfg)
	if err := a.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, clk
}

func astralDo(t *testing.T, method, u string, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
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
	return resp.StatusCode, b
}

type astralListWire struct {
	Data       []map[string]json.RawMessage `json:"data"`
	Count      *int                         `json:"count"`
	Limit      *int                         `json:"limit"`
	Offset     *int                         `json:"offset"`
	Pagination *struct {
		Total  string          `json:"total"`
		Limit  int             `json:"limit"`
		Offset int             `json:"offset"`
		Next   json.RawMessage `json:"next"`
	} `json:"pagination"`
}

func astralList(t *testing.T, a *sim.Astral, query string) astralListWire {
	t.Helper()
	code, body := astralDo(t, "GET", a.BaseURL()+"/api/v0/location-proofs?"+query, "")
	if code != 200 {
		t.Fatalf("list %q: HTTP %d %s", query, code, body)
	}
	var l astralListWire
	if err := json.Unmarshal(body, &l); err != nil {
		t.Fatalf("list %q: %v", query, err)
	}
	return l
}

func astralUIDs(l astralListWire) []string {
	var out []string
	for _, p := range l.Data {
		var s string
		json.Unmarshal(p["uid"], &s)
		out = append(out, s)
	}
	return out
}

func TestAstralListFiltersOnTheServerNewestFirst(t *testing.T) {
	a, clk := astralStart(t, sim.AstralConfig{})
	now := clk.Now()
	add := func(uid, chain, prover, subject string, ago time.Duration, lng, lat float64, style string) {
		a.AddProof(sim.ProofSpec{UID: uid, Chain: chain, Prover: prover, Subject: subject, EventTime: now.Add(-ago), Lng: lng, Lat: lat, Style: style})
	}
	add("p1", "base", "0xP1", "0xS1", 1*time.Hour, 2, 48, "")
	add("p2", "celo", "0xP2", "0xS1", 2*time.Hour, -74, 40.7, sim.ProofStyleArray)
	add("p3", "base", "0xP1", "0xS2", 30*time.Hour, 13, 52, sim.ProofStyleStrings)
	add("p4", "base", "0xP2", "0xS1", 3*time.Hour, 0, 0, sim.ProofStyleNoPoint)
	from := url.QueryEscape(now.Add(-24 * time.Hour).Format(time.RFC3339))
	to := url.QueryEscape(now.Add(-90 * time.Minute).Format(time.RFC3339))
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"p1", "p2", "p4", "p3"}},
		{"chain=base", []string{"p1", "p4", "p3"}},
		{"prover=0xp2", []string{"p2", "p4"}}, // addresses compare case-insensitively
		{"subject=0xS1", []string{"p1", "p2", "p4"}},
		{"fromTimestamp=" + from, []string{"p1", "p2", "p4"}},
		{"toTimestamp=" + to, []string{"p2", "p4", "p3"}},
		{"fromTimestamp=" + from + "&toTimestamp=" + to, []string{"p2", "p4"}},
		{"bbox=-10,35,30,60", []string{"p1", "p3"}}, // the no-point proof is in no box
		{"bbox=-75,40,-73,41&chain=celo", []string{"p2"}},
		{"subject=0xS1&chain=base&prover=0xP1", []string{"p1"}},
		{"subject=nobody", nil},
	}
	for _, tt := range tests {
		if got := astralUIDs(astralList(t, a, tt.query)); !slices.Equal(got, tt.want) {
			t.Errorf("%q: got %v, want %v", tt.query, got, tt.want)
		}
	}
	for _, bad := range []string{"fromTimestamp=yesterday", "bbox=1,2,3", "bbox=a,b,c,d", "limit=x", "offset=-1"} {
		if code, _ := astralDo(t, "GET", a.BaseURL()+"/api/v0/location-proofs?"+bad, ""); code != 400 {
			t.Errorf("%q: HTTP %d, want 400", bad, code)
		}
	}
}

func TestAstralNoServerFilterReturnsEverything(t *testing.T) {
	a, _ := astralStart(t, sim.AstralConfig{NoServerFilter: true})
	a.AddProof(sim.ProofSpec{Subject: "0xS1"})
	a.AddProof(sim.ProofSpec{Subject: "0xS2"})
	if got := astralList(t, a, "subject=0xS1"); len(got.Data) != 2 {
		t.Fatalf("got %d proofs, want both", len(got.Data))
	}
}

func TestAstralPagingRulesOfTheRunningServer(t *testing.T) {
	a, _ := astralStart(t, sim.AstralConfig{})
	for i := 0; i < 130; i++ {
		a.AddProof(sim.ProofSpec{Subject: "0xS"})
	}
	l := astralList(t, a, "")
	if len(l.Data) != 20 || l.Pagination == nil || l.Pagination.Limit != 20 || l.Pagination.Total != "130" {
		t.Fatalf("default page: %d items, pagination %+v; want 20 of total \"130\"", len(l.Data), l.Pagination)
	}
	if string(l.Pagination.Next) == "null" {
		t.Fatal("next is null with more to come")
	}
	l = astralList(t, a, "limit=500&offset=100")
	if len(l.Data) != 30 || l.Pagination.Limit != 100 || l.Pagination.Offset != 100 || string(l.Pagination.Next) != "null" {
		t.Fatalf("capped last page: %d items, pagination %+v; want 30, limit 100, next null", len(l.Data), l.Pagination)
	}
	if l.Count != nil {
		t.Fatal("server shape carries the doc's count")
	}
}

func TestAstralDocShape(t *testing.T) {
	a, _ := astralStart(t, sim.AstralConfig{DocShape: true})
	for i := 0; i < 25; i++ {
		a.AddProof(sim.ProofSpec{Subject: "0xS"})
	}
	l := astralList(t, a, "offset=20")
	if l.Pagination != nil || l.Count == nil || *l.Count != 25 || *l.Limit != 20 || *l.Offset != 20 || len(l.Data) != 5 {
		t.Fatalf("doc shape = count %v limit %v offset %v pagination %v, %d items", l.Count, l.Limit, l.Offset, l.Pagination, len(l.Data))
	}
}

func TestAstralProofStylesOnTheWire(t *testing.T) {
	a, _ := astralStart(t, sim.AstralConfig{})
	tests := []struct {
		style                    string
		longitude, latitude, loc string
	}{
		{sim.ProofStyleGeoJSON, `-73.98`, `40.75`, `"{\"type\":\"Point\",\"coordinates\":[-73.98,40.75]}"`},
		{sim.ProofStyleArray, `null`, `null`, `"[-73.98, 40.75]"`},
		{sim.ProofStyleStrings, `"-73.98"`, `"40.75"`, `"{\"type\":\"Point\",\"coordinates\":[-73.98,40.75]}"`},
		{sim.ProofStyleNoPoint, `null`, `null`, `"Somewhere without coordinates"`},
	}
	for _, tt := range tests {
		uid := a.AddProof(sim.ProofSpec{Subject: "0xS", Lng: -73.98, Lat: 40.75, Style: tt.style})
		code, body := astralDo(t, "GET", a.BaseURL()+"/api/v0/location-proofs/"+uid, "")
		if code != 200 {
			t.Fatalf("%s: HTTP %d", tt.style, code)
		}
		var rec map[string]json.RawMessage
		if err := json.Unmarshal(body, &rec); err != nil {
			t.Fatal(err)
		}
		if string(rec["longitude"]) != tt.longitude || string(rec["latitude"]) != tt.latitude || string(rec["location"]) != tt.loc {
			t.Errorf("%s: longitude %s latitude %s location %s", tt.style, rec["longitude"], rec["latitude"], rec["location"])
		}
	}
}

func TestAstralByUIDStatsAndNotFound(t *testing.T) {
	a, clk := astralStart(t, sim.AstralConfig{})
	a.AddProof(sim.ProofSpec{Chain: "base", EventTime: clk.Now().Add(-time.Hour)})
	a.AddProof(sim.ProofSpec{Chain: "celo", EventTime: clk.Now().Add(-10 * 24 * time.Hour), Revoked: true})
	code, body := astralDo(t, "GET", a.BaseURL()+"/api/v0/location-proofs/stats", "")
	var st struct {
		Total   int            `json:"total"`
		ByChain map[string]int `json:"by_chain"`
		ByTime  map[string]int `json:"by_time"`
		Revoked int            `json:"revoked"`
	}
	if code != 200 || json.Unmarshal(body, &st) != nil {
		t.Fatalf("stats: HTTP %d %s", code, body)
	}
	if st.Total != 2 || st.ByChain["celo"] != 1 || st.Revoked != 1 || st.ByTime["last_24_hours"] != 1 || st.ByTime["last_7_days"] != 1 || st.ByTime["last_30_days"] != 2 {
		t.Fatalf("stats = %+v", st)
	}
	if code, _ := astralDo(t, "GET", a.BaseURL()+"/api/v0/location-proofs/0xnope", ""); code != 404 {
		t.Fatalf("unknown uid: HTTP %d, want 404", code)
	}
	for _, path := range []string{"/health", "/", "/api/v0/config"} {
		if code, _ := astralDo(t, "GET", a.BaseURL()+path, ""); code != 200 {
			t.Errorf("%s: HTTP %d", path, code)
		}
	}
	if code, _ := astralDo(t, "GET", a.BaseURL()+"/nothing-here", ""); code != 404 {
		t.Errorf("unknown path: HTTP %d, want 404", code)
	}
}

func TestAstralTestAPIOverHTTP(t *testing.T) {
	a, clk := astralStart(t, sim.AstralConfig{})
	base := a.BaseURL() + "/_sim/astral"
	body := fmt.Sprintf(`{"subject":"0xS","chain":"base","lng":2.35,"lat":48.85,"style":"array","event_time":%q}`, clk.Now().Add(-time.Hour).Format(time.RFC3339))
	code, resp := astralDo(t, "POST", base+"/proofs", body)
	var added struct{ UID string }
	if code != 201 || json.Unmarshal(resp, &added) != nil || added.UID == "" {
		t.Fatalf("add: HTTP %d %s", code, resp)
	}
	if code, _ := astralDo(t, "POST", base+"/proofs", `{"style":"wkt"}`); code != 400 {
		t.Fatalf("bad style: HTTP %d, want 400", code)
	}
	if code, _ := astralDo(t, "POST", base+"/proofs", `{"colour":"red"}`); code != 400 {
		t.Fatalf("unknown field: HTTP %d, want 400", code)
	}
	if code, _ := astralDo(t, "POST", base+"/revoke?uid="+added.UID, ""); code != 200 {
		t.Fatalf("revoke: HTTP %d", code)
	}
	if code, _ := astralDo(t, "POST", base+"/revoke?uid=0xnope", ""); code != 404 {
		t.Fatalf("revoke unknown: HTTP %d, want 404", code)
	}
	_, got := astralDo(t, "GET", a.BaseURL()+"/api/v0/location-proofs/"+added.UID, "")
	if !strings.Contains(string(got), `"revoked":true`) || !strings.Contains(string(got), `"location":"[2.35, 48.85]"`) {
		t.Fatalf("proof after revoke = %s", got)
	}

	before := a.Requests()
	if code, _ := astralDo(t, "POST", base+"/down?on=1", ""); code != 200 {
		t.Fatal("down")
	}
	for _, path := range []string{"/health", "/api/v0/config", "/api/v0/location-proofs", "/api/v0/location-proofs/" + added.UID} {
		if code, _ := astralDo(t, "GET", a.BaseURL()+path, ""); code != 503 {
			t.Errorf("down %s: HTTP %d, want 503", path, code)
		}
	}
	if code, _ := astralDo(t, "POST", base+"/down?on=0", ""); code != 200 {
		t.Fatal("the test API must work while the index is down")
	}
	if code, _ := astralDo(t, "GET", a.BaseURL()+"/health", ""); code != 200 {
		t.Fatalf("up again: HTTP %d", code)
	}
	if got := a.Requests() - before; got != 5 {
		t.Fatalf("Requests counted %d index requests, want 5 (test API excluded)", got)
	}

	if code, _ := astralDo(t, "POST", base+"/age?by=2h", ""); code != 200 {
		t.Fatal("age")
	}
	from := url.QueryEscape(clk.Now().Add(-2 * time.Hour).Format(time.RFC3339))
	if l := astralList(t, a, "fromTimestamp="+from); len(l.Data) != 0 {
		t.Fatalf("aged proof (3h old) still newer than 2h")
	}
}

func TestAstralAgeProofsMovesEventTimesBack(t *testing.T) {
	a, clk := astralStart(t, sim.AstralConfig{})
	uid := a.AddProof(sim.ProofSpec{Subject: "0xS"})
	a.AgeProofs(25 * time.Hour)
	_, body := astralDo(t, "GET", a.BaseURL()+"/api/v0/location-proofs/"+uid, "")
	var rec struct {
		EventTimestamp time.Time `json:"event_timestamp"`
	}
	json.Unmarshal(body, &rec)
	if want := clk.Now().Add(-25 * time.Hour); !rec.EventTimestamp.Equal(want) {
		t.Fatalf("event_timestamp = %v, want %v", rec.EventTimestamp, want)
	}
}

func TestAstralCloseTwiceAndBeforeStart(t *testing.T) {
	a := sim.NewAstral(sim.AstralConfig{})
	if a.BaseURL() != "" {
		t.Fatal("BaseURL before Start")
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := sim.NewAstral(sim.AstralConfig{})
	if err := b.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	u := b.BaseURL()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(u + "/health"); err == nil {
		t.Fatal("server still answers after Close")
	}
}

func TestSandboxProofIsFreshAndComplete(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	p := sim.SandboxProof("0xS", "base", 2.35, 48.85, now)
	if p.Subject != "0xS" || p.Chain != "base" || p.Lng != 2.35 || p.Lat != 48.85 || p.Prover == "" || p.Revoked ||
		p.Style != sim.ProofStyleGeoJSON || now.Sub(p.EventTime) <= 0 || now.Sub(p.EventTime) > 5*time.Minute {
		t.Fatalf("SandboxProof = %+v", p)
	}
}
