package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// want is one expected problem: exact path and line, and a piece of the message.
type want struct {
	path string
	line int
	msg  string
}

func TestBadPoliciesReportEveryProblemWithPathAndLine(t *testing.T) {
	const inline = "the API key never goes in the policy file: use api_key_env or api_key_file"
	tests := []struct {
		file string
		want []want
	}{
		{"account_id_missing.yaml", []want{{"account_id", 1, "is required"}}},
		{"account_id_not_uuid.yaml", []want{{"account_id", 1, "is not a UUID"}}},
		{"astra_urls_missing.yaml", []want{
			{"astra.base_url", 2, "is required"},
			{"astra.ws_url", 2, "is required"},
		}},
		{"astra_url_scheme.yaml", []want{
			{"astra.base_url", 3, `"ws://desk.example/v2" is not a URL with scheme http or https`},
			{"astra.ws_url", 4, "is not a URL with scheme ws or wss"},
		}},
		{"astra_key_env_and_file.yaml", []want{{"astra.api_key_file", 5, "mutually exclusive"}}},
		{"astra_inline_key.yaml", []want{
			{"astra.api_key", 4, inline},
			{"apiKey", 5, inline},
		}},
		{"astra_key_env_not_a_name.yaml", []want{{"astra.api_key_env", 4, "must be the name of an environment variable"}}},
		{"astral_url_scheme.yaml", []want{{"astral.base_url", 4, "is not a URL with scheme http or https"}}},
		{"duration_syntax.yaml", []want{
			{"astra.request_timeout", 4, `"ten seconds" is not a duration`},
			{"shutdown_timeout", 5, `"15" is not a duration`},
		}},
		{"duration_not_positive.yaml", []want{
			{"sandbox.quote_interval", 2, "must be positive"},
			{"sandbox.quote_ttl", 2, "must be positive"},
			{"shutdown_timeout", 3, "must be positive"},
			{"state.quote_retention", 5, "must not be negative"},
			{"compliance.max_proof_age", 7, "must be positive"},
			{"compliance.refresh_interval", 8, "must be positive"},
			{"programs[0].cooldown", 16, "must not be negative"},
			{"programs[0].min_validity", 17, "must not be negative"},
			{"programs[0].reference.window", 19, "must be positive"},
		}},
		{"amount_bare_number.yaml", []want{
			{"programs[0].size", 8, `must be a quoted decimal string, e.g. "0.5"`},
			{"programs[0].limit_price", 9, `must be a quoted decimal string, e.g. "64000"`},
		}},
		{"amount_not_decimal.yaml", []want{
			{"programs[0].size", 8, `"1e3" is not a decimal`},
			{"programs[0].limit_price", 9, `"64,000" is not a decimal`},
		}},
		{"amount_not_positive.yaml", []want{
			{"programs[0].size", 8, "must be positive"},
			{"programs[0].limit_price", 9, "must not be negative"},
			{"programs[0].reserve", 10, "must not be negative"},
			{"programs[0].target", 11, "must be positive"},
			{"reconcile.tolerance", 13, "must not be negative"},
			{"rebalance.rules[0].high_water", 24, "must be positive"},
			{"rebalance.rules[0].max_daily", 26, "must not be negative"},
		}},
		{"program_name.yaml", []want{
			{"programs[0].name", 4, `"Sell_BTC" must match [a-z0-9-]+`},
			{"programs[2].name", 16, `duplicate program name "a" (first at line 10)`},
		}},
		{"program_pair.yaml", []want{
			{"programs[0].quote", 6, "must differ from base (BTC)"},
			{"programs[1].quote", 10, "is required"},
			{"programs[1].base", 11, `"btc" is not an asset symbol`},
		}},
		{"program_side.yaml", []want{{"programs[0].side", 7, `"hold" must be sell or buy`}}},
		{"program_size_or_notional.yaml", []want{
			{"programs[0].notional", 9, "set exactly one of size or notional, not both"},
			{"programs[1]", 11, "one of size or notional is required"},
		}},
		{"program_limit_price_missing.yaml", []want{{"programs[0].limit_price", 4, "is required"}}},
		{"rule_keep_not_below_high_water.yaml", []want{{"rebalance.rules[0].keep", 14, "must be less than high_water (3)"}}},
		{"rule_min_above_max.yaml", []want{{"rebalance.rules[0].min_amount", 14, "must not exceed max_amount (1)"}}},
		{"rule_name_duplicate.yaml", []want{{"rebalance.rules[1].name", 10, `duplicate rule name "r" (first at line 9)`}}},
		{"rule_not_on_allowlist.yaml", []want{
			{"rebalance.rules[0].address", 9, `BTC on bitcoin to "bc1z" is not on withdraw.allowlist`},
			{"rebalance.rules[1].address", 10, `BTC on lightning to "bc1q" is not on withdraw.allowlist`},
			{"rebalance.rules[2].address", 11, `ETH on bitcoin to "bc1q" is not on withdraw.allowlist`},
		}},
		{"allowlist_incomplete.yaml", []want{
			{"withdraw.allowlist[0].address", 5, "is required"},
			{"withdraw.allowlist[1].network", 6, "is required"},
			{"withdraw.allowlist[2].asset", 7, "must not be empty"},
		}},
		{"cron_bad.yaml", []want{
			{"rebalance.schedule", 7, `"every 5 minutes" is not a cron spec`},
			{"reconcile.schedule", 11, `"61 * * * *" is not a cron spec`},
		}},
		{"rebalance_schedule_missing.yaml", []want{{"rebalance.schedule", 6, "is required when there are rules"}}},
		{"region_bbox.yaml", []want{
			{"compliance.allow[0].bbox", 6, "minLng (10) must be less than maxLng (-10)"},
			{"compliance.allow[1].bbox[0]", 8, "minLng -200 is outside -180..180"},
			{"compliance.allow[1].bbox[3]", 8, "maxLat 95 is outside -90..90"},
			{"compliance.allow[2].bbox", 10, "must be a list of 4 numbers"},
			{"compliance.allow[3].bbox[0]", 12, "must be a number"},
		}},
		{"region_shape.yaml", []want{
			{"compliance.allow[0].geojson", 7, "set exactly one of bbox or geojson, not both"},
			{"compliance.allow[1]", 8, "one of bbox or geojson is required"},
			{"compliance.deny[0].name", 10, "is required"},
			{"compliance.deny[1].name", 11, `duplicate region name "both" (first at line 5)`},
		}},
		{"region_geojson.yaml", []want{
			{"compliance.allow[0].geojson", 6, "must be Polygon or MultiPolygon"},
			{"compliance.allow[1].geojson", 8, "is not closed"},
			{"compliance.allow[2].geojson", 10, "a closed ring needs at least 4"},
			{"compliance.allow[3].geojson", 12, "is outside -180..180 / -90..90"},
			{"compliance.allow[4].geojson", 14, "is not a valid GeoJSON geometry"},
		}},
		{"compliance_enabled_incomplete.yaml", []want{
			{"compliance.allow", 3, "at least one allow region is required"},
			{"compliance.subject", 3, "is required when compliance is enabled"},
		}},
		{"authority_hold_short.yaml", []want{{"authority.hold", 6, "must be at least 1h0m0s outside the sandbox"}}},
		{"state_two_journals.yaml", []want{{"state.postgres_dsn_env", 7, "give exactly one journal"}}},
		{"ha_without_postgres.yaml", []want{{"ha", 5, "needs state.postgres_dsn_env"}}},
		{"ha_lease_short.yaml", []want{{"ha.lease", 8, "must be at least 1s"}}},
		{"state_postgres_env_bad.yaml", []want{{"state.postgres_dsn_env", 6, "must be the name of an environment variable"}}},
		{"authority_hold_negative.yaml", []want{{"authority.hold", 4, "must not be negative"}}},
		{"compliance_trusted_provers_missing.yaml", []want{
			{"compliance.trusted_provers", 8, "at least one trusted prover is required when compliance is enabled outside the sandbox"},
		}},
		{"url_plain_not_loopback.yaml", []want{
			{"astra.base_url", 3, `"http://desk.example/v2" must use https: plain http is allowed only to a loopback host`},
			{"astra.ws_url", 4, `must use wss: plain ws is allowed only to a loopback host`},
			{"astral.base_url", 6, `must use https: plain http is allowed only to a loopback host`},
		}},
		{"http_admin_listen_bad.yaml", []want{{"http.admin_listen", 4, `"localhost" is not host:port`}}},
		{"sandbox_bad.yaml", []want{
			{"sandbox.seed", 3, "must be an integer"},
			{"sandbox.balances.ETH", 4, `must be a quoted decimal string, e.g. "2"`},
			{"sandbox.balances.btc", 4, `"btc" is not an asset symbol`},
			{"sandbox.price.BTCUSD", 5, "is not a pair BASE-QUOTE"},
			{"sandbox.price.ETH-USD", 5, "must be positive"},
			{"sandbox.volatility_bps", 6, "must not be negative"},
			{"sandbox.quote_ttl", 7, "is more than 10m0s"},
		}},
		{"unknown_key.yaml", []want{
			{"programz", 3, `unknown key "programz" (did you mean "programs"?)`},
			{"http.port", 5, `unknown key "port"`},
			{"programs[0].limit", 12, `unknown key "limit"`},
		}},
		{"duplicate_key.yaml", []want{{"dry_run", 4, "duplicate key (first at line 3)"}}},
		{"wrong_kind.yaml", []want{
			{"astra", 3, "must be a mapping, found a string"},
			{"programs", 4, "must be a list, found a mapping"},
			{"dry_run", 5, "must be true or false"},
		}},
		{"bad_yaml.yaml", []want{{"", 6, "invalid YAML: mapping values are not allowed"}}},
		{"empty.yaml", []want{{"", 1, "the policy file is empty"}}},
		{"two_documents.yaml", []want{{"", 3, "only one YAML document is allowed"}}},
		{"many_problems.yaml", []want{
			{"account_id", 1, "is not a UUID"},
			{"astra.ws_url", 2, "is required"},
			{"astra.api_key", 4, inline},
			{"programs[0].size", 10, "must be a quoted decimal string"},
			{"programs[0].cooldown", 12, `"soon" is not a duration`},
			{"compliance.allow[0].bbox", 17, "minLng (30) must be less than maxLng (-10)"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			path := filepath.Join("testdata", tt.file)
			p, err := Load(path)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Load = %v, %v; want a *ValidationError", p, err)
			}
			if p != nil {
				t.Errorf("Load returned a policy alongside problems")
			}
			if ve.File != path {
				t.Errorf("File = %q, want %q", ve.File, path)
			}
			got := append([]Problem(nil), ve.Problems...)
			sort.SliceStable(got, func(i, j int) bool {
				if got[i].Line != got[j].Line {
					return got[i].Line < got[j].Line
				}
				return got[i].Path < got[j].Path
			})
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), ve)
			}
			for i, w := range tt.want {
				g := got[i]
				if g.Path != w.path || g.Line != w.line || !strings.Contains(g.Msg, w.msg) {
					t.Errorf("problem %d = %d %s: %q\nwant       %d %s: containing %q", i, g.Line, g.Path, g.Msg, w.line, w.path, w.msg)
				}
			}
		})
	}
}

func TestProblemsNeverEchoAnInlineKey(t *testing.T) {
	for _, f := range []string{"astra_inline_key.yaml", "astra_key_env_not_a_name.yaml", "many_problems.yaml"} {
		_, err := Load(filepath.Join("testdata", f))
		if err == nil || strings.Contains(err.Error(), "sk-live") {
			t.Errorf("%s: error %v: want an error that does not contain the key", f, err)
		}
	}
}

func TestValidationErrorListsOneProblemPerLine(t *testing.T) {
	_, err := Load("testdata/astra_url_scheme.yaml")
	want := "testdata/astra_url_scheme.yaml:3: astra.base_url: \"ws://desk.example/v2\" is not a URL with scheme http or https\n" +
		"testdata/astra_url_scheme.yaml:4: astra.ws_url: \"https://desk.example/v2\" is not a URL with scheme ws or wss"
	if err == nil || err.Error() != want {
		t.Errorf("Error() =\n%v\nwant\n%s", err, want)
	}
	_, err = Load("testdata/empty.yaml")
	if err == nil || err.Error() != "testdata/empty.yaml:1: the policy file is empty" {
		t.Errorf("empty file: %v", err)
	}
}

func TestLoadOfMissingFileIsNotAValidationError(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	var ve *ValidationError
	if err == nil || errors.As(err, &ve) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v: want a wrapped not-exist error", err)
	}
}

const minimal = "account_id: \"3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50\"\nastra:\n  base_url: \"https://desk.example/v2\"\n  ws_url: \"wss://desk.example/v2\"\n"

func TestMinimalPolicyGetsTheDefaults(t *testing.T) {
	p, err := Parse([]byte(minimal), "minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"astra.api_key_env", p.Astra.APIKeyEnv, "ASTRA_API_KEY"},
		{"astra.request_timeout", p.Astra.RequestTimeout, 10 * time.Second},
		{"astral.base_url", p.Astral.BaseURL, "https://api.astral.global"},
		{"astral.request_timeout", p.Astral.RequestTimeout, 10 * time.Second},
		{"shutdown_timeout", p.ShutdownTimeout, 15 * time.Second},
		{"state.path", p.State.Path, "treasuryd.db"},
		{"state.quote_retention", p.State.QuoteRetention, time.Duration(0)},
		{"http.listen", p.HTTP.Listen, ":8080"},
		{"http.admin_token_env", p.HTTP.AdminTokenEnv, "TREASURYD_ADMIN_TOKEN"},
		{"compliance.max_proof_age", p.Compliance.MaxProofAge, 24 * time.Hour},
		{"compliance.refresh_interval", p.Compliance.RefreshInterval, time.Minute},
		{"sandbox", p.Sandbox == nil, true},
		{"state.postgres_dsn_env", p.State.PostgresDSNEnv, ""},
		{"ha.lease", p.HA.Lease, 10 * time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestSandboxBlockGetsItsDefaults(t *testing.T) {
	p, err := Parse([]byte("account_id: \"3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50\"\nsandbox:\n"), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.Sandbox == nil || p.Sandbox.QuoteInterval != time.Second || p.Sandbox.QuoteTTL != 5*time.Second {
		t.Errorf("sandbox = %+v: want quote_interval 1s, quote_ttl 5s", p.Sandbox)
	}
}

func TestZeroIsAllowedWhereTheSpecSaysSo(t *testing.T) {
	doc := minimal + `programs:
  - name: p
    base: BTC
    quote: USD
    side: buy
    notional: "100.50"
    limit_price: "65000.25"
    reserve: "0"
    reference: { window: 5m, min_improvement_bps: 0 }
withdraw:
  allowlist:
    - { asset: BTC, network: bitcoin, address: "bc1q" }
rebalance:
  schedule: "*/15 * * * *"
  rules:
    - { name: r, asset: BTC, network: bitcoin, address: "bc1q", high_water: "3", keep: "0" }
reconcile:
  tolerance: "0"
`
	p, err := Parse([]byte(doc), "zero.yaml")
	if err != nil {
		t.Fatal(err)
	}
	prog := p.Programs[0]
	if !prog.Notional.Equal(decimal.RequireFromString("100.50")) || !prog.LimitPrice.Equal(decimal.RequireFromString("65000.25")) ||
		!prog.Size.IsZero() || !prog.Reserve.IsZero() || prog.Reference == nil || prog.Reference.Window != 5*time.Minute {
		t.Errorf("program = %+v", prog)
	}
	if r := p.Rebalance.Rules[0]; !r.Keep.IsZero() || !r.HighWater.Equal(decimal.NewFromInt(3)) || !r.MaxDaily.IsZero() {
		t.Errorf("rule = %+v", r)
	}
	if !p.Allowed("BTC", "bitcoin", "bc1q") || p.Allowed("BTC", "bitcoin", "bc1z") {
		t.Error("Allowed does not follow the allowlist")
	}
}

func TestRegionsParseToGeometry(t *testing.T) {
	p, err := Load("../../configs/production.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	eu, manhattan := p.Compliance.Allow[0], p.Compliance.Allow[1]
	if fmt.Sprint(eu.BBox) != "[-10 35 30 60]" || eu.GeoJSON != "" {
		t.Errorf("eu = %+v", eu)
	}
	tests := []struct {
		r        Region
		lng, lat float64
		in       bool
	}{
		{eu, 2.35, 48.85, true},  // Paris
		{eu, -74.0, 40.7, false}, // New York
		{manhattan, -73.97, 40.78, true},
		{manhattan, 2.35, 48.85, false},
	}
	for _, tt := range tests {
		if got := tt.r.Contains(tt.lng, tt.lat); got != tt.in {
			t.Errorf("%s.Contains(%v, %v) = %v, want %v", tt.r.Name, tt.lng, tt.lat, got, tt.in)
		}
	}
}

// TestAuthorityAndTransportRulesAcceptWhatTheyMay: the sandbox may set any
// hold, 0s included; plain http/ws to a loopback host is a local TLS proxy;
// the hold defaults to 24h; compliance in the sandbox needs no prover list.
func TestAuthorityAndTransportRulesAcceptWhatTheyMay(t *testing.T) {
	const id = `account_id: "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"` + "\n"
	tests := []struct {
		name, yaml string
		hold       time.Duration
	}{
		{"sandbox hold 0s", id + "sandbox: {}\nauthority: {hold: 0s}\n", 0},
		{"default hold", id + "sandbox: {}\n", DefaultAuthorityHold},
		{"production hold 1h", id + "astra: {base_url: \"https://d.example\", ws_url: \"wss://d.example\"}\nauthority: {hold: 1h}\n", time.Hour},
		{"loopback plain URLs", id + "astra: {base_url: \"http://127.0.0.1:7070/v2\", ws_url: \"ws://localhost:7070/v2\"}\n" +
			"astral: {base_url: \"http://[::1]:7071\"}\n", DefaultAuthorityHold},
		{"sandbox compliance without provers", id + "sandbox: {}\ncompliance: {enabled: true, subject: \"0xab\", allow: [{name: eu, bbox: [-10, 35, 30, 60]}]}\n", DefaultAuthorityHold},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(tt.yaml), "p.yaml")
			if err != nil {
				t.Fatal(err)
			}
			if p.Authority.Hold != tt.hold {
				t.Errorf("hold = %s, want %s", p.Authority.Hold, tt.hold)
			}
		})
	}
}

// TestShortAdminTokenIsAPolicyError: a token shorter than 24 characters in
// the named variable refuses the policy, naming the variable and never the
// value; a long enough one, or none, passes.
func TestShortAdminTokenIsAPolicyError(t *testing.T) {
	const file = `account_id: "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"
sandbox: {}
http:
  admin_token_env: "TREASURYD_TEST_ADMIN_TOKEN"
`
	const short = "too-short-secret-xyz"
	t.Setenv("TREASURYD_TEST_ADMIN_TOKEN", short)
	_, err := Parse([]byte(file), "p.yaml")
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 {
		t.Fatalf("Parse = %v; want one problem", err)
	}
	pr := ve.Problems[0]
	if pr.Path != "http.admin_token_env" || pr.Line != 4 || !strings.Contains(pr.Msg, "TREASURYD_TEST_ADMIN_TOKEN") ||
		!strings.Contains(pr.Msg, "shorter than 24") {
		t.Errorf("problem = %+v", pr)
	}
	if strings.Contains(err.Error(), short) {
		t.Errorf("the error echoes the token: %v", err)
	}
	t.Setenv("TREASURYD_TEST_ADMIN_TOKEN", strings.Repeat("k", MinAdminTokenLen))
	if _, err := Parse([]byte(file), "p.yaml"); err != nil {
		t.Errorf("a 24-character token: %v", err)
	}
	t.Setenv("TREASURYD_TEST_ADMIN_TOKEN", "")
	if _, err := Parse([]byte(file), "p.yaml"); err != nil {
		t.Errorf("no token (admin routes disabled): %v", err)
	}
	// The default variable is checked too.
	t.Setenv(DefaultAdminTokenEnv, short)
	if _, err := Parse([]byte("account_id: \"3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50\"\nsandbox: {}\n"), "p.yaml"); err == nil ||
		!strings.Contains(err.Error(), "http.admin_token_env") {
		t.Errorf("short token in the default variable: %v", err)
	}
}

func TestPostgresJournalDropsTheDefaultPathAndTakesALease(t *testing.T) {
	p, err := Parse([]byte(minimal+"state:\n  postgres_dsn_env: TREASURYD_POSTGRES_DSN\nha:\n  lease: 3s\n"), "pg.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.State.Path != "" || p.State.PostgresDSNEnv != "TREASURYD_POSTGRES_DSN" || p.HA.Lease != 3*time.Second {
		t.Fatalf("state %+v ha %+v", p.State, p.HA)
	}
	t.Setenv("TREASURYD_POSTGRES_DSN", "")
	if _, err := p.State.PostgresDSN(); err == nil || !strings.Contains(err.Error(), "TREASURYD_POSTGRES_DSN") {
		t.Fatalf("empty DSN variable: %v", err)
	}
	t.Setenv("TREASURYD_POSTGRES_DSN", "postgres://u:secret@db/treasuryd")
	if dsn, err := p.State.PostgresDSN(); err != nil || dsn != "postgres://u:secret@db/treasuryd" {
		t.Fatalf("DSN %q, %v", dsn, err)
	}
}
