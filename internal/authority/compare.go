package authority

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"treasuryd/internal/config"
	"treasuryd/internal/journal"
)

// Settings are the authority-relevant settings in force: what the journal
// keeps as the baseline. A widening change joins them only when it matures.
type Settings struct {
	Allowlist  []config.Destination `json:"allowlist"`
	Compliance config.Compliance    `json:"compliance"`
	// Hold is the authority.hold in force: a change first seen waits the
	// longer of it and the file's, so lowering the hold in the same edit as
	// a widening change does not shorten that change's wait.
	Hold time.Duration `json:"hold"`
	// Sandbox: the journal was started by a sandbox policy (whose hold may
	// be 0s). A sandbox policy never runs on a journal a real policy
	// started, nor the other way round: otherwise a sandbox run with hold
	// 0s would put a widening change in force at once, for the real policy
	// to find in force at its next start.
	Sandbox bool `json:"sandbox,omitempty"`
}

// noneInForce stands for "none" in a chain or prover list in force: every
// entry in force was removed (narrowing, at once) while the file's new ones
// still wait, and an empty list would mean "any". The file never holds it
// (validation refuses empty strings), and a compliance section holding it
// admits no proof (its allow regions are cleared; see Effective).
const noneInForce = ""

// Change is one difference between the settings in force and the file.
type Change struct {
	Kind     string // journal.AuthorityKindAllowlist or journal.AuthorityKindCompliance
	Item     string // names the change and its new value: the journal's key for a pending change
	Diff     string // for people
	Widening bool   // true: held for authority.hold; false: in force at once
	apply    func(s *Settings)
}

// Compare lists, item by item, how the file differs from the settings in
// force (SPEC 10). Applying every change to in yields the file's settings.
func Compare(in Settings, file *config.Policy) []Change {
	out := compareAllowlist(in.Allowlist, file.Withdraw.Allowlist)
	fc := file.Compliance
	if !in.Compliance.Enabled {
		// Nothing is wider than a disabled gate: whatever the file says
		// about compliance is in force at once.
		if !sameCompliance(in.Compliance, fc) {
			out = append(out, Change{Kind: journal.AuthorityKindCompliance, Item: "compliance",
				Diff:  "compliance: takes the file's settings (the gate in force is disabled)",
				apply: func(s *Settings) { s.Compliance = fc }})
		}
		return out
	}
	for _, f := range complianceFields {
		out = append(out, f.compare(in.Compliance, fc)...)
	}
	return out
}

// sameCompliance compares the fields the comparers judge.
func sameCompliance(a, b config.Compliance) bool {
	for _, f := range complianceFields {
		if len(f.compare(a, b)) > 0 {
			return false
		}
	}
	return a.Enabled == b.Enabled
}

func destItem(d config.Destination) string {
	return fmt.Sprintf("allowlist:%s/%s/%s", d.Asset, d.Network, d.Address)
}

func compareAllowlist(in, file []config.Destination) []Change {
	var out []Change
	for _, d := range in {
		if !slices.Contains(file, d) {
			d := d
			out = append(out, Change{Kind: journal.AuthorityKindAllowlist, Item: destItem(d),
				Diff: fmt.Sprintf("withdraw.allowlist: - %s on %s to %s", d.Asset, d.Network, d.Address),
				apply: func(s *Settings) {
					s.Allowlist = slices.DeleteFunc(slices.Clone(s.Allowlist), func(x config.Destination) bool { return x == d })
				}})
		}
	}
	seen := map[config.Destination]bool{}
	for _, d := range file {
		if slices.Contains(in, d) || seen[d] {
			continue
		}
		seen[d] = true
		d := d
		out = append(out, Change{Kind: journal.AuthorityKindAllowlist, Item: destItem(d), Widening: true,
			Diff:  fmt.Sprintf("withdraw.allowlist: + %s on %s to %s", d.Asset, d.Network, d.Address),
			apply: func(s *Settings) { s.Allowlist = append(slices.Clone(s.Allowlist), d) }})
	}
	return out
}

// complianceField judges one key of the compliance section: compare lists
// its changes (each narrowing or widening, with how to put it in force), and
// keep copies the value in force into the effective section. A new
// authority-relevant key is one more entry here; a key without an entry
// follows the file at once.
type complianceField struct {
	key     string
	compare func(in, file config.Compliance) []Change
	keep    func(dst *config.Compliance, in config.Compliance)
}

var complianceFields = []complianceField{
	{"enabled", compareEnabled, func(dst *config.Compliance, in config.Compliance) { dst.Enabled = in.Enabled }},
	{"subject", compareSubject, func(dst *config.Compliance, in config.Compliance) { dst.Subject = in.Subject }},
	{"chains", func(in, file config.Compliance) []Change {
		return compareList("chains", "chain", in.Chains, file.Chains, func(c *config.Compliance) *[]string { return &c.Chains })
	}, func(dst *config.Compliance, in config.Compliance) { dst.Chains = slices.Clone(in.Chains) }},
	{"trusted_provers", func(in, file config.Compliance) []Change {
		return compareList("trusted_provers", "prover", in.TrustedProvers, file.TrustedProvers,
			func(c *config.Compliance) *[]string { return &c.TrustedProvers })
	}, func(dst *config.Compliance, in config.Compliance) {
		dst.TrustedProvers = slices.Clone(in.TrustedProvers)
	}},
	{"max_proof_age", compareMaxAge, func(dst *config.Compliance, in config.Compliance) { dst.MaxProofAge = in.MaxProofAge }},
	{"allow", func(in, file config.Compliance) []Change { return compareRegions("allow", in.Allow, file.Allow) },
		func(dst *config.Compliance, in config.Compliance) { dst.Allow = slices.Clone(in.Allow) }},
	{"deny", func(in, file config.Compliance) []Change { return compareRegions("deny", in.Deny, file.Deny) },
		func(dst *config.Compliance, in config.Compliance) { dst.Deny = slices.Clone(in.Deny) }},
	{"verify_onchain", compareVerifyOnchain, keepVerifyOnchain},
}

// compareVerifyOnchain judges compliance.verify_onchain (SPEC 5.5): a proof
// counts only if its chain confirms it. Adding it narrows; removing it, or
// changing it (other chains, RPC endpoints, EAS addresses or schema) widens:
// an endpoint of the editor's choosing can confirm anything.
func compareVerifyOnchain(in, file config.Compliance) []Change {
	a, b := in.VerifyOnchain, file.VerifyOnchain
	if onchainFingerprint(a) == onchainFingerprint(b) {
		return nil
	}
	to := cloneOnchain(b)
	set := func(c *config.Compliance) { c.VerifyOnchain = cloneOnchain(to) }
	switch {
	case b == nil:
		return []Change{compliance("compliance.verify_onchain removed", "compliance.verify_onchain: removed (proofs no longer confirmed on chain)", true, set)}
	case a == nil:
		return []Change{compliance("compliance.verify_onchain="+onchainFingerprint(b), "compliance.verify_onchain: added", false, set)}
	}
	// The diff names no value: an rpc_url may carry a provider key.
	return []Change{compliance("compliance.verify_onchain="+onchainFingerprint(b),
		"compliance.verify_onchain: changed (chains, RPC endpoints, EAS addresses or schema)", true, set)}
}

// onchainFingerprint identifies a verify_onchain section, endpoint URLs
// included (hashed, so the item key shows no key), "" when absent.
func onchainFingerprint(v *config.OnchainVerify) string {
	if v == nil {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00", v.SchemaUID)
	for _, c := range v.Chains {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", c.Name, c.RPCURLEnv, c.RPCURL.Reveal(), c.EAS)
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

func cloneOnchain(v *config.OnchainVerify) *config.OnchainVerify {
	if v == nil {
		return nil
	}
	c := *v
	c.Chains = slices.Clone(v.Chains)
	return &c
}

func keepVerifyOnchain(dst *config.Compliance, in config.Compliance) {
	dst.VerifyOnchain = cloneOnchain(in.VerifyOnchain)
}

func compliance(item, diff string, widening bool, apply func(c *config.Compliance)) Change {
	return Change{Kind: journal.AuthorityKindCompliance, Item: item, Diff: diff, Widening: widening,
		apply: func(s *Settings) { apply(&s.Compliance) }}
}

func compareEnabled(in, file config.Compliance) []Change {
	switch {
	case in.Enabled && !file.Enabled:
		return []Change{compliance("compliance.enabled=false", "compliance.enabled: true -> false (the gate stops gating)", true,
			func(c *config.Compliance) { c.Enabled = false })}
	case !in.Enabled && file.Enabled:
		return []Change{compliance("compliance.enabled=true", "compliance.enabled: false -> true", false,
			func(c *config.Compliance) { c.Enabled = true })}
	}
	return nil
}

func compareSubject(in, file config.Compliance) []Change {
	if in.Subject == file.Subject {
		return nil
	}
	to := file.Subject
	return []Change{compliance("compliance.subject="+to, fmt.Sprintf("compliance.subject: %q -> %q", in.Subject, to), true,
		func(c *config.Compliance) { c.Subject = to })}
}

func compareMaxAge(in, file config.Compliance) []Change {
	if in.MaxProofAge == file.MaxProofAge {
		return nil
	}
	to := file.MaxProofAge
	return []Change{compliance("compliance.max_proof_age="+to.String(),
		fmt.Sprintf("compliance.max_proof_age: %s -> %s", in.MaxProofAge, to), to > in.MaxProofAge,
		func(c *config.Compliance) { c.MaxProofAge = to })}
}

// compareList judges a list where empty means any: emptying it is one
// widening change; from any to a list is narrowing; otherwise each entry
// removed narrows at once and each added widens.
func compareList(key, noun string, in, file []string, field func(c *config.Compliance) *[]string) []Change {
	none := slices.Contains(in, noneInForce)
	in = slices.DeleteFunc(slices.Clone(in), func(x string) bool { return x == noneInForce })
	switch {
	case len(in) == 0 && !none && len(file) == 0:
		return nil
	case len(in) == 0 && !none:
		to := slices.Clone(file)
		return []Change{compliance(fmt.Sprintf("compliance.%s=%s", key, strings.Join(to, ",")),
			fmt.Sprintf("compliance.%s: any -> %v", key, to), false,
			func(c *config.Compliance) { *field(c) = slices.Clone(to) })}
	case len(file) == 0:
		from := in
		if none {
			from = []string{"(none)"}
		}
		return []Change{compliance(fmt.Sprintf("compliance.%s=any", key),
			fmt.Sprintf("compliance.%s: %v -> empty (any %s)", key, from, noun), true,
			func(c *config.Compliance) { *field(c) = nil })}
	}
	var out []Change
	for _, x := range in {
		if !slices.Contains(file, x) {
			x := x
			out = append(out, compliance(fmt.Sprintf("compliance.%s-=%s", key, x), fmt.Sprintf("compliance.%s: - %s", key, x), false,
				func(c *config.Compliance) {
					*field(c) = slices.DeleteFunc(slices.Clone(*field(c)), func(y string) bool { return y == x })
				}))
		}
	}
	for _, x := range file {
		if !slices.Contains(in, x) {
			x := x
			out = append(out, compliance(fmt.Sprintf("compliance.%s+=%s", key, x), fmt.Sprintf("compliance.%s: + %s", key, x), true,
				func(c *config.Compliance) { *field(c) = append(slices.Clone(*field(c)), x) }))
		}
	}
	return out
}

// regionShape is what identifies a region's geometry.
func regionShape(r config.Region) string {
	if r.BBox != nil {
		return fmt.Sprintf("bbox %v", r.BBox)
	}
	return "geojson " + r.GeoJSON
}

func sameShape(a, b config.Region) bool {
	return a.Name == b.Name && a.GeoJSON == b.GeoJSON && slices.Equal(a.BBox, b.BBox)
}

// shapeHash keys a region's new geometry in an item without copying a
// GeoJSON polygon into it.
func shapeHash(r config.Region) string {
	b, _ := json.Marshal([]any{r.BBox, r.GeoJSON})
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:6])
}

func findRegion(list []config.Region, name string) (config.Region, bool) {
	for _, r := range list {
		if r.Name == name {
			return r, true
		}
	}
	return config.Region{}, false
}

// compareRegions judges allow or deny regions by name. An allow region added
// or changed widens, removed narrows; a deny region added narrows, removed or
// changed widens.
func compareRegions(key string, in, file []config.Region) []Change {
	allow := key == "allow"
	field := func(c *config.Compliance) *[]config.Region {
		if allow {
			return &c.Allow
		}
		return &c.Deny
	}
	remove := func(name string) func(c *config.Compliance) {
		return func(c *config.Compliance) {
			*field(c) = slices.DeleteFunc(slices.Clone(*field(c)), func(r config.Region) bool { return r.Name == name })
		}
	}
	put := func(r config.Region) func(c *config.Compliance) {
		return func(c *config.Compliance) {
			l := slices.Clone(*field(c))
			if i := slices.IndexFunc(l, func(x config.Region) bool { return x.Name == r.Name }); i >= 0 {
				l[i] = r
			} else {
				l = append(l, r)
			}
			*field(c) = l
		}
	}
	var out []Change
	for _, r := range in {
		if _, ok := findRegion(file, r.Name); !ok {
			out = append(out, compliance(fmt.Sprintf("compliance.%s[%s] removed", key, r.Name),
				fmt.Sprintf("compliance.%s: - %q (%s)", key, r.Name, regionShape(r)), !allow, remove(r.Name)))
		}
	}
	for _, r := range file {
		old, ok := findRegion(in, r.Name)
		switch {
		case !ok:
			out = append(out, compliance(fmt.Sprintf("compliance.%s[%s]=%s", key, r.Name, shapeHash(r)),
				fmt.Sprintf("compliance.%s: + %q (%s)", key, r.Name, regionShape(r)), allow, put(r)))
		case !sameShape(old, r):
			out = append(out, compliance(fmt.Sprintf("compliance.%s[%s]=%s", key, r.Name, shapeHash(r)),
				fmt.Sprintf("compliance.%s: %q %s -> %s", key, r.Name, regionShape(old), regionShape(r)), true, put(r)))
		}
	}
	return out
}

// Effective is the policy in force: the file's, with the allowlist and the
// authority-relevant compliance keys taken from the settings in force.
func Effective(file *config.Policy, in Settings) *config.Policy {
	p := *file
	p.Withdraw.Allowlist = slices.Clone(in.Allowlist)
	c := file.Compliance
	for _, f := range complianceFields {
		f.keep(&c, in.Compliance)
	}
	if slices.Contains(c.Chains, noneInForce) || slices.Contains(c.TrustedProvers, noneInForce) {
		// No chain or no prover is in force: no proof may open the gate.
		c.Enabled = true
		c.Allow = nil
	}
	p.Compliance = c
	return &p
}

// settle finishes the settings after the changes were applied: a chain or
// prover list that lost every entry while the file still lists some (which
// wait for their hold) is "none", never "any".
func settle(s *Settings, file *config.Policy) {
	settleList(&s.Compliance.Chains, file.Compliance.Chains, s.Compliance.Enabled)
	settleList(&s.Compliance.TrustedProvers, file.Compliance.TrustedProvers, s.Compliance.Enabled)
}

func settleList(list *[]string, file []string, enabled bool) {
	if len(*list) > 1 {
		// An entry matured: "none" is over.
		*list = slices.DeleteFunc(*list, func(x string) bool { return x == noneInForce })
	}
	if len(*list) == 0 && len(file) > 0 && enabled {
		*list = []string{noneInForce}
	}
}

// settingsOf is the file's own settings: what a new journal starts with.
func settingsOf(file *config.Policy) Settings {
	return Settings{Allowlist: slices.Clone(file.Withdraw.Allowlist), Compliance: file.Compliance, Hold: file.Authority.Hold,
		Sandbox: file.Sandbox != nil}
}

// storedEndpoint is how the baseline keeps one verify_onchain endpoint. An
// inline rpc_url is kept as written (the policy file holds it in clear too);
// one read from the environment is kept by its variable's name only and read
// from the environment again when the baseline is decoded, so the journal
// never holds a provider key kept in a Secret. (config.RPCURL redacts itself
// in JSON, so the Settings encoding alone would lose the endpoint.)
type storedEndpoint struct {
	Chain  string `json:"chain"`
	RPCURL string `json:"rpc_url,omitempty"`
}

type storedSettings struct {
	plainSettings
	Endpoints []storedEndpoint `json:"onchain_endpoints,omitempty"`
}

type plainSettings Settings

// MarshalJSON encodes the settings for the journal's baseline.
func (s Settings) MarshalJSON() ([]byte, error) {
	st := storedSettings{plainSettings: plainSettings(s)}
	if v := s.Compliance.VerifyOnchain; v != nil {
		for _, c := range v.Chains {
			e := storedEndpoint{Chain: c.Name}
			if c.RPCURLEnv == "" {
				e.RPCURL = c.RPCURL.Reveal()
			}
			st.Endpoints = append(st.Endpoints, e)
		}
	}
	return json.Marshal(st)
}

// decodeSettings reads a journaled baseline, re-checking every region as
// validation does (and parsing its geometry) and restoring each on-chain
// endpoint (inline from the baseline, rpc_url_env from the environment).
func decodeSettings(b []byte) (Settings, error) {
	var st storedSettings
	if err := json.Unmarshal(b, &st); err != nil {
		return Settings{}, fmt.Errorf("authority baseline: %w", err)
	}
	s := Settings(st.plainSettings)
	if v := s.Compliance.VerifyOnchain; v != nil {
		v.Chains = slices.Clone(v.Chains)
		for i, c := range v.Chains {
			v.Chains[i].RPCURL = ""
			if c.RPCURLEnv != "" {
				v.Chains[i].RPCURL = config.RPCURL(os.Getenv(c.RPCURLEnv))
				continue
			}
			for _, e := range st.Endpoints {
				if e.Chain == c.Name {
					v.Chains[i].RPCURL = config.RPCURL(e.RPCURL)
				}
			}
		}
	}
	for _, list := range []*[]config.Region{&s.Compliance.Allow, &s.Compliance.Deny} {
		for i, r := range *list {
			c, err := r.Checked()
			if err != nil {
				return Settings{}, fmt.Errorf("authority baseline: %w", err)
			}
			(*list)[i] = c
		}
	}
	return s, nil
}
