package config_test

import (
	"errors"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/paulmach/orb"
	"github.com/robfig/cron/v3"

	"treasuryd/internal/config"
)

// fuzzSeeds are the shipped policies and every bad-policy fixture: the
// fuzzer starts from files that reach deep into each section.
func fuzzSeeds(f *testing.F) {
	f.Helper()
	var files []string
	for _, pattern := range []string{"../../configs/*.yaml", "testdata/*.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		f.Fatal("no seed policies found")
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

var (
	fuzzUUID        = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	fuzzProgramName = regexp.MustCompile(`^[a-z0-9-]+$`)
)

// FuzzParse feeds arbitrary bytes to the policy loader. It must never panic;
// every failure is a *ValidationError whose problems carry a 1-based line and
// are ordered by it; and a policy it accepts satisfies every SPEC 3
// validation rule, so no consumer ever sees an invalid one.
func FuzzParse(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseWithin(t, data, fuzzParseBound)
		if err != nil {
			if p != nil {
				t.Fatalf("Parse returned a policy and an error: %v", err)
			}
			var ve *config.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error is %T, want *config.ValidationError: %v", err, err)
			}
			if len(ve.Problems) == 0 {
				t.Fatal("ValidationError with no problems")
			}
			if ve.File != "fuzz.yaml" {
				t.Fatalf("ValidationError.File = %q, want fuzz.yaml", ve.File)
			}
			for i, pr := range ve.Problems {
				if pr.Line < 1 {
					t.Fatalf("problem %d has line %d (lines are 1-based): %s", i, pr.Line, pr)
				}
				if pr.Msg == "" {
					t.Fatalf("problem %d has no message: %s", i, pr)
				}
				if i > 0 && pr.Line < ve.Problems[i-1].Line {
					t.Fatalf("problems out of line order: %s before %s", ve.Problems[i-1], pr)
				}
			}
			if err.Error() == "" {
				t.Fatal("empty error text")
			}
			return
		}
		if p == nil {
			t.Fatal("Parse returned neither a policy nor an error")
		}
		checkPolicy(t, p)
	})
}

// fuzzParseBound is far beyond what any policy file takes to load (well
// under a millisecond): an input that takes longer is a hang to report, and
// without a bound the fuzzer would sit on it silently until -fuzztime ends.
const fuzzParseBound = 10 * time.Second

// parseWithin runs Parse and fails the input if it does not return within d.
func parseWithin(t *testing.T, data []byte, d time.Duration) (*config.Policy, error) {
	t.Helper()
	type result struct {
		p   *config.Policy
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := config.Parse(data, "fuzz.yaml")
		done <- result{p, err}
	}()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.p, r.err
	case <-timer.C:
		t.Fatalf("Parse did not return within %s on %d bytes: %q", d, len(data), data)
		return nil, nil
	}
}

// checkPolicy asserts the SPEC 3 validation rules on an accepted policy.
func checkPolicy(t *testing.T, p *config.Policy) {
	t.Helper()
	if !fuzzUUID.MatchString(p.AccountID) {
		t.Fatalf("account_id %q is not a UUID", p.AccountID)
	}
	checkURL := func(name, raw string, schemes ...string) {
		if raw == "" && p.Sandbox != nil {
			return // the sandbox fills it in at start
		}
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" || u.User != nil {
			t.Fatalf("%s %q is not a credential-free URL with a host", name, raw)
		}
		for _, s := range schemes {
			if u.Scheme == s {
				return
			}
		}
		t.Fatalf("%s %q: scheme %q not in %v", name, raw, u.Scheme, schemes)
	}
	checkURL("astra.base_url", p.Astra.BaseURL, "http", "https")
	checkURL("astra.ws_url", p.Astra.WSURL, "ws", "wss")
	if p.Astral.BaseURL == "" {
		t.Fatal("astral.base_url is empty")
	}
	checkURL("astral.base_url", p.Astral.BaseURL, "http", "https")
	if (p.Astra.APIKeyEnv == "") == (p.Astra.APIKeyFile == "") {
		t.Fatalf("exactly one of api_key_env (%q) and api_key_file (%q) must be set", p.Astra.APIKeyEnv, p.Astra.APIKeyFile)
	}
	for name, d := range map[string]int64{
		"astra.request_timeout":       int64(p.Astra.RequestTimeout),
		"astral.request_timeout":      int64(p.Astral.RequestTimeout),
		"shutdown_timeout":            int64(p.ShutdownTimeout),
		"compliance.max_proof_age":    int64(p.Compliance.MaxProofAge),
		"compliance.refresh_interval": int64(p.Compliance.RefreshInterval),
	} {
		if d <= 0 {
			t.Fatalf("%s = %d, must be positive", name, d)
		}
	}
	if p.State.QuoteRetention < 0 {
		t.Fatalf("state.quote_retention %s is negative", p.State.QuoteRetention)
	}

	// Compliance.
	if p.Compliance.Enabled && (p.Compliance.Subject == "" || len(p.Compliance.Allow) == 0) {
		t.Fatalf("compliance enabled without subject (%q) or allow regions (%d)", p.Compliance.Subject, len(p.Compliance.Allow))
	}
	regions := map[string]bool{}
	for _, r := range append(append([]config.Region(nil), p.Compliance.Allow...), p.Compliance.Deny...) {
		if r.Name == "" || regions[r.Name] {
			t.Fatalf("region name %q empty or duplicated", r.Name)
		}
		regions[r.Name] = true
		if (r.BBox != nil) == (r.GeoJSON != "") {
			t.Fatalf("region %q: exactly one of bbox and geojson must be set", r.Name)
		}
		if r.BBox != nil {
			b := r.BBox
			if len(b) != 4 || !(b[0] < b[2]) || !(b[1] < b[3]) {
				t.Fatalf("region %q: bbox %v is not min < max", r.Name, b)
			}
			for i, v := range b {
				lim := 180.0
				if i%2 == 1 {
					lim = 90
				}
				if math.IsNaN(v) || v < -lim || v > lim {
					t.Fatalf("region %q: bbox %v out of range", r.Name, b)
				}
			}
		}
		switch r.Geometry().(type) {
		case orb.Bound, orb.Polygon, orb.MultiPolygon:
		default:
			t.Fatalf("region %q: geometry %T is not a bbox, Polygon or MultiPolygon", r.Name, r.Geometry())
		}
	}

	// Programs.
	names := map[string]bool{}
	for i, pr := range p.Programs {
		if !fuzzProgramName.MatchString(pr.Name) || names[pr.Name] {
			t.Fatalf("programs[%d].name %q invalid or duplicated", i, pr.Name)
		}
		names[pr.Name] = true
		if pr.Base == "" || pr.Quote == "" || pr.Base == pr.Quote {
			t.Fatalf("programs[%d]: base %q / quote %q", i, pr.Base, pr.Quote)
		}
		if pr.Side != config.SideSell && pr.Side != config.SideBuy {
			t.Fatalf("programs[%d].side %q", i, pr.Side)
		}
		if pr.Size.IsPositive() == pr.Notional.IsPositive() {
			t.Fatalf("programs[%d]: size %s / notional %s: exactly one must be set", i, pr.Size, pr.Notional)
		}
		if pr.Size.IsNegative() || pr.Notional.IsNegative() {
			t.Fatalf("programs[%d]: negative size %s or notional %s", i, pr.Size, pr.Notional)
		}
		if !pr.LimitPrice.IsPositive() {
			t.Fatalf("programs[%d].limit_price %s is not positive", i, pr.LimitPrice)
		}
		if pr.Target.IsNegative() || pr.MaxDailyNotional.IsNegative() || pr.Reserve.IsNegative() {
			t.Fatalf("programs[%d]: negative target %s, max_daily_notional %s or reserve %s", i, pr.Target, pr.MaxDailyNotional, pr.Reserve)
		}
		if pr.Cooldown < 0 || pr.MinValidity < 0 {
			t.Fatalf("programs[%d]: negative cooldown %s or min_validity %s", i, pr.Cooldown, pr.MinValidity)
		}
		if pr.Reference != nil && (pr.Reference.Window <= 0 || pr.Reference.MinImprovementBps.IsNegative()) {
			t.Fatalf("programs[%d].reference %+v invalid", i, *pr.Reference)
		}
	}

	// Allowlist and rebalance rules.
	for i, d := range p.Withdraw.Allowlist {
		if d.Asset == "" || d.Network == "" || d.Address == "" {
			t.Fatalf("withdraw.allowlist[%d] %+v has an empty field", i, d)
		}
	}
	rules := map[string]bool{}
	for i, r := range p.Rebalance.Rules {
		if r.Name == "" || rules[r.Name] {
			t.Fatalf("rebalance.rules[%d].name %q empty or duplicated", i, r.Name)
		}
		rules[r.Name] = true
		if !p.Allowed(r.Asset, r.Network, r.Address) {
			t.Fatalf("rebalance.rules[%d]: %s on %s to %q is not allowlisted", i, r.Asset, r.Network, r.Address)
		}
		if !r.HighWater.IsPositive() || r.Keep.IsNegative() || r.Keep.Cmp(r.HighWater) >= 0 {
			t.Fatalf("rebalance.rules[%d]: keep %s, high_water %s: need 0 <= keep < high_water", i, r.Keep, r.HighWater)
		}
		if r.MinAmount.IsNegative() || r.MaxAmount.IsNegative() || r.MaxDaily.IsNegative() {
			t.Fatalf("rebalance.rules[%d]: negative min %s / max %s / daily %s", i, r.MinAmount, r.MaxAmount, r.MaxDaily)
		}
		if r.MinAmount.IsPositive() && r.MaxAmount.IsPositive() && r.MinAmount.GreaterThan(r.MaxAmount) {
			t.Fatalf("rebalance.rules[%d]: min_amount %s > max_amount %s", i, r.MinAmount, r.MaxAmount)
		}
	}
	if len(p.Rebalance.Rules) > 0 && p.Rebalance.Schedule == "" {
		t.Fatal("rebalance rules without a schedule")
	}
	for name, spec := range map[string]string{"rebalance.schedule": p.Rebalance.Schedule, "reconcile.schedule": p.Reconcile.Schedule} {
		if spec == "" {
			continue
		}
		if _, err := cron.ParseStandard(spec); err != nil {
			t.Fatalf("%s %q accepted but does not parse: %v", name, spec, err)
		}
	}
	if p.Reconcile.Tolerance.IsNegative() {
		t.Fatalf("reconcile.tolerance %s is negative", p.Reconcile.Tolerance)
	}

	if sb := p.Sandbox; sb != nil {
		if sb.QuoteInterval <= 0 || sb.QuoteTTL <= 0 || sb.VolatilityBps.IsNegative() {
			t.Fatalf("sandbox %+v has a non-positive interval/ttl or negative volatility", *sb)
		}
		for k, v := range sb.Balances {
			if v.IsNegative() {
				t.Fatalf("sandbox.balances.%s = %s is negative", k, v)
			}
		}
		for k, v := range sb.Price {
			if !v.IsPositive() {
				t.Fatalf("sandbox.price.%s = %s is not positive", k, v)
			}
		}
	}
}
