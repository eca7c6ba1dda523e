package compliance

import (
	"strings"
	"testing"
	"time"

	"treasuryd/internal/astral"
	"treasuryd/internal/config"
)

const testSubject = "0xabcdef1234567890abcdef1234567890abcdef12"

// testPolicy: EU bbox and Manhattan polygon and an Asia MultiPolygon (two
// boxes, the first with a hole) allowed; a box around Berlin denied.
func testPolicy() config.Compliance {
	return config.Compliance{
		Enabled:         true,
		Subject:         testSubject,
		Chains:          []string{"base", "arbitrum"},
		MaxProofAge:     24 * time.Hour,
		RefreshInterval: time.Minute,
		Allow: []config.Region{
			{Name: "eu", BBox: []float64{-10, 35, 30, 60}},
			{Name: "manhattan", GeoJSON: `{"type":"Polygon","coordinates":[[[-74.02,40.70],[-73.93,40.70],[-73.93,40.88],[-74.02,40.88],[-74.02,40.70]]]}`},
			{Name: "asia", GeoJSON: `{"type":"MultiPolygon","coordinates":[
				[[[100,0],[110,0],[110,10],[100,10],[100,0]],[[104,4],[106,4],[106,6],[104,6],[104,4]]],
				[[[130,30],[140,30],[140,40],[130,40],[130,30]]]]}`},
		},
		Deny: []config.Region{{Name: "berlin", BBox: []float64{13, 52, 14, 53}}},
	}
}

func decode(t *testing.T, js string) astral.Proof {
	t.Helper()
	p, err := astral.DecodeProof([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckEveryReason(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	fresh := now.Add(-time.Hour)
	good := astral.Proof{UID: "u", Chain: "base", Prover: "0xp", Subject: testSubject, EventTimestamp: fresh, Lng: 2.35, Lat: 48.85, HasPoint: true}
	with := func(f func(*astral.Proof)) astral.Proof { p := good; f(&p); return p }
	ts := fresh.Format(time.RFC3339)
	tests := []struct {
		name   string
		proof  astral.Proof
		cfg    func(*config.Compliance)
		want   string
		wantOK bool
	}{
		{"bbox allow passes", good, nil, ReasonPass, true},
		{"subject compares case-insensitively", with(func(p *astral.Proof) { p.Subject = "0xABCDEF1234567890ABCDEF1234567890ABCDEF12" }), nil, ReasonPass, true},
		{"chain compares case-insensitively", with(func(p *astral.Proof) { p.Chain = "Base" }), nil, ReasonPass, true},
		{"empty chains allow any chain", with(func(p *astral.Proof) { p.Chain = "celo" }), func(c *config.Compliance) { c.Chains = nil }, ReasonPass, true},
		{"trusted prover compares case-insensitively", with(func(p *astral.Proof) { p.Prover = "0xAB" }), func(c *config.Compliance) { c.TrustedProvers = []string{"0xab"} }, ReasonPass, true},
		{"array location inside a polygon", decode(t, `{"uid":"a","chain":"base","subject":"`+testSubject+`","event_timestamp":"`+ts+`","location":"[-73.98, 40.75]","longitude":null,"latitude":null}`), nil, ReasonPass, true},
		{"numeric strings inside a multipolygon's second part", decode(t, `{"uid":"s","chain":"arbitrum","subject":"`+testSubject+`","event_timestamp":"`+ts+`","longitude":"135.5","latitude":"35.0"}`), nil, ReasonPass, true},
		{"multipolygon first part outside its hole", with(func(p *astral.Proof) { p.Lng, p.Lat = 101, 1 }), nil, ReasonPass, true},
		{"multipolygon hole is outside", with(func(p *astral.Proof) { p.Lng, p.Lat = 105, 5 }), nil, ReasonOutsideAllow, false},
		{"between multipolygon parts is outside", with(func(p *astral.Proof) { p.Lng, p.Lat = 120, 20 }), nil, ReasonOutsideAllow, false},
		{"outside every allow region", with(func(p *astral.Proof) { p.Lng, p.Lat = -100, 40 }), nil, ReasonOutsideAllow, false},
		{"inside a deny region within an allow region", with(func(p *astral.Proof) { p.Lng, p.Lat = 13.4, 52.5 }), nil, ReasonInsideDeny, false},
		{"deny as GeoJSON", with(func(p *astral.Proof) { p.Lng, p.Lat = 2.35, 48.85 }), func(c *config.Compliance) {
			c.Deny = []config.Region{{Name: "paris", GeoJSON: `{"type":"Polygon","coordinates":[[[2,48],[3,48],[3,49],[2,49],[2,48]]]}`}}
		}, ReasonInsideDeny, false},
		{"no point", with(func(p *astral.Proof) { p.HasPoint, p.Lng, p.Lat = false, 0, 0 }), nil, ReasonNoPoint, false},
		{"address location decodes to no point", decode(t, `{"uid":"n","chain":"base","subject":"`+testSubject+`","event_timestamp":"`+ts+`","location_type":"address","location":"Paris"}`), nil, ReasonNoPoint, false},
		{"0,0 unstated is no point, not the Gulf of Guinea", with(func(p *astral.Proof) { p.HasPoint = false }), func(c *config.Compliance) {
			c.Allow = []config.Region{{Name: "world", BBox: []float64{-180, -90, 180, 90}}}
		}, ReasonNoPoint, false},
		{"too old", with(func(p *astral.Proof) { p.EventTimestamp = now.Add(-24*time.Hour - time.Second) }), nil, ReasonTooOld, false},
		{"exactly max age is still fresh", with(func(p *astral.Proof) { p.EventTimestamp = now.Add(-24 * time.Hour) }), nil, ReasonPass, true},
		{"unreadable event time is too old", with(func(p *astral.Proof) { p.EventTimestamp = time.Time{} }), nil, ReasonTooOld, false},
		{"far future is outside the window", with(func(p *astral.Proof) { p.EventTimestamp = now.Add(time.Hour) }), nil, ReasonTooOld, false},
		{"small clock skew is tolerated", with(func(p *astral.Proof) { p.EventTimestamp = now.Add(time.Minute) }), nil, ReasonPass, true},
		{"revoked", with(func(p *astral.Proof) { p.Revoked = true }), nil, ReasonRevoked, false},
		{"revoked wins over every other failure", with(func(p *astral.Proof) { p.Revoked, p.Subject, p.HasPoint = true, "0xother", false }), nil, ReasonRevoked, false},
		{"wrong subject", with(func(p *astral.Proof) { p.Subject = "0xother" }), nil, ReasonWrongSubject, false},
		{"empty configured subject matches nothing", good, func(c *config.Compliance) { c.Subject = "" }, ReasonWrongSubject, false},
		{"wrong chain", with(func(p *astral.Proof) { p.Chain = "celo" }), nil, ReasonWrongChain, false},
		{"untrusted prover", good, func(c *config.Compliance) { c.TrustedProvers = []string{"0xtrusted"} }, ReasonUntrustedProver, false},
		{"a deny region that does not compile denies everything", good, func(c *config.Compliance) {
			c.Deny = []config.Region{{Name: "broken", GeoJSON: `{"type":"Point","coordinates":[0,0]}`}}
		}, ReasonInsideDeny, false},
		{"an allow region that does not compile allows nothing", good, func(c *config.Compliance) {
			c.Allow = []config.Region{{Name: "broken", GeoJSON: `not json`}}
		}, ReasonOutsideAllow, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testPolicy()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			ok, reason := Check(tt.proof, cfg, now)
			if ok != tt.wantOK || reason != tt.want {
				t.Fatalf("Check = %v, %q; want %v, %q", ok, reason, tt.wantOK, tt.want)
			}
		})
	}
}

func TestValidateRegionsReportsEveryBadRegion(t *testing.T) {
	cfg := testPolicy()
	if err := ValidateRegions(cfg); err != nil {
		t.Fatalf("valid policy: %v", err)
	}
	cfg.Allow = append(cfg.Allow, config.Region{Name: "flat", BBox: []float64{1, 1, 1, 2}})
	cfg.Deny = append(cfg.Deny, config.Region{Name: "line", GeoJSON: `{"type":"LineString","coordinates":[[0,0],[1,1]]}`})
	err := ValidateRegions(cfg)
	if err == nil {
		t.Fatal("want errors")
	}
	for _, want := range []string{`allow[3] "flat"`, `deny[1] "line"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func BenchmarkGateOpen(b *testing.B) {
	cfg := testPolicy()
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	g := New(Deps{Config: func() config.Compliance { return cfg }, Now: func() time.Time { return now }})
	p := astral.Proof{UID: "u", Chain: "base", Subject: testSubject, EventTimestamp: now.Add(-time.Hour), Lng: 135.5, Lat: 35, HasPoint: true}
	g.proof = &p
	if ok, r := g.Open(); !ok {
		b.Fatal(r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g.Open()
	}
}
