package compliance_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"treasuryd/internal/astral"
	"treasuryd/internal/compliance"
	"treasuryd/internal/config"
	"treasuryd/internal/sim"
)

const (
	trusted   = "0x1111111111111111111111111111111111111111"
	untrusted = "0x2222222222222222222222222222222222222222"
)

type chainEnv struct {
	*env
	chain *sim.Chain
}

// newOnchainEnv is the gate against the Astral simulator and the chain
// simulator that holds its proofs, with verify_onchain on for base and
// arbitrum.
func newOnchainEnv(t *testing.T, mod func(*config.Compliance, *sim.Chain)) *chainEnv {
	t.Helper()
	e := newEnv(t, envOpt{})
	c, err := sim.NewChain(sim.ChainConfig{Astral: e.sim})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	pol := *e.cfg.Load()
	pol.TrustedProvers = []string{trusted}
	pol.VerifyOnchain = &config.OnchainVerify{SchemaUID: sim.AstralSchemaUID, Chains: []config.OnchainChain{
		{Name: "arbitrum", RPCURL: config.RPCURL(c.URL("arbitrum")), EAS: sim.DefaultEAS},
		{Name: "base", RPCURL: config.RPCURL(c.URL("base")), EAS: sim.DefaultEAS},
	}}
	if mod != nil {
		mod(&pol, c)
	}
	e.cfg.Store(&pol)
	t.Cleanup(func() { e.gate.Stop(context.Background()) })
	return &chainEnv{env: e, chain: c}
}

// proof adds a proof by the trusted prover in Paris, an hour old.
func (e *chainEnv) proof(mod func(*sim.ProofSpec)) string {
	return e.good(func(p *sim.ProofSpec) {
		p.Prover = trusted
		if mod != nil {
			mod(p)
		}
	})
}

func (e *chainEnv) refresh() error { return e.gate.Refresh(context.Background()) }

func (e *chainEnv) chainCalls(code string) float64 {
	return testutil.ToFloat64(e.m.APIRequests.WithLabelValues("chain", "eth_call", code))
}

func TestOnchainGateOpensOnlyForAProofTheChainConfirms(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*config.Compliance, *sim.Chain)
		setup func(e *chainEnv, uid string)
		index func(p *sim.ProofSpec)
		want  string
	}{
		{name: "confirmed", want: compliance.ReasonPass},
		{name: "not on chain", setup: func(e *chainEnv, uid string) { e.chain.Drop(uid) }, want: compliance.ReasonOnchainMismatch},
		{name: "index inside allow, chain outside", setup: func(e *chainEnv, uid string) { e.chain.SetLocation(uid, -100, 40) },
			want: compliance.ReasonOnchainMismatch},
		{name: "index and chain both inside allow but apart", setup: func(e *chainEnv, uid string) { e.chain.SetLocation(uid, 2.36, 48.85) },
			want: compliance.ReasonOnchainMismatch},
		{name: "attester on chain not trusted", setup: func(e *chainEnv, uid string) { e.chain.SetAttester(uid, untrusted) },
			want: compliance.ReasonOnchainMismatch},
		{name: "prover not trusted (index and chain agree)", index: func(p *sim.ProofSpec) { p.Prover = untrusted },
			want: compliance.ReasonUntrustedProver},
		{name: "revoked on chain only", setup: func(e *chainEnv, uid string) { e.chain.RevokeOnChain(uid) }, want: compliance.ReasonOnchainMismatch},
		{name: "another schema", mod: func(c *config.Compliance, _ *sim.Chain) {
			c.VerifyOnchain.SchemaUID = "0x" + strings.Repeat("ab", 32)
		}, want: compliance.ReasonOnchainMismatch},
		{name: "EAS at another address", mod: func(c *config.Compliance, _ *sim.Chain) {
			c.VerifyOnchain.Chains[1].EAS = "0x" + strings.Repeat("33", 20)
		}, want: compliance.ReasonOnchainUnreachable},
		{name: "proof on a chain without an entry", mod: func(c *config.Compliance, _ *sim.Chain) {
			c.Chains = nil
			c.VerifyOnchain.Chains = c.VerifyOnchain.Chains[:1] // arbitrum only
		}, want: compliance.ReasonWrongChain},
		{name: "node answers errors", setup: func(e *chainEnv, _ string) { e.chain.SetRPCError(true) }, want: compliance.ReasonOnchainUnreachable},
		{name: "endpoint down", setup: func(e *chainEnv, _ string) { e.chain.SetDown(true) }, want: compliance.ReasonOnchainUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newOnchainEnv(t, tt.mod)
			uid := e.proof(tt.index)
			if tt.setup != nil {
				tt.setup(e, uid)
			}
			err := e.refresh()
			open, reason := e.gate.Open()
			if open != (tt.want == compliance.ReasonPass) || reason != tt.want {
				t.Fatalf("Open = %v, %q (refresh: %v); want %q", open, reason, err, tt.want)
			}
			if got := e.checks(tt.want); got != 1 {
				t.Fatalf("checks_total{result=%q} = %v, want 1", tt.want, got)
			}
			st := e.gate.Status()
			if st.OnchainVerified != open {
				t.Fatalf("status %+v", st)
			}
			if tt.want == compliance.ReasonPass && (e.chain.Calls() != 1 || e.chainCalls("200") != 1) {
				t.Fatalf("chain calls %d, metric %v; want one eth_call", e.chain.Calls(), e.chainCalls("200"))
			}
		})
	}
}

func TestOnchainRevocationClosesWithinOneRefreshWhileTheIndexSaysValid(t *testing.T) {
	e := newOnchainEnv(t, nil)
	uid := e.proof(nil)
	e.mustOpen(t)
	e.chain.RevokeOnChain(uid)
	// The index still says revoked: false.
	p, err := astral.New(astral.Options{BaseURL: e.sim.BaseURL()}).Proof(context.Background(), uid)
	if err != nil || p.Revoked {
		t.Fatalf("index: %+v %v", p, err)
	}
	if open, _ := e.gate.Open(); !open {
		t.Fatal("closed before the refresh")
	}
	e.clock.Advance(time.Minute)
	if err := e.refresh(); err != nil {
		t.Fatal(err)
	}
	if open, reason := e.gate.Open(); open || reason != compliance.ReasonOnchainMismatch {
		t.Fatalf("Open = %v, %q; want closed, onchain_mismatch", open, reason)
	}
	if st := e.gate.Status(); st.ProofUID != uid {
		t.Fatalf("status names %q, want the revoked proof %q", st.ProofUID, uid)
	}
}

func TestOnchainRevocationClosesEvenWhileTheIndexIsDown(t *testing.T) {
	e := newOnchainEnv(t, nil)
	uid := e.proof(nil)
	e.mustOpen(t)
	e.sim.SetDown(true)
	if err := e.refresh(); err == nil {
		t.Fatal("no error with the index down")
	}
	if open, _ := e.gate.Open(); !open {
		t.Fatal("a short index outage closed the gate on a proof the chain still confirms")
	}
	e.chain.RevokeOnChain(uid)
	e.refresh()
	if open, reason := e.gate.Open(); open || reason != compliance.ReasonOnchainMismatch {
		t.Fatalf("Open = %v, %q; want closed, onchain_mismatch", open, reason)
	}
}

func TestOnchainRPCDownHoldsTheLastVerifiedProofUntilItAgesOut(t *testing.T) {
	e := newOnchainEnv(t, nil)
	e.proof(nil) // an hour old; max_proof_age 24h
	e.mustOpen(t)
	e.chain.SetDown(true)
	for i := 0; i < 3; i++ {
		e.clock.Advance(time.Hour)
		if err := e.refresh(); err == nil {
			t.Fatal("no error with the chain down")
		}
		if open, reason := e.gate.Open(); !open {
			t.Fatalf("closed (%s) during a chain outage while the verified proof is fresh", reason)
		}
	}
	if got := e.checks(compliance.ReasonOnchainUnreachable); got != 3 {
		t.Fatalf("onchain_unreachable checks %v, want 3", got)
	}
	if e.chainCalls("503") != 3 {
		t.Fatalf("chain 503s %v", e.chainCalls("503"))
	}
	e.clock.Advance(21 * time.Hour) // 25h old
	if open, reason := e.gate.Open(); open || reason != compliance.ReasonOnchainUnreachable {
		t.Fatalf("Open = %v, %q; want closed, onchain_unreachable", open, reason)
	}
	e.chain.SetDown(false)
	e.proof(func(p *sim.ProofSpec) { p.EventTime = e.clock.Now().Add(-time.Minute) })
	e.mustOpen(t)
}

func TestOnchainANewCandidateNeedsTheChainToo(t *testing.T) {
	e := newOnchainEnv(t, nil)
	older := e.proof(nil)
	e.mustOpen(t)
	e.chain.SetDown(true)
	// A newer proof appears in the index while its chain cannot be read: the
	// gate keeps the verified older one and does not switch to the new one.
	newer := e.proof(func(p *sim.ProofSpec) { p.EventTime = e.clock.Now().Add(-time.Minute) })
	e.refresh()
	if st := e.gate.Status(); !st.Open || st.ProofUID != older {
		t.Fatalf("status %+v, want open on %s", st, older)
	}
	// The chain is back but disputes the newer one: the older one is used.
	e.chain.SetDown(false)
	e.chain.SetLocation(newer, 2.40, 48.85)
	if err := e.refresh(); err != nil {
		t.Fatal(err)
	}
	if st := e.gate.Status(); !st.Open || st.ProofUID != older || !st.OnchainVerified {
		t.Fatalf("status %+v, want open on %s", st, older)
	}
	if e.checks(compliance.ReasonPass) != 2 {
		t.Fatalf("pass checks %v", e.checks(compliance.ReasonPass))
	}
}

func TestOnchainGateJudgesAgeOnTheChainsValues(t *testing.T) {
	e := newOnchainEnv(t, nil)
	e.proof(func(p *sim.ProofSpec) { p.EventTime = e.clock.Now().Add(-23 * time.Hour) })
	e.mustOpen(t)
	st := e.gate.Status()
	if st.ProofAgeSeconds < 23*3600 || st.ProofAgeSeconds > 23*3600+1 {
		t.Fatalf("age %v", st.ProofAgeSeconds)
	}
	e.clock.Advance(61 * time.Minute)
	if open, reason := e.gate.Open(); open || reason != compliance.ReasonTooOld {
		t.Fatalf("Open = %v, %q; want too_old", open, reason)
	}
}

func TestOnchainTurnedOnByReloadClosesUntilConfirmed(t *testing.T) {
	e := newOnchainEnv(t, nil)
	on := *e.cfg.Load()
	off := on
	off.VerifyOnchain = nil
	e.cfg.Store(&off)
	uid := e.proof(nil)
	e.mustOpen(t)
	if e.chain.Calls() != 0 {
		t.Fatal("called the chain with verification off")
	}
	e.chain.Drop(uid)
	e.cfg.Store(&on)
	if open, reason := e.gate.Open(); open || reason != compliance.ReasonOnchainUnverified {
		t.Fatalf("Open = %v, %q; want onchain_unverified", open, reason)
	}
	e.refresh()
	if open, reason := e.gate.Open(); open || reason != compliance.ReasonOnchainMismatch {
		t.Fatalf("Open = %v, %q; want onchain_mismatch", open, reason)
	}
}

func TestOnchainRPCURLNeverShows(t *testing.T) {
	const key = "pr0v1der-k3y-7a7a"
	e := newOnchainEnv(t, nil)
	// A keyed endpoint in front of the simulator, then gone.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = "/base"
		e.chain.Handler().ServeHTTP(w, r)
	}))
	url := front.URL + "/v2/" + key
	pol := *e.cfg.Load()
	v := *pol.VerifyOnchain
	v.Chains = []config.OnchainChain{v.Chains[0], {Name: "base", RPCURL: config.RPCURL(url), EAS: sim.DefaultEAS}}
	pol.VerifyOnchain = &v
	e.cfg.Store(&pol)
	e.proof(nil)
	e.mustOpen(t)
	front.Close()
	e.clock.Advance(time.Minute)
	err := e.refresh()
	st := e.gate.Status()
	js, _ := json.Marshal(st)
	var logs strings.Builder
	for _, l := range e.logs.All() {
		fmt.Fprintf(&logs, "%s %v\n", l.Message, l.ContextMap())
	}
	for what, text := range map[string]string{"error": fmt.Sprint(err), "status": string(js), "logs": logs.String()} {
		if strings.Contains(text, key) || strings.Contains(text, strings.TrimPrefix(front.URL, "http://")) {
			t.Fatalf("the RPC URL shows in the %s: %s", what, text)
		}
	}
	if err == nil || st.LastError == "" || !st.Open {
		t.Fatalf("err %v, status %+v: want an error and the verified proof still in use", err, st)
	}
}

func TestOnchainTheProofInUseIsReverifiedBehindManyNewerOnes(t *testing.T) {
	e := newOnchainEnv(t, nil)
	inUse := e.proof(nil)
	e.mustOpen(t)
	// Six newer proofs the chain cannot confirm (more than the candidates
	// tried per refresh), then the chain revokes the one in use.
	for i := 0; i < 6; i++ {
		uid := e.proof(func(p *sim.ProofSpec) { p.EventTime = e.clock.Now().Add(-time.Duration(i+1) * time.Minute) })
		e.chain.Drop(uid)
	}
	e.refresh()
	if st := e.gate.Status(); !st.Open || st.ProofUID != inUse {
		t.Fatalf("status %+v, want still open on %s", st, inUse)
	}
	e.chain.RevokeOnChain(inUse)
	e.refresh()
	if open, reason := e.gate.Open(); open {
		t.Fatalf("open (%s) on a proof revoked on chain", reason)
	}
}

func TestOnchainAChangedSectionNeedsANewConfirmation(t *testing.T) {
	e := newOnchainEnv(t, nil)
	e.proof(nil)
	e.mustOpen(t)
	// The same section, reloaded (a new value): still confirmed.
	same := *e.cfg.Load()
	v := *same.VerifyOnchain
	v.Chains = append([]config.OnchainChain(nil), v.Chains...)
	same.VerifyOnchain = &v
	e.cfg.Store(&same)
	if open, reason := e.gate.Open(); !open {
		t.Fatalf("closed (%s) after a no-op reload", reason)
	}
	// Another schema: closed until the next refresh confirms (here: refutes).
	changed := same
	w := v
	w.SchemaUID = "0x" + strings.Repeat("cd", 32)
	changed.VerifyOnchain = &w
	e.cfg.Store(&changed)
	if open, reason := e.gate.Open(); open || reason != compliance.ReasonOnchainUnverified {
		t.Fatalf("Open = %v, %q; want onchain_unverified", open, reason)
	}
	e.refresh()
	if open, reason := e.gate.Open(); open || reason != compliance.ReasonOnchainMismatch {
		t.Fatalf("Open = %v, %q; want onchain_mismatch", open, reason)
	}
}
