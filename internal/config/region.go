package config

import (
	"encoding/json"
	"fmt"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
	"github.com/paulmach/orb/planar"
)

// Geometry returns the region as orb geometry: an orb.Bound for a bbox, else
// the orb.Polygon or orb.MultiPolygon of its GeoJSON. It is nil only for a
// Region that did not come from validation and does not parse.
func (r Region) Geometry() orb.Geometry {
	if r.BBox != nil {
		return orb.Bound{Min: orb.Point{r.BBox[0], r.BBox[1]}, Max: orb.Point{r.BBox[2], r.BBox[3]}}
	}
	if r.geom != nil {
		return r.geom
	}
	g, _ := parseRegionGeoJSON(r.GeoJSON)
	return g
}

// Contains reports whether the point lng/lat lies in the region (a point on
// a bbox edge counts as inside).
func (r Region) Contains(lng, lat float64) bool {
	pt := orb.Point{lng, lat}
	switch g := r.Geometry().(type) {
	case orb.Bound:
		return g.Contains(pt)
	case orb.Polygon:
		return planar.PolygonContains(g, pt)
	case orb.MultiPolygon:
		return planar.MultiPolygonContains(g, pt)
	}
	return false
}

// parseRegionGeoJSON parses a GeoJSON Polygon or MultiPolygon geometry and
// checks what orb does not: closed rings of at least 4 positions, each with
// 2 or 3 numbers, inside -180..180 / -90..90.
func parseRegionGeoJSON(text string) (orb.Geometry, error) {
	g, err := geojson.UnmarshalGeometry([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("is not a valid GeoJSON geometry: %v", err)
	}
	var raw struct {
		Coordinates json.RawMessage `json:"coordinates"`
	}
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		return nil, fmt.Errorf("is not a valid GeoJSON geometry: %v", err)
	}
	var polys [][][][]float64
	switch geom := g.Geometry().(type) {
	case orb.Polygon:
		var p [][][]float64
		if err := json.Unmarshal(raw.Coordinates, &p); err != nil {
			return nil, fmt.Errorf("polygon coordinates: %v", err)
		}
		polys = [][][][]float64{p}
	case orb.MultiPolygon:
		if err := json.Unmarshal(raw.Coordinates, &polys); err != nil {
			return nil, fmt.Errorf("multipolygon coordinates: %v", err)
		}
		if len(geom) == 0 {
			return nil, fmt.Errorf("MultiPolygon has no polygons")
		}
	default:
		return nil, fmt.Errorf("GeoJSON type %q: must be Polygon or MultiPolygon", g.Type)
	}
	for pi, poly := range polys {
		if len(poly) == 0 {
			return nil, fmt.Errorf("polygon %d has no rings", pi)
		}
		for ri, ring := range poly {
			if len(ring) < 4 {
				return nil, fmt.Errorf("polygon %d ring %d has %d positions: a closed ring needs at least 4", pi, ri, len(ring))
			}
			for _, pos := range ring {
				if len(pos) < 2 || len(pos) > 3 {
					return nil, fmt.Errorf("polygon %d ring %d: a position must be [lng, lat]", pi, ri)
				}
				if pos[0] < -180 || pos[0] > 180 || pos[1] < -90 || pos[1] > 90 {
					return nil, fmt.Errorf("polygon %d ring %d: position [%v, %v] is outside -180..180 / -90..90", pi, ri, pos[0], pos[1])
				}
			}
			first, last := ring[0], ring[len(ring)-1]
			if first[0] != last[0] || first[1] != last[1] {
				return nil, fmt.Errorf("polygon %d ring %d is not closed: its last position must equal its first", pi, ri)
			}
		}
	}
	return g.Geometry(), nil
}

// Checked returns r with its geometry parsed by the same checks validation
// runs, for a region read back from somewhere other than the policy file
// (the authority keeper's journaled baseline). A region validation would
// refuse is an error.
func (r Region) Checked() (Region, error) {
	switch {
	case r.BBox != nil && r.GeoJSON != "":
		return r, fmt.Errorf("region %q: both bbox and geojson", r.Name)
	case r.BBox != nil:
		b := r.BBox
		if len(b) != 4 || b[0] >= b[2] || b[1] >= b[3] || b[0] < -180 || b[2] > 180 || b[1] < -90 || b[3] > 90 {
			return r, fmt.Errorf("region %q: bbox %v is not [minLng, minLat, maxLng, maxLat] within -180..180 / -90..90", r.Name, b)
		}
		return r, nil
	case r.GeoJSON != "":
		g, err := parseRegionGeoJSON(r.GeoJSON)
		if err != nil {
			return r, fmt.Errorf("region %q: geojson %v", r.Name, err)
		}
		r.geom = g
		return r, nil
	}
	return r, fmt.Errorf("region %q: neither bbox nor geojson", r.Name)
}
