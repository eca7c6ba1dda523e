package main

import (
	"errors"
	"fmt"
	"strings"
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
	chain  *sim.Chain // serves eth_call for the Astral simulator's proofs
}

// startSandbox starts the simulators on loopback: the desk, the Astral
// index, and the chain JSON-RPC endpoint that holds the index's proofs as
// EAS attestations (at the policy's EAS addresses), so verify_onchain
// checks them for real. The Astral simulator holds a fresh valid proof for
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
	astral := sim.NewAstral(sim.AstralConfig{Chains: sandboxChains(p.Compliance)})
	if err := astral.Start("127.0.0.1:0"); err != nil {
		desk.Close()
		return nil, fmt.Errorf("sandbox astral: %w", err)
	}
	chain, err := startSandboxChain(p.Compliance, astral)
	if err != nil {
		desk.Close()
		astral.Close()
		return nil, err
	}
	if c := p.Compliance; c.Enabled {
		lng, lat, err := regionCentre(c.Allow[0])
		if err != nil {
			desk.Close()
			astral.Close()
			chain.Close()
			return nil, err
		}
		on := "base"
		if len(c.Chains) > 0 {
			on = c.Chains[0]
		}
		spec := sim.SandboxProof(c.Subject, on, lng, lat, time.Now())
		if len(c.TrustedProvers) > 0 {
			spec.Prover = c.TrustedProvers[0]
		}
		uid := astral.AddProof(spec)
		log.Info("sandbox: location proof seeded", zap.String("uid", uid), zap.Float64("lng", lng), zap.Float64("lat", lat))
	}
	log.Info("sandbox: simulators started", zap.String("astra", desk.BaseURL()), zap.String("astral", astral.BaseURL()),
		zap.String("chain", chain.BaseURL()))
	return &sandbox{desk: desk, astral: astral, chain: chain}, nil
}

// sandboxChains are the chains the sandbox's index supports: the usual four
// and any the policy names.
func sandboxChains(c config.Compliance) []string {
	chains := []string{"arbitrum", "celo", "sepolia", "base"}
	add := func(name string) {
		for _, have := range chains {
			if strings.EqualFold(have, name) {
				return
			}
		}
		chains = append(chains, name)
	}
	for _, name := range c.Chains {
		add(name)
	}
	if v := c.VerifyOnchain; v != nil {
		for _, ch := range v.Chains {
			add(ch.Name)
		}
	}
	return chains
}

// startSandboxChain starts the chain simulator with the policy's EAS
// addresses.
func startSandboxChain(c config.Compliance, astral *sim.Astral) (*sim.Chain, error) {
	cc := sim.ChainConfig{Astral: astral, Contracts: map[string]string{}}
	if v := c.VerifyOnchain; v != nil {
		cc.SchemaUID = v.SchemaUID
		for _, ch := range v.Chains {
			cc.Contracts[ch.Name] = ch.EAS
		}
	}
	chain, err := sim.NewChain(cc)
	if err != nil {
		return nil, fmt.Errorf("sandbox chain: %w", err)
	}
	if err := chain.Start("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("sandbox chain: %w", err)
	}
	return chain, nil
}

// upstream is where the daemon's clients connect: the policy's URLs, or the
// sandbox's simulators. The policy itself is left as the file says, so a
// reload compares like with like.
type upstream struct {
	astraBase, astraWS, astralBase string
	chainRPC                       map[string]string // lower-case chain -> RPC URL overriding the policy's
}

func policyUpstream(p *config.Policy) upstream {
	return upstream{astraBase: p.Astra.BaseURL, astraWS: p.Astra.WSURL, astralBase: p.Astral.BaseURL}
}

func (s *sandbox) upstream() upstream {
	up := upstream{astraBase: s.desk.BaseURL(), astraWS: s.desk.WSURL(), astralBase: s.astral.BaseURL(), chainRPC: map[string]string{}}
	for _, name := range s.astral.Chains() {
		up.chainRPC[strings.ToLower(name)] = s.chain.URL(name)
	}
	return up
}

func (s *sandbox) Close() {
	if s == nil {
		return
	}
	s.desk.Close()
	s.astral.Close()
	s.chain.Close()
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
