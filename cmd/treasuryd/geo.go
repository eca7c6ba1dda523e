package main

import (
	"fmt"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/geojson"
)

// outerRing returns the outer ring of a GeoJSON Polygon, or of the first
// polygon of a MultiPolygon.
func outerRing(text string) ([]orb.Point, error) {
	g, err := geojson.UnmarshalGeometry([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("geojson: %w", err)
	}
	switch v := g.Geometry().(type) {
	case orb.Polygon:
		if len(v) > 0 {
			return v[0], nil
		}
	case orb.MultiPolygon:
		if len(v) > 0 && len(v[0]) > 0 {
			return v[0][0], nil
		}
	}
	return nil, fmt.Errorf("geojson: not a Polygon or MultiPolygon")
}
