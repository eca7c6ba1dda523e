package astral

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// Proof is one location proof (an EAS attestation) as the index serves it.
// Every reading of the wire that the doc leaves open happens in DecodeProof.
type Proof struct {
	UID            string
	Chain          string
	Prover         string
	Subject        string
	Timestamp      time.Time // attestation time; zero when absent or unreadable
	EventTimestamp time.Time // when the location was observed; zero when absent or unreadable
	SRS            string
	LocationType   string
	Location       string // raw text: GeoJSON or "[lng, lat]" or anything else
	// Lng and Lat are the proof's point, valid only when HasPoint. Coordinates
	// are geometry, not money, so float64.
	Lng, Lat    float64
	HasPoint    bool
	Revoked     bool
	Memo        string
	RecipeTypes []string
	MediaTypes  []string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Config is the index's /api/v0/config answer.
type Config struct {
	Chains  map[string]bool // chain name -> enabled
	Schema  string
	Version string
}

// Stats is the index's /api/v0/location-proofs/stats answer.
type Stats struct {
	Total   int64
	ByChain map[string]int64
	// Last24Hours, Last7Days and Last30Days are the by_time counts.
	Last24Hours int64
	Last7Days   int64
	Last30Days  int64
	Revoked     int64
}

// errNotObject is returned when a record is not a JSON object at all.
var errNotObject = errors.New("astral: proof is not a JSON object")

// DecodeProof decodes one proof record leniently: fields of the wrong type are
// left zero rather than failing the record, because the gate checks every
// field again and rejects what it cannot read. Only a record that is not a
// JSON object is an error. Readings (SPEC 2):
//   - longitude/latitude may be JSON numbers, numeric strings, null or absent;
//   - location is GeoJSON text or a plain "[lng, lat]" string;
//   - the point comes from longitude/latitude when both are readable, else from
//     location; otherwise HasPoint is false (never 0,0);
//   - revoked present but unreadable counts as revoked (fail closed).
func DecodeProof(data []byte) (Proof, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil || m == nil {
		return Proof{}, errNotObject
	}
	p := Proof{
		UID:          rawString(m["uid"]),
		Chain:        rawString(m["chain"]),
		Prover:       rawString(m["prover"]),
		Subject:      rawString(m["subject"]),
		SRS:          rawString(m["srs"]),
		LocationType: rawString(m["location_type"]),
		Location:     rawString(m["location"]),
		Memo:         rawString(m["memo"]),
		RecipeTypes:  rawStrings(m["recipe_types"]),
		MediaTypes:   rawStrings(m["media_types"]),
	}
	p.Timestamp = rawTime(m["timestamp"])
	p.EventTimestamp = rawTime(m["event_timestamp"])
	p.CreatedAt = rawTime(m["created_at"])
	p.UpdatedAt = rawTime(m["updated_at"])
	p.Revoked = rawRevoked(m["revoked"])

	lng, okLng := rawFloat(m["longitude"])
	lat, okLat := rawFloat(m["latitude"])
	if okLng && okLat && validPoint(lng, lat) {
		p.Lng, p.Lat, p.HasPoint = lng, lat, true
	} else if lng, lat, ok := ParsePoint(p.Location); ok {
		p.Lng, p.Lat, p.HasPoint = lng, lat, true
	}
	return p, nil
}

// ParsePoint reads a point from a location text: a GeoJSON Point (bare
// geometry or a Feature holding one) or a plain "[lng, lat]" array. Anything
// else, or coordinates outside WGS84 ranges, is not a point.
func ParsePoint(location string) (lng, lat float64, ok bool) {
	s := strings.TrimSpace(location)
	switch {
	case strings.HasPrefix(s, "{"):
		return geoJSONPoint([]byte(s), 0)
	case strings.HasPrefix(s, "["):
		return arrayPoint([]byte(s), false)
	}
	return 0, 0, false
}

// geoJSONPoint reads a GeoJSON Point geometry, or the Point geometry of a
// Feature. Its coordinates must hold two (or, with altitude, three) numbers:
// a library that defaults a missing coordinate to 0,0 would put a proof
// somewhere it never was, so this is read by hand.
func geoJSONPoint(data []byte, depth int) (lng, lat float64, ok bool) {
	var g struct {
		Type        string          `json:"type"`
		Coordinates json.RawMessage `json:"coordinates"`
		Geometry    json.RawMessage `json:"geometry"`
	}
	if json.Unmarshal(data, &g) != nil {
		return 0, 0, false
	}
	switch g.Type {
	case "Point":
		return arrayPoint(g.Coordinates, true)
	case "Feature":
		if depth == 0 && !isNull(g.Geometry) {
			return geoJSONPoint(g.Geometry, depth+1)
		}
	}
	return 0, 0, false
}

// arrayPoint reads [lng, lat] (numbers, or numeric strings); with altitude
// allowed, [lng, lat, alt] too.
func arrayPoint(data []byte, altitude bool) (lng, lat float64, ok bool) {
	var parts []json.RawMessage
	if json.Unmarshal(data, &parts) != nil || len(parts) < 2 || len(parts) > 3 || (len(parts) == 3 && !altitude) {
		return 0, 0, false
	}
	lng, ok1 := rawFloat(parts[0])
	lat, ok2 := rawFloat(parts[1])
	if !ok1 || !ok2 || !validPoint(lng, lat) {
		return 0, 0, false
	}
	return lng, lat, true
}

// validPoint rejects NaN, infinities and values outside WGS84 ranges: such a
// "point" is unreadable, not somewhere.
func validPoint(lng, lat float64) bool {
	if math.IsNaN(lng) || math.IsNaN(lat) || math.IsInf(lng, 0) || math.IsInf(lat, 0) {
		return false
	}
	return lng >= -180 && lng <= 180 && lat >= -90 && lat <= 90
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// rawString reads a JSON string; anything else is "".
func rawString(raw json.RawMessage) string {
	if isNull(raw) {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

func rawStrings(raw json.RawMessage) []string {
	if isNull(raw) {
		return nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, rawString(it))
	}
	return out
}

// rawFloat reads a JSON number or a numeric string (NUMERIC columns arrive as
// strings from some drivers). null, absent and anything else are unreadable.
func rawFloat(raw json.RawMessage) (float64, bool) {
	if isNull(raw) {
		return 0, false
	}
	t := bytes.TrimSpace(raw)
	text := string(t)
	if t[0] == '"' {
		if json.Unmarshal(t, &text) != nil {
			return 0, false
		}
		text = strings.TrimSpace(text)
	} else if t[0] != '-' && (t[0] < '0' || t[0] > '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// rawInt reads a count: a JSON number or a numeric string (COUNT(*) arrives
// as a string from node-postgres). ok is false when unreadable.
func rawInt(raw json.RawMessage) (int64, bool) {
	f, ok := rawFloat(raw)
	if !ok || f < 0 || f > math.MaxInt64/2 || f != math.Trunc(f) {
		return 0, false
	}
	return int64(f), true
}

// rawTime reads an ISO 8601 string (RFC 3339, with or without fraction) or a
// number of Unix seconds (EAS's uint256 eventTimestamp). Unreadable: zero,
// which the gate treats as too old.
func rawTime(raw json.RawMessage) time.Time {
	if isNull(raw) {
		return time.Time{}
	}
	t := bytes.TrimSpace(raw)
	if t[0] == '"' {
		var s string
		if json.Unmarshal(t, &s) != nil {
			return time.Time{}
		}
		s = strings.TrimSpace(s)
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999"} {
			if ts, err := time.Parse(layout, s); err == nil {
				return ts.UTC()
			}
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 && n < 1e11 {
			return time.Unix(n, 0).UTC()
		}
		return time.Time{}
	}
	if n, ok := rawInt(t); ok && n > 0 && n < 1e11 {
		return time.Unix(n, 0).UTC()
	}
	return time.Time{}
}

// rawRevoked reads the revoked flag. Absent or null: false. A value present
// but unreadable counts as revoked, so that garbage can only close the gate.
func rawRevoked(raw json.RawMessage) bool {
	if isNull(raw) {
		return false
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return b
	}
	switch strings.ToLower(strings.TrimSpace(rawString(raw))) {
	case "false", "0", "f":
		return false
	}
	if n, ok := rawInt(raw); ok && n == 0 {
		return false
	}
	return true
}
