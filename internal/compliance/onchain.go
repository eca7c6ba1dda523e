package compliance

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"treasuryd/internal/astral"
	"treasuryd/internal/config"
	"treasuryd/internal/eas"
)

// Reasons of on-chain verification (compliance.verify_onchain, SPEC 5.5).
const (
	// ReasonOnchainMismatch: the chain's attestation differs from the
	// index's proof (absent, another uid, schema, recipient, attester, event
	// time or location), or its data does not decode with the schema.
	ReasonOnchainMismatch = "onchain_mismatch"
	// ReasonOnchainUnreachable: the chain's RPC endpoint could not be read
	// (or is not configured usably), and no verified proof is left.
	ReasonOnchainUnreachable = "onchain_unreachable"
	// ReasonOnchainUnverified: verification was turned on by a reload and
	// the proof in use has not been confirmed on chain yet.
	ReasonOnchainUnverified = "onchain_unverified"
	// ReasonExpired: the attestation's expirationTime has passed.
	ReasonExpired = "expired"
)

const (
	// maxOnchainCandidates bounds the eth_calls of one refresh: the newest
	// proofs that pass on the index's word are tried in turn until one is
	// confirmed. One subject rarely holds more than a couple of fresh proofs;
	// five leaves room for a few stale or disputed ones without letting a
	// flood of them make a refresh a flood of RPC calls.
	maxOnchainCandidates = 5
	// rpcTimeout bounds one eth_call; the refresh as a whole is bounded by
	// refreshTimeout.
	rpcTimeout = 10 * time.Second
	// pointTolerance is how far (degrees) the index's point may lie from the
	// chain's and still be the same point: the index stores coordinates in
	// NUMERIC columns, which may round the last digits of the location text.
	// 1e-7 degrees is about a centimetre.
	pointTolerance = 1e-7
)

// Endpoints is where the gate reaches each chain's JSON-RPC endpoint beyond
// what the policy says.
type Endpoints struct {
	// Override maps a chain name (lower case) to the URL used instead of the
	// policy's: the sandbox's chain simulator.
	Override map[string]string
}

// verifier reads attestations for one verify_onchain section. It is built
// when the section changes and used only by Refresh (under refreshMu).
type verifier struct {
	src    *config.OnchainVerify
	schema common.Hash
	chains map[string]*chainEndpoint // lower-case chain name
}

type chainEndpoint struct {
	name     string
	client   *eas.Client
	contract common.Address
	err      error // the chain cannot be read: every proof on it fails closed
}

// newVerifier builds clients for every chain of v. It does no I/O. A chain
// whose endpoint is unusable gets an error that fails its proofs closed.
func newVerifier(v *config.OnchainVerify, ep Endpoints, transport http.RoundTripper, observe func(endpoint, code string, d time.Duration)) *verifier {
	out := &verifier{src: v, schema: common.HexToHash(v.SchemaUID), chains: map[string]*chainEndpoint{}}
	for _, ch := range v.Chains {
		ce := &chainEndpoint{name: ch.Name}
		out.chains[strings.ToLower(ch.Name)] = ce
		u := ch.RPCURL.Reveal()
		if o, ok := ep.Override[strings.ToLower(ch.Name)]; ok {
			u = o
		}
		addr, err := eas.ParseAddress(ch.EAS)
		if err != nil {
			ce.err = fmt.Errorf("chain %s: eas %w", ch.Name, err)
			continue
		}
		ce.contract = addr
		if u == "" {
			ce.err = fmt.Errorf("chain %s: no RPC endpoint configured", ch.Name)
			continue
		}
		c, err := eas.New(eas.Options{URL: u, Timeout: rpcTimeout, Transport: transport, Observe: observe})
		if err != nil {
			ce.err = fmt.Errorf("chain %s: %w", ch.Name, err) // eas errors never carry the URL
			continue
		}
		ce.client = c
	}
	return out
}

func (v *verifier) close() {
	for _, ce := range v.chains {
		if ce.client != nil {
			ce.client.Close()
		}
	}
}

// verdict of one on-chain verification: either the proof with the chain's
// values, or a reason (and, for a mismatch, the field that differs).
type onchainResult struct {
	proof  astral.Proof
	reason string // ReasonPass when confirmed
	field  string // what differed, for the log
}

// verify reads pr's attestation from its chain and checks it against pr
// and the policy. err is an RPC failure: the proof is then unverifiable,
// not refuted.
func (v *verifier) verify(ctx context.Context, pol *policy, pr astral.Proof, now time.Time) (onchainResult, error) {
	ce, ok := v.chains[strings.ToLower(strings.TrimSpace(pr.Chain))]
	if !ok {
		// compliance.chains is empty (any chain) and this one has no endpoint.
		return onchainResult{reason: ReasonWrongChain, field: "chain has no verify_onchain entry"}, nil
	}
	if ce.err != nil {
		return onchainResult{}, ce.err
	}
	uid, err := eas.ParseUID(pr.UID)
	if err != nil {
		return onchainResult{reason: ReasonOnchainMismatch, field: "uid is not a 32-byte hex uid"}, nil
	}
	a, err := ce.client.GetAttestation(ctx, ce.contract, uid)
	if err != nil {
		return onchainResult{}, fmt.Errorf("chain %s: %w", ce.name, err)
	}
	return v.judge(pol, pr, uid, a, now), nil
}

// judge compares an attestation with the index's proof and runs the policy's
// checks on the chain's values. Pure: the tests drive it with fixtures too.
func (v *verifier) judge(pol *policy, pr astral.Proof, uid [32]byte, a eas.Attestation, now time.Time) onchainResult {
	mismatch := func(field string) onchainResult {
		return onchainResult{reason: ReasonOnchainMismatch, field: field}
	}
	switch {
	case a.Empty():
		return mismatch("attestation not on chain")
	case a.Uid != uid:
		return mismatch("uid")
	case common.Hash(a.Schema) != v.schema:
		return mismatch("schema")
	case !sameAddress(a.Recipient, pr.Subject):
		return mismatch("recipient")
	case !sameAddress(a.Attester, pr.Prover):
		return mismatch("attester")
	case a.RevocationTime != 0:
		// The index lists it as not revoked (revoked ones never get here):
		// the two differ, and the chain is the authority.
		return mismatch("revoked on chain, not in the index")
	case a.ExpirationTime != 0 && a.ExpirationTime <= uint64(max(now.Unix(), 0)):
		return onchainResult{reason: ReasonExpired, field: "expirationTime passed"}
	}
	loc, err := eas.DecodeLocation(a.Data)
	if err != nil {
		return mismatch("data does not decode with the location schema")
	}
	ts := loc.EventTimestamp
	if ts.Sign() <= 0 || !ts.IsInt64() || ts.Int64() > math.MaxInt64/2 {
		return mismatch("eventTimestamp out of range")
	}
	event := time.Unix(ts.Int64(), 0).UTC()
	if pr.EventTimestamp.Unix() != event.Unix() {
		return mismatch("eventTimestamp")
	}
	lng, lat, hasPoint := astral.ParsePoint(loc.Location)
	if hasPoint != pr.HasPoint || hasPoint && (math.Abs(lng-pr.Lng) > pointTolerance || math.Abs(lat-pr.Lat) > pointTolerance) {
		return mismatch("location")
	}
	// The chain's values decide from here on.
	cp := pr
	cp.EventTimestamp, cp.Location, cp.LocationType, cp.SRS, cp.Memo = event, loc.Location, loc.LocationType, loc.SRS, loc.Memo
	cp.Lng, cp.Lat, cp.HasPoint = lng, lat, hasPoint
	cp.Subject, cp.Prover = a.Recipient.Hex(), a.Attester.Hex()
	cp.Revoked = false
	if ok, r := pol.check(cp, now); !ok {
		return onchainResult{reason: r}
	}
	return onchainResult{proof: cp, reason: ReasonPass}
}

// sameAddress compares a chain address with the index's text of one.
func sameAddress(a common.Address, text string) bool {
	b, err := eas.ParseAddress(text)
	return err == nil && a == b
}
