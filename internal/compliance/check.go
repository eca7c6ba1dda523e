// Package compliance is the location-proof gate (SPEC 5.5, invariant 5): no
// accept and no withdrawal unless a fresh Astral location proof places the
// subject inside an allowed region and outside every denied one. It fails
// closed: no proof, a bad proof or an unreachable index after the last good
// proof aged out all close the gate.
package compliance

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/paulmach/orb"
	"github.com/paulmach/orb/planar"

	"treasuryd/internal/astral"
	"treasuryd/internal/config"
)

// Reasons: stable strings, also the result label of
// treasuryd_compliance_checks_total. ReasonPass is the only open one.
const (
	ReasonPass            = "pass"
	ReasonNoProof         = "no_proof"
	ReasonTooOld          = "too_old"
	ReasonRevoked         = "revoked"
	ReasonWrongSubject    = "wrong_subject"
	ReasonWrongChain      = "wrong_chain"
	ReasonUntrustedProver = "untrusted_prover"
	ReasonOutsideAllow    = "outside_allow"
	ReasonInsideDeny      = "inside_deny"
	ReasonNoPoint         = "no_point"
	ReasonUnreachable     = "unreachable"
	// ReasonDisabled is what Open answers when compliance is disabled by policy.
	ReasonDisabled = "compliance disabled"
)

// maxFutureSkew is how far in the future an event_timestamp may lie (clock
// skew between the prover and us). Beyond it a proof is not within its age
// window: a future-dated proof would otherwise stay "fresh" for longer than
// max_proof_age.
const maxFutureSkew = 5 * time.Minute

// region is one compiled allow/deny region.
type region struct {
	name string
	bbox *orb.Bound
	poly orb.Polygon
	mpol orb.MultiPolygon
	bad  bool // did not compile: allow matches nothing, deny matches everything
}

func (r *region) contains(pt orb.Point) bool {
	switch {
	case r.bad:
		return false
	case r.bbox != nil:
		return r.bbox.Contains(pt)
	case r.poly != nil:
		return planar.PolygonContains(r.poly, pt)
	case r.mpol != nil:
		return planar.MultiPolygonContains(r.mpol, pt)
	}
	return false
}

// policy is a compiled compliance section: regions parsed once per config
// change, not per check.
type policy struct {
	src     config.Compliance
	subject string
	chains  []string // lower-cased
	provers []string // lower-cased
	allow   []region
	deny    []region
	errs    []error // regions that did not compile (policy validation should prevent any)
}

func lowerAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToLower(strings.TrimSpace(s))
	}
	return out
}

func compileRegion(kind string, i int, rc config.Region) (region, error) {
	r := region{name: rc.Name}
	if rc.GeoJSON == "" {
		if len(rc.BBox) != 4 || !(rc.BBox[0] < rc.BBox[2]) || !(rc.BBox[1] < rc.BBox[3]) {
			r.bad = true
			return r, fmt.Errorf("compliance.%s[%d] %q: bbox must be [minLng, minLat, maxLng, maxLat] with min < max", kind, i, rc.Name)
		}
		b := orb.Bound{Min: orb.Point{rc.BBox[0], rc.BBox[1]}, Max: orb.Point{rc.BBox[2], rc.BBox[3]}}
		r.bbox = &b
		return r, nil
	}
	// The same parse validation ran (config.Region.Geometry), so the gate
	// and `treasuryd validate` agree on every region.
	switch geom := rc.Geometry().(type) {
	case orb.Polygon:
		r.poly = geom
	case orb.MultiPolygon:
		r.mpol = geom
	default:
		r.bad = true
		return r, fmt.Errorf("compliance.%s[%d] %q: geojson is not a valid Polygon or MultiPolygon", kind, i, rc.Name)
	}
	return r, nil
}

func compile(cfg config.Compliance) *policy {
	p := &policy{
		src:     cfg,
		subject: strings.ToLower(strings.TrimSpace(cfg.Subject)),
		chains:  lowerAll(cfg.Chains),
		provers: lowerAll(cfg.TrustedProvers),
	}
	for i, rc := range cfg.Allow {
		r, err := compileRegion("allow", i, rc)
		p.allow = append(p.allow, r)
		if err != nil {
			p.errs = append(p.errs, err)
		}
	}
	for i, rc := range cfg.Deny {
		r, err := compileRegion("deny", i, rc)
		p.deny = append(p.deny, r)
		if err != nil {
			p.errs = append(p.errs, err)
		}
	}
	return p
}

// sameRegions compares region lists; equal strings share storage after a
// no-op reload, so this is cheap.
func sameRegions(a, b []config.Region) bool {
	return slices.EqualFunc(a, b, func(x, y config.Region) bool {
		return x.Name == y.Name && x.GeoJSON == y.GeoJSON && slices.Equal(x.BBox, y.BBox)
	})
}

// matches reports whether p was compiled from cfg.
func (p *policy) matches(cfg config.Compliance) bool {
	s := p.src
	return s.Enabled == cfg.Enabled && s.Subject == cfg.Subject && s.MaxProofAge == cfg.MaxProofAge &&
		s.RefreshInterval == cfg.RefreshInterval && slices.Equal(s.Chains, cfg.Chains) &&
		slices.Equal(s.TrustedProvers, cfg.TrustedProvers) && sameRegions(s.Allow, cfg.Allow) && sameRegions(s.Deny, cfg.Deny)
}

// check is Check on a compiled policy. The order of the checks fixes which
// reason a proof failing several gets: who and where it is from first, then
// its age, then its place.
func (p *policy) check(pr astral.Proof, now time.Time) (bool, string) {
	return verdictOf(p.identity(pr), p.place(pr), pr.EventTimestamp, p.src.MaxProofAge, now)
}

// verdictOf combines the time-independent parts of a check with its age.
func verdictOf(identity, place string, event time.Time, maxAge time.Duration, now time.Time) (bool, string) {
	switch {
	case identity != "":
		return false, identity
	case !fresh(event, maxAge, now):
		return false, ReasonTooOld
	case place != "":
		return false, place
	}
	return true, ReasonPass
}

// identity checks who made the proof and whether it stands; "" is a pass.
func (p *policy) identity(pr astral.Proof) string {
	switch {
	case pr.Revoked:
		return ReasonRevoked
	case p.subject == "" || !strings.EqualFold(strings.TrimSpace(pr.Subject), p.subject):
		return ReasonWrongSubject
	case len(p.chains) > 0 && !slices.Contains(p.chains, strings.ToLower(pr.Chain)):
		return ReasonWrongChain
	case len(p.provers) > 0 && !slices.Contains(p.provers, strings.ToLower(strings.TrimSpace(pr.Prover))):
		return ReasonUntrustedProver
	}
	return ""
}

// place checks the proof's point against the regions; "" is a pass.
func (p *policy) place(pr astral.Proof) string {
	if !pr.HasPoint {
		return ReasonNoPoint
	}
	pt := orb.Point{pr.Lng, pr.Lat}
	inAllow := false
	for i := range p.allow {
		if p.allow[i].contains(pt) {
			inAllow = true
			break
		}
	}
	if !inAllow {
		return ReasonOutsideAllow
	}
	for i := range p.deny {
		if p.deny[i].bad || p.deny[i].contains(pt) {
			return ReasonInsideDeny
		}
	}
	return ""
}

// fresh: the event lies within [now − maxAge, now + maxFutureSkew]. A zero
// (unreadable) event time is never fresh; a non-positive maxAge admits nothing.
func fresh(event time.Time, maxAge time.Duration, now time.Time) bool {
	if event.IsZero() || maxAge <= 0 {
		return false
	}
	age := now.Sub(event)
	return age <= maxAge && age >= -maxFutureSkew
}

// Check runs every local check of SPEC 5.5 on one proof: not revoked,
// subject, chain, prover, event_timestamp within max_proof_age, a readable
// point inside an allow region and outside every deny region. Subject and
// prover compare case-insensitively (hex addresses). It is pure; it compiles
// cfg's regions on each call, which the Gate avoids by caching.
func Check(p astral.Proof, cfg config.Compliance, now time.Time) (ok bool, reason string) {
	return compile(cfg).check(p, now)
}

// ValidateRegions compiles cfg's regions and returns every error, for callers
// that want to refuse a bad section up front. (A region that does not compile
// makes the gate fail closed: an allow region matches nothing, a deny region
// everything.)
func ValidateRegions(cfg config.Compliance) error {
	return errors.Join(compile(cfg).errs...)
}
