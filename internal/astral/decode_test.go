package astral

import (
	"testing"
	"time"
)

// docSample is the proof of the reference's samples, verbatim.
const docSample = `{
      "uid": "0x1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef",
      "chain": "sepolia",
      "prover": "0xabcdef1234567890abcdef1234567890abcdef12",
      "subject": "0xabcdef1234567890abcdef1234567890abcdef12",
      "timestamp": "2023-09-15T12:34:56Z",
      "event_timestamp": "2023-09-15T12:34:56Z",
      "srs": "WGS84",
      "location_type": "point",
      "location": "{\"type\":\"Point\",\"coordinates\":[-122.4194,37.7749]}",
      "longitude": -122.4194,
      "latitude": 37.7749,
      "recipe_types": ["gps", "ip"],
      "recipe_payloads": ["...", "..."],
      "media_types": ["image/jpeg"],
      "media_data": ["..."],
      "memo": "San Francisco city center",
      "revoked": false,
      "created_at": "2023-09-15T12:35:00Z",
      "updated_at": "2023-09-15T12:35:00Z"
    }`

func TestDecodeProofDocSampleGivesTheDocumentedValues(t *testing.T) {
	p, err := DecodeProof([]byte(docSample))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2023, 9, 15, 12, 34, 56, 0, time.UTC)
	created := time.Date(2023, 9, 15, 12, 35, 0, 0, time.UTC)
	checks := []struct {
		name      string
		got, want any
	}{
		{"uid", p.UID, "0x1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef"},
		{"chain", p.Chain, "sepolia"},
		{"prover", p.Prover, "0xabcdef1234567890abcdef1234567890abcdef12"},
		{"subject", p.Subject, "0xabcdef1234567890abcdef1234567890abcdef12"},
		{"timestamp", p.Timestamp, at},
		{"event_timestamp", p.EventTimestamp, at},
		{"srs", p.SRS, "WGS84"},
		{"location_type", p.LocationType, "point"},
		{"location", p.Location, `{"type":"Point","coordinates":[-122.4194,37.7749]}`},
		{"lng", p.Lng, -122.4194},
		{"lat", p.Lat, 37.7749},
		{"has point", p.HasPoint, true},
		{"revoked", p.Revoked, false},
		{"memo", p.Memo, "San Francisco city center"},
		{"recipe types", len(p.RecipeTypes), 2},
		{"media types", len(p.MediaTypes), 1},
		{"created_at", p.CreatedAt, created},
		{"updated_at", p.UpdatedAt, created},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestDecodeProofReadsThePointFromColumnsOrLocationNeverZero(t *testing.T) {
	tests := []struct {
		name     string
		fields   string // JSON object members after uid
		wantOK   bool
		lng, lat float64
	}{
		{"numbers", `"longitude": 2.35, "latitude": 48.85`, true, 2.35, 48.85},
		{"numeric strings", `"longitude": "2.35", "latitude": " 48.85 "`, true, 2.35, 48.85},
		{"mixed number and string", `"longitude": 2.35, "latitude": "48.85"`, true, 2.35, 48.85},
		{"columns win over location", `"longitude": 2.35, "latitude": 48.85, "location": "[10, 20]"`, true, 2.35, 48.85},
		{"null columns, geojson location", `"longitude": null, "latitude": null, "location": "{\"type\":\"Point\",\"coordinates\":[-73.98,40.75]}"`, true, -73.98, 40.75},
		{"absent columns, array location", `"location": "[-73.98, 40.75]"`, true, -73.98, 40.75},
		{"array location of strings", `"location": "[\"-73.98\", \"40.75\"]"`, true, -73.98, 40.75},
		{"one column null falls back to location", `"longitude": 2.35, "latitude": null, "location": "[-73.98, 40.75]"`, true, -73.98, 40.75},
		{"geojson feature location", `"location": "{\"type\":\"Feature\",\"properties\":{},\"geometry\":{\"type\":\"Point\",\"coordinates\":[13.4,52.5]}}"`, true, 13.4, 52.5},
		{"zero zero is a real point when stated", `"longitude": 0, "latitude": 0`, true, 0, 0},
		{"nothing at all", ``, false, 0, 0},
		{"address location", `"location_type": "address", "location": "10 Downing St"`, false, 0, 0},
		{"garbage columns and location", `"longitude": "east", "latitude": {}, "location": "nowhere"`, false, 0, 0},
		{"NaN strings", `"longitude": "NaN", "latitude": "NaN"`, false, 0, 0},
		{"out of range columns", `"longitude": 200, "latitude": 95`, false, 0, 0},
		{"array with one number", `"location": "[1]"`, false, 0, 0},
		{"array with three numbers", `"location": "[1, 2, 3]"`, false, 0, 0},
		{"geojson polygon is not a point", `"location": "{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[1,0],[1,1],[0,0]]]}"`, false, 0, 0},
		{"broken geojson", `"location": "{\"type\":\"Point\",\"coordinates\":"`, false, 0, 0},
		{"booleans", `"longitude": true, "latitude": false`, false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"uid": "0x1"`
			if tt.fields != "" {
				body += ", " + tt.fields
			}
			p, err := DecodeProof([]byte(body + "}"))
			if err != nil {
				t.Fatal(err)
			}
			if p.HasPoint != tt.wantOK {
				t.Fatalf("HasPoint = %v, want %v (point %v,%v)", p.HasPoint, tt.wantOK, p.Lng, p.Lat)
			}
			if p.Lng != tt.lng || p.Lat != tt.lat {
				t.Fatalf("point = %v,%v, want %v,%v", p.Lng, p.Lat, tt.lng, tt.lat)
			}
		})
	}
}

func TestDecodeProofRevokedFailsClosedOnGarbage(t *testing.T) {
	tests := []struct {
		raw  string
		want bool
	}{
		{`true`, true}, {`false`, false}, {`null`, false}, {`"false"`, false}, {`"true"`, true},
		{`0`, false}, {`1`, true}, {`"maybe"`, true}, {`{}`, true},
	}
	for _, tt := range tests {
		p, err := DecodeProof([]byte(`{"uid":"u","revoked":` + tt.raw + `}`))
		if err != nil {
			t.Fatal(err)
		}
		if p.Revoked != tt.want {
			t.Errorf("revoked %s: got %v, want %v", tt.raw, p.Revoked, tt.want)
		}
	}
	if p, _ := DecodeProof([]byte(`{"uid":"u"}`)); p.Revoked {
		t.Error("absent revoked read as revoked")
	}
}

func TestDecodeProofTimestampForms(t *testing.T) {
	want := time.Date(2024, 3, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		raw  string
		want time.Time
	}{
		{`"2024-03-01T10:00:00Z"`, want},
		{`"2024-03-01T10:00:00.000Z"`, want},
		{`"2024-03-01T11:00:00+01:00"`, want},
		{`"2024-03-01 10:00:00"`, want},
		{`1709287200`, want},
		{`"1709287200"`, want},
		{`"yesterday"`, time.Time{}},
		{`null`, time.Time{}},
		{`-5`, time.Time{}},
		{`1e300`, time.Time{}},
	}
	for _, tt := range tests {
		p, err := DecodeProof([]byte(`{"event_timestamp":` + tt.raw + `}`))
		if err != nil {
			t.Fatal(err)
		}
		if !p.EventTimestamp.Equal(tt.want) {
			t.Errorf("event_timestamp %s: got %v, want %v", tt.raw, p.EventTimestamp, tt.want)
		}
	}
}

func TestDecodeProofGarbageNeverPanics(t *testing.T) {
	inputs := []string{
		``, `null`, `[]`, `"x"`, `42`, `{`, `{"uid":`, `{"uid": 5, "chain": [], "subject": {}}`,
		`{"longitude": "", "latitude": ""}`, `{"location": ""}`, `{"location": "["}`, `{"location": "{"}`,
		`{"location": "{\"type\":\"Point\",\"coordinates\":[]}"}`, `{"location": "{\"type\":\"Point\",\"coordinates\":null}"}`,
		`{"location": "[null, null]"}`, `{"recipe_types": "gps"}`, `{"recipe_types": [1, null, {}]}`,
		`{"event_timestamp": {}, "timestamp": []}`, `{"longitude": "1e999", "latitude": "-1e999"}`,
	}
	for _, in := range inputs {
		p, err := DecodeProof([]byte(in))
		if err == nil && p.HasPoint {
			t.Errorf("%q: garbage produced a point %v,%v", in, p.Lng, p.Lat)
		}
	}
	for _, in := range []string{``, `null`, `[]`, `"x"`, `42`, `{`} {
		if _, err := DecodeProof([]byte(in)); err == nil {
			t.Errorf("%q: want an error for a non-object record", in)
		}
	}
}

func TestParseRetryAfterIsBounded(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"2", 2 * time.Second}, {"-3", 0}, {"soon", 0},
		{"86400", maxRetryAfter},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in); got != tt.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	past := time.Now().Add(-time.Hour).UTC().Format(http1123)
	if got := parseRetryAfter(past); got != 0 {
		t.Errorf("a past date waits %v, want 0", got)
	}
}

const http1123 = "Mon, 02 Jan 2006 15:04:05 GMT"

func TestBackoffStaysWithinItsBound(t *testing.T) {
	for attempt := 0; attempt < 40; attempt++ {
		for i := 0; i < 50; i++ {
			d := backoff(attempt)
			bound := backoffBase << attempt
			if bound > backoffCap || bound <= 0 {
				bound = backoffCap
			}
			if d < 0 || d >= bound {
				t.Fatalf("attempt %d: backoff %v outside [0, %v)", attempt, d, bound)
			}
		}
	}
}
