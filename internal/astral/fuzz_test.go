package astral_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"treasuryd/internal/astral"
)

// The fuzz targets serve a fuzzed body as a 200 answer from a loopback index
// and call the real client. Beyond "no panic": every failure is an
// *astral.APIError, and every proof that claims a point has one that is
// finite, inside WGS84 ranges, and read from the body (the longitude/latitude
// columns or the location text), never invented as 0,0.

// fzDocPage is the reference's list sample: the doc shape.
const fzDocPage = `{
  "data": [
    {
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
    }
  ],
  "count": 1,
  "limit": 100,
  "offset": 0
}`

// fzServerPage is the running server's shape: pagination, COUNT(*) as a
// string, NUMERIC coordinates as strings, a "[lng, lat]" location.
const fzServerPage = `{"data":[
 {"uid":"0xa1","chain":"base","prover":"0xp","subject":"0xs","event_timestamp":"1726403696",
  "srs":"EPSG:4326","location_type":"coordinate-decimal+lon-lat","location":"[2.3522, 48.8566]",
  "longitude":"2.3522","latitude":"48.8566","revoked":"false","created_at":"2024-09-15 12:35:00+00"},
 {"uid":"0xa2","chain":"celo","subject":"0xs","event_timestamp":1726403696,
  "location_type":"geojson-point","location":"{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[13.4,52.5,34]}}",
  "longitude":null,"latitude":null,"revoked":0}
],"pagination":{"total":"2","limit":20,"offset":0,"next":null}}`

// fzProofSample is the reference's single-proof sample.
const fzProofSample = `{
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

// fzProofVariants are single proofs that reach the other readings.
var fzProofVariants = []string{
	`{"uid":"u","longitude":"-74.0060","latitude":"40.7128"}`,
	`{"uid":"u","location_type":"coordinate-decimal+lon-lat","location":"[-74.0060, 40.7128]"}`,
	`{"uid":"u","location":"[\"-74.0060\", \"40.7128\"]","longitude":"abc","latitude":1}`,
	`{"uid":"u","longitude":181,"latitude":0,"location":"[1e999, 0]"}`,
	`{"uid":"u","longitude":"NaN","latitude":"Inf","location":"{\"type\":\"Point\",\"coordinates\":[1]}"}`,
	`{"uid":"u","location":"{\"type\":\"Feature\",\"geometry\":{\"type\":\"Feature\",\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,2]}}}"}`,
	`{"uid":"u","revoked":"maybe","timestamp":99999999999}`,
	`{}`, `null`, `[]`, `"x"`, `{"uid":1,"location":{}}`,
}

// fzIndex answers every request with 200: the fuzzed body for the first
// page (offset 0) and for single proofs, and an empty page after it, so one
// input costs at most two requests however its pagination reads.
type fzIndex struct {
	body atomic.Pointer[[]byte]
}

func (x *fzIndex) serve(b []byte) { x.body.Store(&b) }

func fzStart(f *testing.F) (*fzIndex, *astral.Client) {
	f.Helper()
	x := &fzIndex{}
	x.serve(nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == astral.EndpointProofs && r.URL.Query().Get("offset") != "0" {
			_, _ = w.Write([]byte(`{"data":[]}`))
			return
		}
		_, _ = w.Write(*x.body.Load())
	}))
	f.Cleanup(srv.Close)
	return x, astral.New(astral.Options{BaseURL: srv.URL, Timeout: 2 * time.Second, MaxAttempts: 1})
}

func fzCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fzFloat reads a coordinate as SPEC 2 allows it: a JSON number or a
// numeric string.
func fzFloat(raw json.RawMessage) (float64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false
	}
	text := string(raw)
	if raw[0] == '"' {
		if json.Unmarshal(raw, &text) != nil {
			return 0, false
		}
		text = strings.TrimSpace(text)
	}
	v, err := strconv.ParseFloat(text, 64)
	return v, err == nil && !math.IsNaN(v) && !math.IsInf(v, 0)
}

// fzCheckProof asserts the point contract of one delivered proof against
// the raw record it came from.
func fzCheckProof(t *testing.T, p astral.Proof, raw json.RawMessage) {
	t.Helper()
	if !p.HasPoint {
		return
	}
	if math.IsNaN(p.Lng) || math.IsNaN(p.Lat) || math.IsInf(p.Lng, 0) || math.IsInf(p.Lat, 0) ||
		p.Lng < -180 || p.Lng > 180 || p.Lat < -90 || p.Lat > 90 {
		t.Fatalf("proof %q has point (%v, %v) outside WGS84", p.UID, p.Lng, p.Lat)
	}
	// A map, as the columns' keys are matched exactly (a struct would also
	// take "Longitude").
	var cols map[string]json.RawMessage
	_ = json.Unmarshal(raw, &cols)
	lng, ok1 := fzFloat(cols["longitude"])
	lat, ok2 := fzFloat(cols["latitude"])
	if ok1 && ok2 && lng == p.Lng && lat == p.Lat {
		return // from the columns
	}
	if l, la, ok := astral.ParsePoint(p.Location); ok && l == p.Lng && la == p.Lat {
		return // from the location text
	}
	t.Fatalf("proof %q has point (%v, %v) that is in neither its columns (%s, %s) nor its location %q",
		p.UID, p.Lng, p.Lat, cols["longitude"], cols["latitude"], p.Location)
}

func fzCheckErr(t *testing.T, err error) {
	t.Helper()
	var apiErr *astral.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("a 200 answer failed with %T %v, want *astral.APIError", err, err)
	}
}

func FuzzProofsPage(f *testing.F) {
	for _, s := range []string{fzDocPage, fzServerPage,
		`{"data":[],"count":0,"limit":100,"offset":0}`,
		`{"data":[{"uid":"a","location":"[1,2]"},{"uid":"b","longitude":"3","latitude":"4"}],"count":"2","limit":"2"}`,
		`{"data":[{"uid":"a"}],"pagination":{"total":5,"limit":"1","next":"/api/v0/location-proofs?offset=1"}}`,
		`{"data":[1]}`, `{"data":null}`, `{"data":{}}`, `[]`, ``} {
		f.Add([]byte(s))
	}
	for _, v := range fzProofVariants {
		f.Add([]byte(`{"data":[` + v + `]}`))
	}
	x, c := fzStart(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		x.serve(body)
		var got []astral.Proof
		err := c.Proofs(fzCtx(t), astral.Query{}, func(p astral.Proof) error {
			got = append(got, p)
			return nil
		})
		var page struct {
			Data []json.RawMessage `json:"data"`
		}
		pageErr := json.Unmarshal(body, &page)
		if err != nil {
			fzCheckErr(t, err)
		} else if pageErr != nil {
			t.Fatalf("Proofs succeeded on a body encoding/json rejects (%v): %q", pageErr, body)
		}
		if len(got) > len(page.Data) {
			t.Fatalf("%d proofs delivered from a page of %d", len(got), len(page.Data))
		}
		for i, p := range got {
			fzCheckProof(t, p, page.Data[i])
		}
		if err == nil && len(got) != len(page.Data) {
			t.Fatalf("Proofs succeeded delivering %d of the page's %d records", len(got), len(page.Data))
		}
	})
}

func FuzzProof(f *testing.F) {
	f.Add([]byte(fzProofSample))
	for _, v := range fzProofVariants {
		f.Add([]byte(v))
	}
	x, c := fzStart(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		x.serve(body)
		p, err := c.Proof(fzCtx(t), "0x1234")
		var obj map[string]json.RawMessage
		isObject := json.Unmarshal(body, &obj) == nil && obj != nil
		if err != nil {
			fzCheckErr(t, err)
			if isObject {
				t.Fatalf("Proof refused a JSON object: %v: %q", err, body)
			}
			return
		}
		if !isObject {
			t.Fatalf("Proof succeeded on a body that is not a JSON object: %q", body)
		}
		fzCheckProof(t, p, body)
	})
}
