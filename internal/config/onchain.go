package config

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
)

// OnchainVerify is compliance.verify_onchain (SPEC 5.5): a proof counts only
// if the EAS contract of its chain confirms it. It holds only comparable
// values and a slice sorted by chain name, so reflect.DeepEqual (or Equal)
// tells two policies apart.
type OnchainVerify struct {
	SchemaUID string         // "0x" and 64 lower-case hex digits
	Chains    []OnchainChain // sorted by Name
}

// OnchainChain is one chain's JSON-RPC endpoint and EAS contract.
type OnchainChain struct {
	Name      string // as written under verify_onchain.chains
	RPCURLEnv string // the environment variable RPCURL came from; "" when inline
	// RPCURL is the endpoint, resolved from RPCURLEnv when the policy was
	// loaded. It may carry a provider key: it prints as a redaction. Empty
	// only in a sandbox policy that names no endpoint (the sandbox supplies
	// its simulator's).
	RPCURL RPCURL
	EAS    string // "0x" and 40 lower-case hex digits
}

// RPCURL is an RPC endpoint that may carry a key. Printing it with fmt, %v,
// %s, %#v or JSON shows "<redacted>"; Reveal is the one way to its text.
type RPCURL string

// Reveal is the URL itself, for the RPC client only.
func (u RPCURL) Reveal() string { return string(u) }

// String redacts.
func (u RPCURL) String() string {
	if u == "" {
		return ""
	}
	return "<redacted>"
}

// GoString redacts.
func (u RPCURL) GoString() string { return u.String() }

// MarshalJSON redacts.
func (u RPCURL) MarshalJSON() ([]byte, error) { return []byte(`"` + u.String() + `"`), nil }

// MarshalText redacts.
func (u RPCURL) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// Chain returns the entry for chain name (case-insensitive).
func (v *OnchainVerify) Chain(name string) (OnchainChain, bool) {
	if v == nil {
		return OnchainChain{}, false
	}
	for _, c := range v.Chains {
		if strings.EqualFold(c.Name, name) {
			return c, true
		}
	}
	return OnchainChain{}, false
}

// Equal reports whether v and o are the same section (both nil counts).
func (v *OnchainVerify) Equal(o *OnchainVerify) bool {
	if v == nil || o == nil {
		return v == o
	}
	return v.SchemaUID == o.SchemaUID && slices.Equal(v.Chains, o.Chains)
}

var (
	hex32 = regexp.MustCompile(`^0x[0-9a-fA-F]{64}$`)
	hex20 = regexp.MustCompile(`^0x[0-9a-fA-F]{40}$`)
)

// verifyOnchain reads compliance.verify_onchain from the compliance section
// cs. chains is compliance.chains: each must have an entry. Outside the
// sandbox every chain needs exactly one of rpc_url and rpc_url_env; in it,
// neither is fine (the sandbox serves its own chain).
func (c *checker) verifyOnchain(cs *section, chains []string, sandbox bool) *OnchainVerify {
	if _, ok := cs.lines["verify_onchain"]; !ok {
		return nil
	}
	s := cs.sub("verify_onchain", "schema_uid", "chains")
	v := &OnchainVerify{}
	if raw := s.requiredStr("schema_uid"); raw != "" {
		if hex32.MatchString(raw) {
			v.SchemaUID = strings.ToLower(raw)
		} else {
			path, line := s.at("schema_uid")
			c.addf(path, line, "%q is not a schema uid (0x and 64 hex digits)", raw)
		}
	}
	base, line := s.at("chains")
	n, ok := s.vals["chains"]
	if !ok {
		s.missing("chains")
		return v
	}
	es, ok := c.entries(n, base)
	if !ok {
		return v
	}
	have := map[string]bool{}
	for _, e := range es {
		path := join(base, e.key)
		cc := c.section(e.val, path, e.keyLine, "rpc_url", "rpc_url_env", "eas")
		ch := OnchainChain{Name: e.key}
		if strings.TrimSpace(e.key) == "" {
			c.addf(path, e.keyLine, "chain name must not be empty")
		}
		if lower := strings.ToLower(e.key); have[lower] {
			c.addf(path, e.keyLine, "chain %q is listed twice (names compare without case)", e.key)
		} else {
			have[lower] = true
		}
		if raw := cc.requiredStr("eas"); raw != "" {
			if hex20.MatchString(raw) {
				ch.EAS = strings.ToLower(raw)
			} else {
				p, l := cc.at("eas")
				c.addf(p, l, "%q is not a contract address (0x and 40 hex digits)", raw)
			}
		}
		ch.RPCURLEnv, ch.RPCURL = c.rpcEndpoint(cc, sandbox)
		v.Chains = append(v.Chains, ch)
	}
	slices.SortFunc(v.Chains, func(a, b OnchainChain) int { return strings.Compare(a.Name, b.Name) })
	for _, name := range chains {
		if !have[strings.ToLower(name)] {
			c.addf(base, line, "compliance.chains lists %q but it has no entry here: every chain must be verifiable", name)
		}
	}
	return v
}

// rpcEndpoint reads exactly one of rpc_url and rpc_url_env (neither, in the
// sandbox) and checks the URL. The URL is never echoed: it may carry a key.
func (c *checker) rpcEndpoint(cc *section, sandbox bool) (env string, u RPCURL) {
	switch {
	case cc.has("rpc_url") && cc.has("rpc_url_env"):
		path, line := cc.at("rpc_url_env")
		c.addf(path, line, "rpc_url and rpc_url_env are mutually exclusive: set one")
		return "", ""
	case cc.has("rpc_url_env"):
		env = cc.requiredStr("rpc_url_env")
		if env == "" {
			return "", ""
		}
		path, line := cc.at("rpc_url_env")
		if !envName.MatchString(env) {
			c.addf(path, line, "must be the name of an environment variable (letters, digits, _), not the URL itself")
			return "", ""
		}
		raw := strings.TrimSpace(os.Getenv(env))
		if raw == "" {
			c.addf(path, line, "environment variable %s is not set", env)
			return env, ""
		}
		if msg := rpcURLProblem(raw, sandbox, true); msg != "" {
			c.addf(path, line, "the URL in %s %s", env, msg)
		}
		return env, RPCURL(raw)
	case cc.has("rpc_url"):
		raw := cc.requiredStr("rpc_url")
		if raw == "" {
			return "", ""
		}
		path, line := cc.at("rpc_url")
		if msg := rpcURLProblem(raw, sandbox, false); msg != "" {
			c.addf(path, line, "%s", msg)
		}
		return "", RPCURL(raw)
	case !sandbox && !cc.bad:
		c.addf(cc.path, cc.line, "one of rpc_url or rpc_url_env is required")
	}
	return "", ""
}

// rpcURLProblem says what is wrong with an RPC URL, without quoting it.
func rpcURLProblem(raw string, sandbox, fromEnv bool) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return "is not an http(s) URL"
	case u.User != nil && !fromEnv:
		return "must not carry credentials: put a URL with a key in the environment (rpc_url_env)"
	case u.Scheme == "http" && !sandbox && !loopbackHost(u.Hostname()):
		return "must use https (http only to a loopback address)"
	}
	return ""
}

var _ fmt.Stringer = RPCURL("")
