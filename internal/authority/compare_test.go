package authority

import (
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"treasuryd/internal/config"
	"treasuryd/internal/journal"
)

var (
	destA = config.Destination{Asset: "BTC", Network: "bitcoin", Address: "bc1qa"}
	destB = config.Destination{Asset: "BTC", Network: "bitcoin", Address: "bc1qattacker"}
	eu    = config.Region{Name: "eu", BBox: []float64{-10, 35, 30, 60}}
	emb   = config.Region{Name: "embargoed", BBox: []float64{30, 40, 50, 55}}
)

// basePolicy is the policy in force in every case below.
func basePolicy() *config.Policy {
	return &config.Policy{
		Authority: config.Authority{Hold: 24 * time.Hour},
		Withdraw:  config.Withdraw{Allowlist: []config.Destination{destA}},
		Compliance: config.Compliance{
			Enabled: true, Subject: "0xs", Chains: []string{"base", "arbitrum"}, TrustedProvers: []string{"0xp1", "0xp2"},
			MaxProofAge: 24 * time.Hour, RefreshInterval: time.Minute,
			Allow: []config.Region{eu}, Deny: []config.Region{emb},
		},
	}
}

// TestCompareJudgesEveryItemOfSpec10 walks every widening and narrowing
// case: widening ones are held (the policy in force keeps the old value) and
// in force after the hold; narrowing ones are in force at once.
func TestCompareJudgesEveryItemOfSpec10(t *testing.T) {
	moved := config.Region{Name: "eu", BBox: []float64{-20, 35, 30, 60}}
	other := config.Region{Name: "us", BBox: []float64{-120, 30, -70, 50}}
	tests := []struct {
		name     string
		in       func(p *config.Policy) // the baseline's own edit (default: basePolicy)
		edit     func(p *config.Policy)
		widening []string
		narrows  bool
		// held checks the policy in force before the hold has passed.
		held func(t *testing.T, eff *config.Policy)
	}{
		{name: "allowlist entry added", edit: func(p *config.Policy) { p.Withdraw.Allowlist = append(p.Withdraw.Allowlist, destB) },
			widening: []string{"allowlist:BTC/bitcoin/bc1qattacker"},
			held: func(t *testing.T, eff *config.Policy) {
				if eff.Allowed(destB.Asset, destB.Network, destB.Address) || !eff.Allowed(destA.Asset, destA.Network, destA.Address) {
					t.Errorf("allowlist in force %v", eff.Withdraw.Allowlist)
				}
			}},
		{name: "allowlist entry replaced", edit: func(p *config.Policy) { p.Withdraw.Allowlist = []config.Destination{destB} },
			widening: []string{"allowlist:BTC/bitcoin/bc1qattacker"}, narrows: true,
			held: func(t *testing.T, eff *config.Policy) {
				if len(eff.Withdraw.Allowlist) != 0 {
					t.Errorf("allowlist in force %v, want none", eff.Withdraw.Allowlist)
				}
			}},
		{name: "allowlist entry removed", edit: func(p *config.Policy) { p.Withdraw.Allowlist = nil }, narrows: true},
		{name: "compliance disabled", edit: func(p *config.Policy) { p.Compliance.Enabled = false },
			widening: []string{"compliance.enabled=false"},
			held: func(t *testing.T, eff *config.Policy) {
				if !eff.Compliance.Enabled {
					t.Error("the gate was disabled before the hold")
				}
			}},
		{name: "compliance enabled", in: func(p *config.Policy) { p.Compliance = config.Compliance{} },
			edit: func(*config.Policy) {}, narrows: true},
		{name: "subject changed", edit: func(p *config.Policy) { p.Compliance.Subject = "0xother" },
			widening: []string{"compliance.subject=0xother"},
			held: func(t *testing.T, eff *config.Policy) {
				if eff.Compliance.Subject != "0xs" {
					t.Errorf("subject in force %q", eff.Compliance.Subject)
				}
			}},
		{name: "chain added", edit: func(p *config.Policy) { p.Compliance.Chains = append(p.Compliance.Chains, "optimism") },
			widening: []string{"compliance.chains+=optimism"},
			held: func(t *testing.T, eff *config.Policy) {
				if slices.Contains(eff.Compliance.Chains, "optimism") {
					t.Errorf("chains in force %v", eff.Compliance.Chains)
				}
			}},
		{name: "chain added twice is one change", edit: func(p *config.Policy) {
			p.Compliance.Chains = append(p.Compliance.Chains, "optimism", "optimism")
		}, widening: []string{"compliance.chains+=optimism"}},
		{name: "chain removed", edit: func(p *config.Policy) { p.Compliance.Chains = []string{"base"} }, narrows: true},
		{name: "chains emptied", edit: func(p *config.Policy) { p.Compliance.Chains = nil },
			widening: []string{"compliance.chains=any"},
			held: func(t *testing.T, eff *config.Policy) {
				if len(eff.Compliance.Chains) != 2 {
					t.Errorf("chains in force %v, want the two in force", eff.Compliance.Chains)
				}
			}},
		{name: "chains from any to a list", in: func(p *config.Policy) { p.Compliance.Chains = nil }, edit: func(*config.Policy) {}, narrows: true},
		{name: "every chain replaced", edit: func(p *config.Policy) { p.Compliance.Chains = []string{"optimism"} },
			widening: []string{"compliance.chains+=optimism"}, narrows: true,
			held: func(t *testing.T, eff *config.Policy) {
				// Removing base and arbitrum narrows at once; optimism waits:
				// no chain is in force, and that must not read as "any".
				if len(eff.Compliance.Chains) == 0 || len(eff.Compliance.Allow) != 0 || !eff.Compliance.Enabled {
					t.Errorf("compliance in force %+v: want no proof admitted", eff.Compliance)
				}
			}},
		{name: "prover added", edit: func(p *config.Policy) { p.Compliance.TrustedProvers = append(p.Compliance.TrustedProvers, "0xevil") },
			widening: []string{"compliance.trusted_provers+=0xevil"},
			held: func(t *testing.T, eff *config.Policy) {
				if slices.Contains(eff.Compliance.TrustedProvers, "0xevil") {
					t.Errorf("provers in force %v", eff.Compliance.TrustedProvers)
				}
			}},
		{name: "prover removed", edit: func(p *config.Policy) { p.Compliance.TrustedProvers = []string{"0xp2"} }, narrows: true},
		{name: "provers emptied", edit: func(p *config.Policy) { p.Compliance.TrustedProvers = nil },
			widening: []string{"compliance.trusted_provers=any"}},
		{name: "every prover replaced", edit: func(p *config.Policy) { p.Compliance.TrustedProvers = []string{"0xp3"} },
			widening: []string{"compliance.trusted_provers+=0xp3"}, narrows: true,
			held: func(t *testing.T, eff *config.Policy) {
				if len(eff.Compliance.TrustedProvers) == 0 || len(eff.Compliance.Allow) != 0 {
					t.Errorf("compliance in force %+v: want no proof admitted", eff.Compliance)
				}
			}},
		{name: "max_proof_age raised", edit: func(p *config.Policy) { p.Compliance.MaxProofAge = 48 * time.Hour },
			widening: []string{"compliance.max_proof_age=48h0m0s"},
			held: func(t *testing.T, eff *config.Policy) {
				if eff.Compliance.MaxProofAge != 24*time.Hour {
					t.Errorf("max_proof_age in force %s", eff.Compliance.MaxProofAge)
				}
			}},
		{name: "max_proof_age lowered", edit: func(p *config.Policy) { p.Compliance.MaxProofAge = time.Hour }, narrows: true},
		{name: "allow region added", edit: func(p *config.Policy) { p.Compliance.Allow = append(p.Compliance.Allow, other) },
			widening: []string{"compliance.allow[us]=" + shapeHash(other)},
			held: func(t *testing.T, eff *config.Policy) {
				if len(eff.Compliance.Allow) != 1 {
					t.Errorf("allow in force %v", eff.Compliance.Allow)
				}
			}},
		{name: "allow region changed", edit: func(p *config.Policy) { p.Compliance.Allow = []config.Region{moved} },
			widening: []string{"compliance.allow[eu]=" + shapeHash(moved)},
			held: func(t *testing.T, eff *config.Policy) {
				if !slices.Equal(eff.Compliance.Allow[0].BBox, eu.BBox) {
					t.Errorf("allow in force %v", eff.Compliance.Allow)
				}
			}},
		{name: "allow region removed", edit: func(p *config.Policy) { p.Compliance.Allow = []config.Region{other} },
			widening: []string{"compliance.allow[us]=" + shapeHash(other)}, narrows: true,
			held: func(t *testing.T, eff *config.Policy) {
				if len(eff.Compliance.Allow) != 0 {
					t.Errorf("allow in force %v: eu was removed, us waits", eff.Compliance.Allow)
				}
			}},
		{name: "deny region added", edit: func(p *config.Policy) { p.Compliance.Deny = append(p.Compliance.Deny, other) }, narrows: true},
		{name: "deny region removed", edit: func(p *config.Policy) { p.Compliance.Deny = nil },
			widening: []string{"compliance.deny[embargoed] removed"},
			held: func(t *testing.T, eff *config.Policy) {
				if len(eff.Compliance.Deny) != 1 {
					t.Errorf("deny in force %v", eff.Compliance.Deny)
				}
			}},
		{name: "deny region changed", edit: func(p *config.Policy) {
			p.Compliance.Deny = []config.Region{{Name: "embargoed", BBox: []float64{31, 40, 50, 55}}}
		}, widening: []string{"compliance.deny[embargoed]=" + shapeHash(config.Region{BBox: []float64{31, 40, 50, 55}})}},
		{name: "refresh interval is no authority item", edit: func(p *config.Policy) { p.Compliance.RefreshInterval = time.Hour },
			held: func(t *testing.T, eff *config.Policy) {
				if eff.Compliance.RefreshInterval != time.Hour {
					t.Errorf("refresh_interval %s: it follows the file at once", eff.Compliance.RefreshInterval)
				}
			}},
		{name: "verify_onchain added", edit: func(p *config.Policy) { p.Compliance.VerifyOnchain = onchain("https://rpc.one") },
			narrows: true},
		{name: "verify_onchain removed", in: func(p *config.Policy) { p.Compliance.VerifyOnchain = onchain("https://rpc.one") },
			edit: func(p *config.Policy) {}, widening: []string{"compliance.verify_onchain removed"},
			held: func(t *testing.T, eff *config.Policy) {
				if eff.Compliance.VerifyOnchain == nil {
					t.Error("on-chain verification was dropped before the hold")
				}
			}},
		{name: "verify_onchain endpoint changed", in: func(p *config.Policy) { p.Compliance.VerifyOnchain = onchain("https://rpc.one") },
			edit:     func(p *config.Policy) { p.Compliance.VerifyOnchain = onchain("https://rpc.attacker") },
			widening: []string{"compliance.verify_onchain=" + onchainFingerprint(onchain("https://rpc.attacker"))},
			held: func(t *testing.T, eff *config.Policy) {
				if got := eff.Compliance.VerifyOnchain.Chains[0].RPCURL.Reveal(); got != "https://rpc.one" {
					t.Errorf("endpoint in force %q before the hold", got)
				}
			}},
		{name: "a disabled gate takes the file's settings at once", in: func(p *config.Policy) { p.Compliance.Enabled = false },
			edit: func(p *config.Policy) { p.Compliance.Enabled = false; p.Compliance.Subject = "0xnew" }, narrows: true},
	}
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := basePolicy()
			if tt.in != nil {
				tt.in(base)
			}
			in := settingsOf(base)
			file := basePolicy()
			tt.edit(file)

			d := decide(in, file, nil, now, 24*time.Hour)
			var items []string
			for _, c := range d.inserted {
				if c.State != journal.AuthorityPending || !c.FirstSeen.Equal(now) || !c.EffectiveAt.Equal(now.Add(24*time.Hour)) {
					t.Errorf("first sight %+v", c)
				}
				items = append(items, c.Item)
			}
			sort.Strings(items)
			want := slices.Clone(tt.widening)
			sort.Strings(want)
			if !slices.Equal(items, want) {
				t.Errorf("held items %q, want %q", items, want)
			}
			if (len(d.narrowed) > 0) != tt.narrows {
				t.Errorf("narrowing changes %+v, want some: %v", d.narrowed, tt.narrows)
			}
			// Only widening changes are left between what is in force and
			// the file.
			for _, c := range Compare(d.settings, file) {
				if !c.Widening {
					t.Errorf("narrowing change %q not in force at once", c.Diff)
				}
			}
			eff := Effective(file, d.settings)
			if tt.held != nil {
				tt.held(t, eff)
			}
			if len(tt.widening) == 0 {
				return
			}
			// A second look before the hold changes nothing.
			pending := slices.Clone(d.inserted)
			for i := range pending {
				pending[i].ID = int64(i + 1)
			}
			d2 := decide(roundTrip(t, d.settings), file, pending, now.Add(24*time.Hour-time.Second), 24*time.Hour)
			if len(d2.inserted)+len(d2.resolved) != 0 || len(d2.still) != len(pending) {
				t.Errorf("before the hold: inserted %v resolved %v still %v", d2.inserted, d2.resolved, d2.still)
			}
			// At the hold, every change is in force: the file is.
			d3 := decide(roundTrip(t, d2.settings), file, pending, now.Add(24*time.Hour), 24*time.Hour)
			if len(d3.resolved) != len(pending) || len(d3.still) != 0 {
				t.Errorf("at the hold: resolved %v still %v", d3.resolved, d3.still)
			}
			for _, r := range d3.resolved {
				if r.State != journal.AuthorityMatured {
					t.Errorf("resolved %+v, want matured", r)
				}
			}
			if rest := Compare(d3.settings, file); len(rest) != 0 {
				t.Errorf("after the hold, still different from the file: %+v", rest)
			}
			eff = Effective(file, d3.settings)
			if !slices.Equal(eff.Withdraw.Allowlist, file.Withdraw.Allowlist) || !sameCompliance(eff.Compliance, file.Compliance) {
				t.Errorf("after the hold the policy in force is not the file's:\n%+v\n%+v", eff, file)
			}
		})
	}
}

func onchain(rpc string) *config.OnchainVerify {
	return &config.OnchainVerify{SchemaUID: "0x" + strings.Repeat("ab", 32), Chains: []config.OnchainChain{
		{Name: "base", RPCURL: config.RPCURL(rpc), EAS: "0x4200000000000000000000000000000000000021"}}}
}

// TestBaselineKeepsOnchainEndpoints: the journal's baseline keeps an inline
// endpoint and re-reads one from its environment variable, never storing a
// key kept in the environment (config.RPCURL redacts itself in JSON, so a
// plain encoding would lose the endpoint and close the gate after a restart).
func TestBaselineKeepsOnchainEndpoints(t *testing.T) {
	const secret = "https://rpc.example/v2/SECRETKEY"
	t.Setenv("TEST_ARB_RPC", secret)
	p := basePolicy()
	p.Compliance.VerifyOnchain = &config.OnchainVerify{SchemaUID: "0x" + strings.Repeat("ab", 32), Chains: []config.OnchainChain{
		{Name: "arbitrum", RPCURLEnv: "TEST_ARB_RPC", RPCURL: secret, EAS: "0xbd75f629a22dc1ced33dda0b68c546a1c035c458"},
		{Name: "base", RPCURL: "https://rpc.base.example", EAS: "0x4200000000000000000000000000000000000021"},
	}}
	b, err := json.Marshal(settingsOf(p))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "SECRETKEY") {
		t.Fatalf("the baseline holds the key from the environment: %s", b)
	}
	got, err := decodeSettings(b)
	if err != nil {
		t.Fatal(err)
	}
	v := got.Compliance.VerifyOnchain
	if v == nil || v.Chains[0].RPCURL.Reveal() != secret || v.Chains[1].RPCURL.Reveal() != "https://rpc.base.example" {
		t.Fatalf("endpoints after a restart: %#v", v)
	}
	if c := Compare(got, p); len(c) != 0 {
		t.Fatalf("an unchanged file differs from the restored baseline: %+v", c)
	}
}

// roundTrip passes settings through the journal's encoding, as a restart
// would.
func roundTrip(t *testing.T, s Settings) Settings {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeSettings(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRemovedBeforeMaturityIsCancelled: a held change that leaves the file
// is cancelled and never joins the settings in force, even after its time.
func TestRemovedBeforeMaturityIsCancelled(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	in := settingsOf(basePolicy())
	file := basePolicy()
	file.Withdraw.Allowlist = append(file.Withdraw.Allowlist, destB)
	d := decide(in, file, nil, now, time.Hour)
	pending := d.inserted
	pending[0].ID = 7
	d2 := decide(d.settings, basePolicy(), pending, now.Add(2*time.Hour), time.Hour)
	if len(d2.resolved) != 1 || d2.resolved[0].ID != 7 || d2.resolved[0].State != journal.AuthorityCancelled {
		t.Fatalf("resolved %+v, want change 7 cancelled", d2.resolved)
	}
	if slices.Contains(d2.settings.Allowlist, destB) {
		t.Error("a cancelled entry is in force")
	}
}

// TestZeroHoldMaturesAtFirstSight: the sandbox's hold: 0s journals the
// change as matured and puts it in force at once.
func TestZeroHoldMaturesAtFirstSight(t *testing.T) {
	now := time.Now()
	file := basePolicy()
	file.Withdraw.Allowlist = append(file.Withdraw.Allowlist, destB)
	d := decide(settingsOf(basePolicy()), file, nil, now, 0)
	if len(d.inserted) != 1 || d.inserted[0].State != journal.AuthorityMatured || !slices.Contains(d.settings.Allowlist, destB) {
		t.Fatalf("inserted %+v settings %+v", d.inserted, d.settings.Allowlist)
	}
}

// TestBaselineRegionsAreCheckedOnRead: a journaled region validation would
// refuse is an error, and a GeoJSON one has its geometry parsed.
func TestBaselineRegionsAreCheckedOnRead(t *testing.T) {
	s := settingsOf(basePolicy())
	s.Compliance.Allow = append(s.Compliance.Allow, config.Region{Name: "sq",
		GeoJSON: `{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1],[0,0]]]}`})
	got := roundTrip(t, s)
	if !got.Compliance.Allow[1].Contains(0.5, 0.5) || got.Compliance.Allow[1].Geometry() == nil {
		t.Error("the GeoJSON region read back does not contain its centre")
	}
	s.Compliance.Deny = []config.Region{{Name: "bad", BBox: []float64{10, 0, -10, 5}}}
	b, _ := json.Marshal(s)
	if _, err := decodeSettings(b); err == nil {
		t.Error("a baseline with an inverted bbox was read")
	}
}
