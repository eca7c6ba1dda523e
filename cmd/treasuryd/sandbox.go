package main

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"treasuryd/internal/config"
	"treasuryd/internal/sim"
)

// sandbox is the pair of embedded simulators a policy with a sandbox: block
// runs against. They are started before the fx app (the desk's loopback
// address must be known before the clients are built) and closed after it.
type sandbox struct {
	desk   *sim.Desk
	astral *sim.Astral
}

// startSandbox starts both simulators on loopback. The Astral simulator holds a fresh valid proof for
// the compliance subject at the centre of the first allow region. The desk
// accepts apiKey, the one the daemon will send. p is not changed: the
// daemon reaches the simulators through upstream().
func startSandbox(p *config.Policy, apiKey string, log *zap.Logger) (*sandbox, error) {
	sb := p.Sandbox
	desk, err := sim.NewDesk(sim.DeskConfig{
		AccountID:     p.AccountID,
		APIKey:        apiKey,
		Seed:          sb.Seed,
		Balances:      sb.Balances,
		Prices:        sb.Price,
		VolatilityBps: sb.VolatilityBps,
		QuoteInterval: sb.QuoteInterval,
		QuoteTTL:      sb.QuoteTTL,
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox desk: %w", err)
	}
	if err := desk.Start("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("sandbox desk: %w", err)
	}
	astral := sim.NewAstral(sim.AstralConfig{})
	if err := astral.Start("127.0.0.1:0"); err != nil {
		desk.Close()
		return nil, fmt.Errorf("sandbox astral: %w", err)
	}
	if c := p.Compliance; c.Enabled {
		lng, lat, err := regionCentre(c.Allow[0])
		if err != nil {
			desk.Close()
			astral.Close()
			return nil, err
		}
		chain := "base"
		if len(c.Chains) > 0 {
			chain = c.Chains[0]
		}
		spec := sim.SandboxProof(c.Subject, chain, lng, lat, time.Now())
		if len(c.TrustedProvers) > 0 {
			spec.Prover = c.TrustedProvers[0]
		}
		uid := astral.AddProof(spec)
		log.Info("sandbox: location proof seeded", zap.String("uid", uid), zap.Float64("lng", lng), zap.Float64("lat", lat))
	}
	log.Info("sandbox: simulators started", zap.String("astra", desk.BaseURL()), zap.String("astral", astral.BaseURL()))
	return &sandbox{desk: desk, astral: astral}, nil
}

// upstream is where the daemon's clients connect: the policy's URLs, or the
// sandbox's simulators. The policy itself is left as the file says, so a
// reload compares like with like.
type upstream struct {
	astraBase, astraWS, astralBase string
}

func policyUpstream(p *config.Policy) upstream {
	return upstream{astraBase: p.Astra.BaseURL, astraWS: p.Astra.WSURL, astralBase: p.Astral.BaseURL}
}

func (s *sandbox) upstream() upstream {
	return upstream{astraBase: s.desk.BaseURL(), astraWS: s.desk.WSURL(), astralBase: s.astral.BaseURL()}
}

func (s *sandbox) Close() {
	if s == nil {
		return
	}
	s.desk.Close()
	s.astral.Close()
}

// regionCentre is a point inside the region: the bbox centre, or the first
// vertex-average of a GeoJSON polygon's outer ring (good enough for the
// convex regions a sandbox uses; the gate checks it for real anyway).
func regionCentre(r config.Region) (lng, lat float64, err error) {
	if len(r.BBox) == 4 {
		return (r.BBox[0] + r.BBox[2]) / 2, (r.BBox[1] + r.BBox[3]) / 2, nil
	}
	pts, err := outerRing(r.GeoJSON)
	if err != nil || len(pts) == 0 {
		return 0, 0, errors.Join(fmt.Errorf("sandbox: region %q has no usable outer ring", r.Name), err)
	}
	n := len(pts) - 1 // the ring is closed: the last point repeats the first
	if n < 1 {
		n = 1
	}
	for _, pt := range pts[:n] {
		lng += pt[0]
		lat += pt[1]
	}
	return lng / float64(n), lat / float64(n), nil
}
