package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/paulmach/orb"
	"github.com/shopspring/decimal"
)

// Policy is a loaded and fully validated policy file (SPEC section 3). Every
// value in it has passed validation: a consumer never re-checks syntax. Optional
// amounts that are absent are decimal.Zero (every present amount of those keys
// must be positive, so zero always means "not set").
type Policy struct {
	AccountID       string
	Astra           Astra
	Astral          Astral
	State           State
	HTTP            HTTP
	Authority       Authority
	HA              HA
	DryRun          bool
	ShutdownTimeout time.Duration // default 15s
	Compliance      Compliance
	Programs        []Program
	Withdraw        Withdraw
	Rebalance       Rebalance
	Reconcile       Reconcile
	Sandbox         *Sandbox // nil unless the file has a sandbox: block
}

// Astra is the desk connection. With a sandbox block, BaseURL and WSURL may be
// empty in the file and are filled in by the sandbox at start.
type Astra struct {
	BaseURL        string
	WSURL          string
	APIKeyEnv      string // default "ASTRA_API_KEY" when APIKeyFile is empty
	APIKeyFile     string
	RequestTimeout time.Duration // default 10s
	// StreamStaleAfter: a quote stream that sends nothing this long is torn
	// down and reconnected (default 15s; SPEC 5.1's stale interval).
	StreamStaleAfter time.Duration
}

// Astral is the location-proof index connection.
type Astral struct {
	BaseURL        string // default "https://api.astral.global"
	RequestTimeout time.Duration
}

// State is the journal location.
type State struct {
	Path string // default "treasuryd.db"; empty with PostgresDSNEnv
	// PostgresDSNEnv names the environment variable holding a PostgreSQL
	// DSN: the journal of a hot standby pair (SPEC 11). Exactly one of Path
	// and PostgresDSNEnv is set.
	PostgresDSNEnv string
	QuoteRetention time.Duration // 0: record no quote frames
}

// HTTP is the operator surface.
type HTTP struct {
	Listen string // default ":8080"
	// AdminListen, when set, is the only listener serving the admin routes
	// (/pause, /resume, /withdrawals/{id}/resolve); Listen then has none.
	AdminListen   string
	AdminTokenEnv string // default "TREASURYD_ADMIN_TOKEN"
}

// HA is leadership on a PostgreSQL journal (SPEC 11).
type HA struct {
	// Lease: a leader that cannot confirm its leadership within this stops
	// acting at once (default 10s).
	Lease time.Duration
}

// PostgresDSN reads the PostgreSQL DSN from the environment variable
// state.postgres_dsn_env names. The DSN may hold a password: it never
// appears in an error.
func (s State) PostgresDSN() (string, error) {
	if s.PostgresDSNEnv == "" {
		return "", fmt.Errorf("state.postgres_dsn_env is not set")
	}
	v := strings.TrimSpace(os.Getenv(s.PostgresDSNEnv))
	if v == "" {
		return "", fmt.Errorf("environment variable %s (state.postgres_dsn_env) is empty", s.PostgresDSNEnv)
	}
	return v, nil
}

// Authority holds the time lock on widening changes (SPEC 10).
type Authority struct {
	// Hold: a change that widens what treasuryd may do with funds takes
	// effect this long after treasuryd first sees it (default 24h; at least
	// MinAuthorityHold outside the sandbox).
	Hold time.Duration
}

// Compliance is the location-proof gate.
type Compliance struct {
	Enabled         bool
	Subject         string
	Chains          []string      // empty: any chain
	TrustedProvers  []string      // empty: any prover
	MaxProofAge     time.Duration // default 24h
	RefreshInterval time.Duration // default 1m
	Allow           []Region
	Deny            []Region
	VerifyOnchain   *OnchainVerify // nil when absent: the index's word is taken
}

// Region is a named bbox or GeoJSON Polygon/MultiPolygon; exactly one is set.
// Coordinates are geometry, not money, so they are float64.
type Region struct {
	Name    string
	BBox    []float64 // minLng, minLat, maxLng, maxLat; nil when GeoJSON is set
	GeoJSON string

	geom orb.Geometry // parsed GeoJSON, set by validation; see Geometry
}

// Sides of a program.
const (
	SideSell = "sell" // sell base for quote
	SideBuy  = "buy"  // buy base with quote
)

// Program is one trading program: one quote stream.
type Program struct {
	Name             string
	Base             string
	Quote            string
	Side             string          // SideSell or SideBuy
	Size             decimal.Decimal // base per quote; zero when Notional is set
	Notional         decimal.Decimal // quote-asset amount per quote; zero when Size is set
	LimitPrice       decimal.Decimal
	Reference        *Reference      // nil when absent
	Target           decimal.Decimal // zero: no target
	MaxDailyNotional decimal.Decimal // zero: no cap
	Cooldown         time.Duration
	MinValidity      time.Duration
	Reserve          decimal.Decimal // may be zero
	DryRun           bool
}

// Reference makes a program also beat the median price of its recent quotes.
type Reference struct {
	Window            time.Duration
	MinImprovementBps decimal.Decimal // may be zero
}

// Withdraw holds the allowlist.
type Withdraw struct {
	Allowlist []Destination
}

// Destination is one allowlisted withdrawal destination.
type Destination struct {
	Asset   string
	Network string
	Address string
}

// Rebalance holds the sweep rules and their schedule.
type Rebalance struct {
	Schedule string // robfig/cron/v3 ParseStandard syntax; "" when no rules
	Rules    []Rule
}

// Rule is one sweep rule.
type Rule struct {
	Name      string
	Asset     string
	Network   string
	Address   string
	HighWater decimal.Decimal
	Keep      decimal.Decimal // may be zero
	MinAmount decimal.Decimal // zero: no minimum
	MaxAmount decimal.Decimal // zero: no per-withdrawal cap
	MaxDaily  decimal.Decimal // zero: no rolling 24h cap
}

// Reconcile holds the reconciliation schedule.
type Reconcile struct {
	Schedule  string
	Tolerance decimal.Decimal // may be zero
}

// Sandbox runs the daemon on the embedded simulators.
type Sandbox struct {
	Seed          int64
	Balances      map[string]decimal.Decimal
	Price         map[string]decimal.Decimal // "BTC-USD" -> price of one BTC in USD
	VolatilityBps decimal.Decimal
	QuoteInterval time.Duration // default 1s
	QuoteTTL      time.Duration // default 5s
}

// Allowed reports whether asset/network/address is on the allowlist. It is the
// one check every withdrawal passes right before its POST.
func (p *Policy) Allowed(asset, network, address string) bool {
	for _, d := range p.Withdraw.Allowlist {
		if d.Asset == asset && d.Network == network && d.Address == address {
			return true
		}
	}
	return false
}
