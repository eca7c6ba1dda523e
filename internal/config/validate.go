package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/shopspring/decimal"
	"gopkg.in/yaml.v3"
)

// Defaults (SPEC 3).
const (
	DefaultAPIKeyEnv      = "ASTRA_API_KEY"
	DefaultAdminTokenEnv  = "TREASURYD_ADMIN_TOKEN"
	DefaultAstralBaseURL  = "https://api.astral.global"
	DefaultRequestTimeout = 10 * time.Second
	// DefaultStreamStaleAfter: a quote stream silent this long is torn down
	// and redialled; several quote intervals of a desk that quotes each
	// second or faster.
	DefaultStreamStaleAfter = 15 * time.Second
	DefaultShutdownTimeout  = 15 * time.Second
	DefaultStatePath        = "treasuryd.db"
	DefaultListen           = ":8080"
	DefaultMaxProofAge      = 24 * time.Hour
	DefaultRefreshInterval  = time.Minute
	DefaultQuoteInterval    = time.Second
	DefaultQuoteTTL         = 5 * time.Second
	// MaxQuoteExpiryAhead is how far ahead a quote's expiry may lie (SPEC
	// 5.2): a quote valid for longer is invalid. The decision uses it
	// (strategy.MaxExpiryAhead); here it bounds the sandbox's quote_ttl.
	MaxQuoteExpiryAhead = 10 * time.Minute
	// DefaultAuthorityHold and MinAuthorityHold bound authority.hold: a
	// widening change waits this long, so a person sees it (log, alert)
	// before it can move funds. The sandbox may set any value, 0s included.
	DefaultAuthorityHold = 24 * time.Hour
	MinAuthorityHold     = time.Hour
	// DefaultLease: a leader that cannot confirm its leadership this long
	// stops acting (SPEC 11); MinLease keeps a lease several database round
	// trips long.
	DefaultLease = 10 * time.Second
	MinLease     = time.Second
	// MinAdminTokenLen: a shorter admin token is a policy error at start.
	MinAdminTokenLen = 24
)

var (
	uuidText    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	programName = regexp.MustCompile(`^[a-z0-9-]+$`)
	// symbolText is an asset symbol as the desk writes them: "BTC", "USDC".
	symbolText = regexp.MustCompile(`^[A-Z0-9][A-Z0-9._]{0,31}$`)
	pairText   = regexp.MustCompile(`^([A-Z0-9][A-Z0-9._]{0,31})-([A-Z0-9][A-Z0-9._]{0,31})$`)
	envName    = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// policy walks the root mapping.
func (c *checker) policy(root *yaml.Node) *Policy {
	s := c.section(root, "", 1, "account_id", "astra", "astral", "state", "http", "authority", "ha", "dry_run",
		"shutdown_timeout", "compliance", "programs", "withdraw", "rebalance", "reconcile", "sandbox")
	p := &Policy{}

	p.AccountID = s.requiredStr("account_id")
	if p.AccountID != "" && !uuidText.MatchString(p.AccountID) {
		path, _ := s.at("account_id")
		c.addf(path, s.vals["account_id"].Line, "%q is not a UUID", p.AccountID)
	}
	if _, ok := s.lines["sandbox"]; ok {
		p.Sandbox = c.sandbox(s.sub("sandbox", "seed", "balances", "price", "volatility_bps", "quote_interval", "quote_ttl"))
	}
	p.Astra = c.astra(s.sub("astra", "base_url", "ws_url", "api_key_env", "api_key_file", "request_timeout", "stream_stale_after"), p.Sandbox != nil)
	p.Astral = c.astral(s.sub("astral", "base_url", "request_timeout"), p.Sandbox != nil)
	p.State = c.state(s.sub("state", "path", "postgres_dsn_env", "quote_retention"))
	p.HA = c.ha(s.sub("ha", "lease"), p.State, s)
	p.HTTP = c.http(s.sub("http", "listen", "admin_listen", "admin_token_env"))
	p.Authority = c.authority(s.sub("authority", "hold"), p.Sandbox != nil)
	p.DryRun = s.boolean("dry_run")
	p.ShutdownTimeout = s.duration("shutdown_timeout", DefaultShutdownTimeout, positive)
	cs := s.sub("compliance", "enabled", "subject", "chains", "trusted_provers",
		"max_proof_age", "refresh_interval", "allow", "deny", "verify_onchain")
	p.Compliance = c.compliance(cs, p.Sandbox != nil)
	p.Compliance.VerifyOnchain = c.verifyOnchain(cs, p.Compliance.Chains, p.Sandbox != nil)
	p.Programs = c.programs(s)
	p.Withdraw = c.withdraw(s.sub("withdraw", "allowlist"))
	p.Rebalance = c.rebalance(s.sub("rebalance", "schedule", "rules"), p)
	p.Reconcile = c.reconcile(s.sub("reconcile", "schedule", "tolerance"))
	return p
}

// url reads a URL under key whose scheme must be one of schemes. Outside the
// sandbox (secure set), a scheme other than the last, TLS one (https, wss)
// is allowed only to a loopback host: a local TLS-terminating proxy.
func (s *section) url(key string, secure bool, schemes ...string) string {
	raw := s.requiredStr(key)
	if raw == "" {
		return ""
	}
	path, _ := s.at(key)
	line := s.vals[key].Line
	u, err := url.Parse(raw)
	if err != nil {
		s.c.addf(path, line, "is not a URL")
		return raw
	}
	if u.User != nil {
		// Do not echo it: the userinfo may be a credential.
		s.c.addf(path, line, "must not carry credentials")
		return raw
	}
	if !contains(schemes, u.Scheme) || u.Host == "" {
		s.c.addf(path, line, "%q is not a URL with scheme %s", raw, strings.Join(schemes, " or "))
		return raw
	}
	if tls := schemes[len(schemes)-1]; secure && u.Scheme != tls && !loopbackHost(u.Hostname()) {
		s.c.addf(path, line, "%q must use %s: plain %s is allowed only to a loopback host (127.0.0.0/8, ::1, localhost)",
			raw, tls, u.Scheme)
	}
	return raw
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *checker) astra(s *section, sandbox bool) Astra {
	a := Astra{}
	if s.has("base_url") || !sandbox {
		a.BaseURL = s.url("base_url", !sandbox, "http", "https")
	}
	if s.has("ws_url") || !sandbox {
		a.WSURL = s.url("ws_url", !sandbox, "ws", "wss")
	}
	a.APIKeyEnv = s.str("api_key_env")
	a.APIKeyFile = s.str("api_key_file")
	switch {
	case s.has("api_key_env") && s.has("api_key_file"):
		path, line := s.at("api_key_file")
		c.addf(path, line, "api_key_env and api_key_file are mutually exclusive: set one")
	case s.has("api_key_env"):
		s.envVar("api_key_env", a.APIKeyEnv)
	case s.has("api_key_file"):
		if strings.TrimSpace(a.APIKeyFile) == "" {
			path, line := s.at("api_key_file")
			c.addf(path, line, "must not be empty")
		}
	default:
		a.APIKeyEnv = DefaultAPIKeyEnv
	}
	a.RequestTimeout = s.duration("request_timeout", DefaultRequestTimeout, positive)
	a.StreamStaleAfter = s.duration("stream_stale_after", DefaultStreamStaleAfter, positive)
	return a
}

// envVar checks that the value under key names an environment variable. The
// value is not echoed: someone may have pasted the secret itself.
func (s *section) envVar(key, v string) {
	if !envName.MatchString(v) {
		path, line := s.at(key)
		s.c.addf(path, line, "must be the name of an environment variable (letters, digits, _), not the secret itself")
	}
}

func (c *checker) astral(s *section, sandbox bool) Astral {
	a := Astral{BaseURL: DefaultAstralBaseURL}
	if s.has("base_url") {
		a.BaseURL = s.url("base_url", !sandbox, "http", "https")
	}
	a.RequestTimeout = s.duration("request_timeout", DefaultRequestTimeout, positive)
	return a
}

func (c *checker) state(s *section) State {
	st := State{
		Path:           s.strOr("path", DefaultStatePath),
		PostgresDSNEnv: s.str("postgres_dsn_env"),
		QuoteRetention: s.duration("quote_retention", 0, nonNegative),
	}
	if s.has("postgres_dsn_env") {
		// Exactly one journal: the SQLite default path does not apply.
		if s.has("path") {
			path, line := s.at("postgres_dsn_env")
			c.addf(path, line, "set together with state.path: give exactly one journal (a SQLite path or a PostgreSQL DSN variable)")
		}
		st.Path = ""
		if st.PostgresDSNEnv == "" {
			path, line := s.at("postgres_dsn_env")
			c.addf(path, line, "is empty: name the environment variable holding the PostgreSQL DSN")
		} else {
			s.envVar("postgres_dsn_env", st.PostgresDSNEnv)
		}
	}
	return st
}

// ha reads the ha section, which only a PostgreSQL journal may have.
func (c *checker) ha(s *section, st State, root *section) HA {
	h := HA{Lease: s.duration("lease", DefaultLease, positive)}
	if !root.has("ha") {
		return h
	}
	if st.PostgresDSNEnv == "" {
		path, line := root.at("ha")
		c.addf(path, line, "needs state.postgres_dsn_env: a hot standby runs on a PostgreSQL journal (SQLite is single-process)")
	}
	if h.Lease > 0 && h.Lease < MinLease && s.has("lease") {
		path, line := s.at("lease")
		c.addf(path, line, "must be at least %s (the leader confirms its lease several times per period), got %s", MinLease, s.vals["lease"].Value)
	}
	return h
}

func (c *checker) http(s *section) HTTP {
	h := HTTP{
		Listen:        s.strOr("listen", DefaultListen),
		AdminListen:   s.str("admin_listen"),
		AdminTokenEnv: s.strOr("admin_token_env", DefaultAdminTokenEnv),
	}
	s.hostPort("listen", h.Listen)
	s.hostPort("admin_listen", h.AdminListen)
	if s.has("admin_token_env") && h.AdminTokenEnv != "" {
		s.envVar("admin_token_env", h.AdminTokenEnv)
	}
	// The token itself is read from the environment at start; a short one
	// is refused here so the daemon never serves admin routes behind it.
	// Neither the value nor its length is echoed.
	if envName.MatchString(h.AdminTokenEnv) {
		if tok := strings.TrimSpace(os.Getenv(h.AdminTokenEnv)); tok != "" && len(tok) < MinAdminTokenLen {
			path, line := s.at("admin_token_env")
			c.addf(path, line, "the admin token in environment variable %s is shorter than %d characters", h.AdminTokenEnv, MinAdminTokenLen)
		}
	}
	return h
}

// hostPort checks that the value v under key, when present and non-empty, is
// host:port.
func (s *section) hostPort(key, v string) {
	if !s.has(key) || v == "" {
		return
	}
	path, line := s.at(key)
	_, port, err := net.SplitHostPort(v)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
		s.c.addf(path, line, "%q is not host:port (e.g. \":8080\", \"127.0.0.1:8080\")", v)
	}
}

func (c *checker) authority(s *section, sandbox bool) Authority {
	a := Authority{Hold: s.duration("hold", DefaultAuthorityHold, nonNegative)}
	if !sandbox && a.Hold < MinAuthorityHold && s.has("hold") {
		path, line := s.at("hold")
		c.addf(path, line, "must be at least %s outside the sandbox (a widening change must wait long enough for a person to see it), got %s",
			MinAuthorityHold, s.vals["hold"].Value)
	}
	return a
}

func (c *checker) compliance(s *section, sandbox bool) Compliance {
	cp := Compliance{
		Enabled:         s.boolean("enabled"),
		Subject:         s.str("subject"),
		Chains:          s.strList("chains"),
		TrustedProvers:  s.strList("trusted_provers"),
		MaxProofAge:     s.duration("max_proof_age", DefaultMaxProofAge, positive),
		RefreshInterval: s.duration("refresh_interval", DefaultRefreshInterval, positive),
	}
	names := map[string]int{}
	cp.Allow = c.regions(s, "allow", names)
	cp.Deny = c.regions(s, "deny", names)
	if cp.Enabled {
		if strings.TrimSpace(cp.Subject) == "" {
			path, line := s.at("subject")
			c.addf(path, line, "is required when compliance is enabled")
		}
		if len(cp.Allow) == 0 {
			path, line := s.at("allow")
			c.addf(path, line, "at least one allow region is required when compliance is enabled")
		}
		if !sandbox && len(cp.TrustedProvers) == 0 {
			// EAS is permissionless: without a list, anyone's attestation
			// for the subject would open the gate.
			path, line := s.at("trusted_provers")
			c.addf(path, line, "at least one trusted prover is required when compliance is enabled outside the sandbox (anyone can attest anything on EAS)")
		}
	}
	return cp
}

func (c *checker) programs(root *section) []Program {
	base, _ := root.at("programs")
	var out []Program
	names := map[string]int{}
	for i, it := range root.list("programs") {
		path := index(base, i)
		s := c.section(it, path, it.Line, "name", "base", "quote", "side", "size", "notional", "limit_price",
			"reference", "target", "max_daily_notional", "cooldown", "min_validity", "reserve", "dry_run")
		p := Program{
			Name:  s.requiredStr("name"),
			Base:  s.requiredStr("base"),
			Quote: s.requiredStr("quote"),
			Side:  s.requiredStr("side"),
		}
		if p.Name != "" {
			np, line := s.at("name")
			if !programName.MatchString(p.Name) {
				c.addf(np, line, "%q must match [a-z0-9-]+ (it is a metric label)", p.Name)
			} else if first, dup := names[p.Name]; dup {
				c.addf(np, line, "duplicate program name %q (first at line %d)", p.Name, first)
			} else {
				names[p.Name] = line
			}
		}
		s.symbol("base", p.Base)
		s.symbol("quote", p.Quote)
		if p.Base != "" && p.Base == p.Quote {
			qp, line := s.at("quote")
			c.addf(qp, line, "must differ from base (%s)", p.Base)
		}
		if p.Side != "" && p.Side != SideSell && p.Side != SideBuy {
			sp, line := s.at("side")
			c.addf(sp, line, "%q must be sell or buy", p.Side)
		}
		switch {
		case s.has("size") && s.has("notional"):
			np, line := s.at("notional")
			c.addf(np, line, "set exactly one of size or notional, not both")
		case !s.has("size") && !s.has("notional") && !s.bad:
			c.addf(path, it.Line, "one of size or notional is required")
		}
		p.Size = s.amount("size", optionalPositive)
		p.Notional = s.amount("notional", optionalPositive)
		p.LimitPrice = s.amount("limit_price", requiredPositive)
		if _, ok := s.lines["reference"]; ok {
			r := s.sub("reference", "window", "min_improvement_bps")
			p.Reference = &Reference{
				Window:            r.duration("window", 0, positive),
				MinImprovementBps: r.bps("min_improvement_bps"),
			}
			if !r.has("window") {
				r.missing("window")
			}
		}
		p.Target = s.amount("target", optionalPositive)
		p.MaxDailyNotional = s.amount("max_daily_notional", optionalPositive)
		p.Cooldown = s.duration("cooldown", 0, nonNegative)
		p.MinValidity = s.duration("min_validity", 0, nonNegative)
		p.Reserve = s.amount("reserve", optionalNonNeg)
		p.DryRun = s.boolean("dry_run")
		out = append(out, p)
	}
	return out
}

// symbol checks an asset symbol already read from key.
func (s *section) symbol(key, v string) {
	if v != "" && !symbolText.MatchString(v) {
		path, line := s.at(key)
		s.c.addf(path, line, "%q is not an asset symbol (upper case, e.g. BTC)", v)
	}
}

func destKey(asset, network, address string) string {
	return asset + "\x00" + network + "\x00" + address
}

func (c *checker) withdraw(s *section) Withdraw {
	base, _ := s.at("allowlist")
	var w Withdraw
	for i, it := range s.list("allowlist") {
		d := c.section(it, index(base, i), it.Line, "asset", "network", "address")
		dst := Destination{
			Asset:   d.requiredStr("asset"),
			Network: d.requiredStr("network"),
			Address: d.requiredStr("address"),
		}
		d.symbol("asset", dst.Asset)
		w.Allowlist = append(w.Allowlist, dst)
	}
	return w
}

func (c *checker) rebalance(s *section, p *Policy) Rebalance {
	allowed := map[string]bool{}
	for _, d := range p.Withdraw.Allowlist {
		allowed[destKey(d.Asset, d.Network, d.Address)] = true
	}
	base, _ := s.at("rules")
	var r Rebalance
	names := map[string]int{}
	for i, it := range s.list("rules") {
		path := index(base, i)
		rs := c.section(it, path, it.Line, "name", "asset", "network", "address", "high_water", "keep",
			"min_amount", "max_amount", "max_daily")
		rule := Rule{
			Name:    rs.requiredStr("name"),
			Asset:   rs.requiredStr("asset"),
			Network: rs.requiredStr("network"),
			Address: rs.requiredStr("address"),
		}
		if rule.Name != "" {
			np, line := rs.at("name")
			if first, dup := names[rule.Name]; dup {
				c.addf(np, line, "duplicate rule name %q (first at line %d)", rule.Name, first)
			} else {
				names[rule.Name] = line
			}
		}
		rs.symbol("asset", rule.Asset)
		if rule.Asset != "" && rule.Network != "" && rule.Address != "" &&
			!allowed[destKey(rule.Asset, rule.Network, rule.Address)] {
			ap, line := rs.at("address")
			c.addf(ap, line, "%s on %s to %q is not on withdraw.allowlist", rule.Asset, rule.Network, rule.Address)
		}
		rule.HighWater = rs.amount("high_water", requiredPositive)
		rule.Keep = rs.amount("keep", optionalNonNeg)
		rule.MinAmount = rs.amount("min_amount", optionalPositive)
		rule.MaxAmount = rs.amount("max_amount", optionalPositive)
		rule.MaxDaily = rs.amount("max_daily", optionalPositive)
		if rs.has("keep") && rule.HighWater.IsPositive() && rule.Keep.Cmp(rule.HighWater) >= 0 {
			kp, line := rs.at("keep")
			c.addf(kp, line, "must be less than high_water (%s)", rule.HighWater)
		}
		if rule.MinAmount.IsPositive() && rule.MaxAmount.IsPositive() && rule.MinAmount.GreaterThan(rule.MaxAmount) {
			mp, line := rs.at("min_amount")
			c.addf(mp, line, "must not exceed max_amount (%s)", rule.MaxAmount)
		}
		r.Rules = append(r.Rules, rule)
	}
	r.Schedule = s.cron("schedule")
	if len(r.Rules) > 0 && !s.has("schedule") {
		path, line := s.at("schedule")
		c.addf(path, line, "is required when there are rules")
	}
	return r
}

// cron reads an optional cron spec (robfig/cron/v3 ParseStandard).
func (s *section) cron(key string) string {
	if !s.has(key) {
		return ""
	}
	spec := s.requiredStr(key)
	if strings.TrimSpace(spec) == "" {
		return ""
	}
	if _, err := cron.ParseStandard(spec); err != nil {
		path, line := s.at(key)
		s.c.addf(path, line, "%q is not a cron spec (5 fields, or @hourly, @every 30s ...): %v", spec, err)
	}
	return spec
}

func (c *checker) reconcile(s *section) Reconcile {
	return Reconcile{
		Schedule:  s.cron("schedule"),
		Tolerance: s.amount("tolerance", optionalNonNeg),
	}
}

func (c *checker) sandbox(s *section) *Sandbox {
	sb := &Sandbox{
		Seed:          s.int64("seed"),
		VolatilityBps: s.bps("volatility_bps"),
		QuoteInterval: s.duration("quote_interval", DefaultQuoteInterval, positive),
		QuoteTTL:      s.duration("quote_ttl", DefaultQuoteTTL, positive),
	}
	if sb.QuoteTTL > MaxQuoteExpiryAhead {
		path, line := s.at("quote_ttl")
		c.addf(path, line, "%s is more than %s: the daemon refuses every quote whose expiry lies further ahead (invalid)",
			sb.QuoteTTL, MaxQuoteExpiryAhead)
	}
	if n, ok := s.vals["balances"]; ok {
		path, _ := s.at("balances")
		sb.Balances = c.decimalMap(n, path, symbolText, "an asset symbol (e.g. BTC)", optionalNonNeg)
	}
	if n, ok := s.vals["price"]; ok {
		path, _ := s.at("price")
		sb.Price = c.decimalMap(n, path, pairText, "a pair BASE-QUOTE (e.g. BTC-USD)", requiredPositive)
	}
	return sb
}

// decimalMap reads a mapping of names to decimal strings.
func (c *checker) decimalMap(n *yaml.Node, path string, keyText *regexp.Regexp, keyDesc string, rule amountRule) map[string]decimal.Decimal {
	es, ok := c.entries(n, path)
	if !ok {
		return nil
	}
	out := make(map[string]decimal.Decimal, len(es))
	for _, e := range es {
		p := join(path, e.key)
		if !keyText.MatchString(e.key) {
			c.addf(p, e.keyLine, "%q is not %s", e.key, keyDesc)
			continue
		}
		if e.val.Kind != yaml.ScalarNode || isNull(e.val) {
			c.addf(p, e.val.Line, "must be a quoted decimal string, found %s", kindName(e.val))
			continue
		}
		out[e.key] = c.amount(e.val, p, rule)
	}
	return out
}

func (c *checker) regions(s *section, key string, names map[string]int) []Region {
	base, _ := s.at(key)
	var out []Region
	for i, it := range s.list(key) {
		path := index(base, i)
		rs := c.section(it, path, it.Line, "name", "bbox", "geojson")
		r := Region{Name: rs.requiredStr("name")}
		if r.Name != "" {
			np, line := rs.at("name")
			if first, dup := names[r.Name]; dup {
				c.addf(np, line, "duplicate region name %q (first at line %d)", r.Name, first)
			} else {
				names[r.Name] = line
			}
		}
		switch {
		case rs.has("bbox") && rs.has("geojson"):
			gp, line := rs.at("geojson")
			c.addf(gp, line, "set exactly one of bbox or geojson, not both")
		case rs.has("bbox"):
			r.BBox = c.bbox(rs)
		case rs.has("geojson"):
			r.GeoJSON = rs.requiredStr("geojson")
			if r.GeoJSON != "" {
				gp, line := rs.at("geojson")
				g, err := parseRegionGeoJSON(r.GeoJSON)
				if err != nil {
					c.addf(gp, line, "%v", err)
				}
				r.geom = g
			}
		case !rs.bad:
			c.addf(path, it.Line, "one of bbox or geojson is required")
		}
		out = append(out, r)
	}
	return out
}

// bbox reads [minLng, minLat, maxLng, maxLat].
func (c *checker) bbox(rs *section) []float64 {
	path, _ := rs.at("bbox")
	n := rs.vals["bbox"]
	if n.Kind != yaml.SequenceNode || len(n.Content) != 4 {
		c.addf(path, n.Line, "must be a list of 4 numbers [minLng, minLat, maxLng, maxLat]")
		return nil
	}
	v := make([]float64, 4)
	lines := make([]int, 4)
	ok := true
	for i, it := range n.Content {
		it = resolve(it)
		lines[i] = it.Line
		var err error
		if t := it.ShortTag(); it.Kind == yaml.ScalarNode && (t == "!!int" || t == "!!float") {
			v[i], err = strconv.ParseFloat(it.Value, 64)
		} else {
			err = fmt.Errorf("not a number")
		}
		if err != nil {
			c.addf(index(path, i), it.Line, "must be a number")
			ok = false
		}
	}
	if !ok {
		return nil
	}
	for i, name := range []string{"minLng", "minLat", "maxLng", "maxLat"} {
		limit := 180.0
		if i%2 == 1 {
			limit = 90
		}
		if v[i] < -limit || v[i] > limit {
			c.addf(index(path, i), lines[i], "%s %v is outside -%v..%v", name, v[i], limit, limit)
			ok = false
		}
	}
	line := n.Line
	if v[0] >= v[2] {
		c.addf(path, line, "minLng (%v) must be less than maxLng (%v)", v[0], v[2])
		ok = false
	}
	if v[1] >= v[3] {
		c.addf(path, line, "minLat (%v) must be less than maxLat (%v)", v[1], v[3])
		ok = false
	}
	if !ok {
		return nil
	}
	return v
}
