// Package metrics holds treasuryd's one Prometheus registry and every metric
// of SPEC section 6, by the exact names dashboards and alerts use. Label values
// are bounded: program and rule names come from the policy, outcomes and
// results from fixed sets; never ids, prices or amounts.
package metrics

import (
	"runtime"

	"github.com/shopspring/decimal"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.uber.org/fx"
)

// Module provides *Metrics and its registry to the fx app.
var Module = fx.Module("metrics",
	fx.Provide(func(v BuildVersion) *Metrics { return New(string(v)) }),
)

// BuildVersion is the daemon's version string, supplied by cmd/treasuryd.
type BuildVersion string

// Metrics is every metric of SPEC 6, registered on Registry.
type Metrics struct {
	Registry *prometheus.Registry

	BuildInfo *prometheus.GaugeVec

	QuotesReceived          *prometheus.CounterVec   // program
	QuoteDecisions          *prometheus.CounterVec   // program, outcome
	QuotePrice              *prometheus.GaugeVec     // program
	DecisionLatency         *prometheus.HistogramVec // program
	Accepts                 *prometheus.CounterVec   // program, result
	AcceptRemainingValidity *prometheus.HistogramVec // program
	ExecutedBase            *prometheus.CounterVec   // program
	StreamUp                *prometheus.GaugeVec     // program
	StreamReconnects        *prometheus.CounterVec   // program
	StreamBadFrames         *prometheus.CounterVec   // program

	Balance *prometheus.GaugeVec // asset

	Withdrawals           *prometheus.CounterVec // rule, status
	WithdrawalsInFlight   *prometheus.GaugeVec   // rule
	WithdrawalsUnresolved *prometheus.GaugeVec   // rule

	ReconcileRuns        *prometheus.CounterVec // result
	ReconcileBreaks      *prometheus.GaugeVec   // kind
	ReconcileDrift       *prometheus.GaugeVec   // asset
	ReconcileLastSuccess prometheus.Gauge

	ComplianceGateOpen prometheus.Gauge
	ComplianceChecks   *prometheus.CounterVec // result
	ComplianceProofAge prometheus.Gauge

	Paused prometheus.Gauge
	// AdminAuthFailures counts refused admin attempts (no or wrong token).
	AdminAuthFailures prometheus.Counter

	// Leader is 1 while this process leads (always 1 on SQLite); LeaderTerm
	// the fencing term it acts under (SPEC 11).
	Leader     prometheus.Gauge
	LeaderTerm prometheus.Gauge

	APIRequests        *prometheus.CounterVec   // api, endpoint, code
	APIRequestDuration *prometheus.HistogramVec // api, endpoint

	ConfigReloads   *prometheus.CounterVec // result
	RecorderDropped prometheus.Counter

	// Program progress toward its target, from the journal (SPEC 6): set at
	// start from the journaled accepts and kept current as accepts settle.
	ProgramExecutedBase *prometheus.GaugeVec // program
	ProgramTargetBase   *prometheus.GaugeVec // program; absent without a target
	ProgramAveragePrice *prometheus.GaugeVec // program; absent until an ok accept

	AuthorityPending *prometheus.GaugeVec // kind (AuthorityKinds)

	AuditEntries prometheus.Counter
}

// AuthorityKinds are the kinds of widening change the authority hold delays
// (SPEC 10): the label values of treasuryd_authority_pending.
var AuthorityKinds = []string{"allowlist", "compliance"}

// New builds a fresh registry (never the global one) holding every metric,
// plus the Go and process collectors.
func New(version string) *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := promauto.With(reg)
	// Decision latency is sub-millisecond when healthy; buckets from 10µs to 1s.
	latency := prometheus.ExponentialBuckets(0.00001, 2.5, 13)
	m := &Metrics{
		Registry: reg,
		BuildInfo: f.NewGaugeVec(prometheus.GaugeOpts{Name: "treasuryd_build_info",
			Help: "Always 1; the labels carry the build's version and Go version."}, []string{"version", "goversion"}),

		QuotesReceived: f.NewCounterVec(prometheus.CounterOpts{Name: "treasuryd_quotes_received_total",
			Help: "Quote frames received, per program."}, []string{"program"}),
		QuoteDecisions: f.NewCounterVec(prometheus.CounterOpts{Name: "treasuryd_quote_decisions_total",
			Help: "Decisions per program and outcome (SPEC 5.2)."}, []string{"program", "outcome"}),
		QuotePrice: f.NewGaugeVec(prometheus.GaugeOpts{Name: "treasuryd_quote_price",
			Help: "Price (quote asset per base asset) of the program's last valid quote."}, []string{"program"}),
		DecisionLatency: f.NewHistogramVec(prometheus.HistogramOpts{Name: "treasuryd_decision_latency_seconds",
			Help: "Frame read to decision (to accept sent, for accepts).", Buckets: latency}, []string{"program"}),
		Accepts: f.NewCounterVec(prometheus.CounterOpts{Name: "treasuryd_accepts_total",
			Help: "Accepts sent, by result (ok, rejected, error, unknown)."}, []string{"program", "result"}),
		AcceptRemainingValidity: f.NewHistogramVec(prometheus.HistogramOpts{Name: "treasuryd_accept_remaining_validity_seconds",
			Help:    "Time left on the quote when its accept was sent.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60}}, []string{"program"}),
		ExecutedBase: f.NewCounterVec(prometheus.CounterOpts{Name: "treasuryd_executed_base_total",
			Help: "Base asset executed by accepted quotes (ok results)."}, []string{"program"}),
		StreamUp: f.NewGaugeVec(prometheus.GaugeOpts{Name: "treasuryd_stream_up",
			Help: "1 while the program's quote stream is connected."}, []string{"program"}),
		StreamReconnects: f.NewCounterVec(prometheus.CounterOpts{Name: "treasuryd_stream_reconnects_total",
			Help: "Quote stream reconnects, per program."}, []string{"program"}),
		StreamBadFrames: f.NewCounterVec(prometheus.CounterOpts{Name: "treasuryd_stream_bad_frames_total",
			Help: "Frames that did not decode or did not match their request."}, []string{"program"}),

		Balance: f.NewGaugeVec(prometheus.GaugeOpts{Name: "treasuryd_balance",
			Help: "Last fetched desk balance per asset."}, []string{"asset"}),

		Withdrawals: f.NewCounterVec(prometheus.CounterOpts{Name: "treasuryd_withdrawals_total",
			Help: "Withdrawal state changes per rule and status."}, []string{"rule", "status"}),
		WithdrawalsInFlight: f.NewGaugeVec(prometheus.GaugeOpts{Name: "treasuryd_withdrawals_in_flight",
			Help: "Withdrawals of the rule not yet completed or failed."}, []string{"rule"}),
		WithdrawalsUnresolved: f.NewGaugeVec(prometheus.GaugeOpts{Name: "treasuryd_withdrawals_unresolved",
			Help: "Withdrawal intents that could not be matched at the desk and need an operator."}, []string{"rule"}),

		ReconcileRuns: f.NewCounterVec(prometheus.CounterOpts{Name: "treasuryd_reconcile_runs_total",
			Help: "Reconciliation runs by result (clean, breaks, error)."}, []string{"result"}),
		ReconcileBreaks: f.NewGaugeVec(prometheus.GaugeOpts{Name: "treasuryd_reconcile_breaks",
			Help: "Breaks found by the last reconciliation, per kind."}, []string{"kind"}),
		ReconcileDrift: f.NewGaugeVec(prometheus.GaugeOpts{Name: "treasuryd_reconcile_drift",
			Help: "Balance minus transaction net per asset, last reconciliation."}, []string{"asset"}),
		ReconcileLastSuccess: f.NewGauge(prometheus.GaugeOpts{Name: "treasuryd_reconcile_last_success_timestamp_seconds",
			Help: "Unix time of the last reconciliation that completed (clean or with breaks)."}),

		ComplianceGateOpen: f.NewGauge(prometheus.GaugeOpts{Name: "treasuryd_compliance_gate_open",
			Help: "1 while a valid location proof keeps the compliance gate open."}),
		ComplianceChecks: f.NewCounterVec(prometheus.CounterOpts{Name: "treasuryd_compliance_checks_total",
			Help: "Gate refreshes by result (pass, or the reason it failed)."}, []string{"result"}),
		ComplianceProofAge: f.NewGauge(prometheus.GaugeOpts{Name: "treasuryd_compliance_proof_age_seconds",
			Help: "Age of the proof keeping the gate open."}),

		Paused: f.NewGauge(prometheus.GaugeOpts{Name: "treasuryd_paused",
			Help: "1 while the kill switch is engaged."}),
		Leader: f.NewGauge(prometheus.GaugeOpts{Name: "treasuryd_leader",
			Help: "1 while this process holds leadership and acts (always 1 on SQLite)."}),
		LeaderTerm: f.NewGauge(prometheus.GaugeOpts{Name: "treasuryd_leader_term",
			Help: "The fencing term this process acts under (0 on a standby)."}),
		AdminAuthFailures: f.NewCounter(prometheus.CounterOpts{Name: "treasuryd_admin_auth_failures_total",
			Help: "Admin requests refused for a missing or wrong bearer token."}),

		APIRequests: f.NewCounterVec(prometheus.CounterOpts{Name: "treasuryd_api_requests_total",
			Help: "Upstream API requests by api, route template and status code."}, []string{"api", "endpoint", "code"}),
		APIRequestDuration: f.NewHistogramVec(prometheus.HistogramOpts{Name: "treasuryd_api_request_duration_seconds",
			Help: "Upstream API request duration.", Buckets: prometheus.DefBuckets}, []string{"api", "endpoint"}),

		ConfigReloads: f.NewCounterVec(prometheus.CounterOpts{Name: "treasuryd_config_reloads_total",
			Help: "Policy reloads by result (ok, error)."}, []string{"result"}),
		RecorderDropped: f.NewCounter(prometheus.CounterOpts{Name: "treasuryd_recorder_dropped_total",
			Help: "Quote recordings dropped because the write queue was full."}),

		ProgramExecutedBase: f.NewGaugeVec(prometheus.GaugeOpts{Name: "treasuryd_program_executed_base",
			Help: "Base executed toward the program's target (ok, pending and unknown accepts), from the journal."}, []string{"program"}),
		ProgramTargetBase: f.NewGaugeVec(prometheus.GaugeOpts{Name: "treasuryd_program_target_base",
			Help: "The program's target in base asset (absent when the program has none)."}, []string{"program"}),
		ProgramAveragePrice: f.NewGaugeVec(prometheus.GaugeOpts{Name: "treasuryd_program_average_price",
			Help: "Average price (quote asset per base asset) of the program's ok accepts."}, []string{"program"}),
		AuthorityPending: f.NewGaugeVec(prometheus.GaugeOpts{Name: "treasuryd_authority_pending",
			Help: "Widening policy changes waiting for authority.hold, by kind (allowlist, compliance)."}, []string{"kind"}),
		AuditEntries: f.NewCounter(prometheus.CounterOpts{Name: "treasuryd_audit_entries_total",
			Help: "Entries this process appended to the audit chain (SPEC 13)."}),
	}
	for _, k := range AuthorityKinds {
		m.AuthorityPending.WithLabelValues(k).Set(0)
	}
	m.BuildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	m.Paused.Set(0)
	m.ComplianceGateOpen.Set(0)
	return m
}

// ObserveAPI records one upstream request: api is "astra", "astral" or
// "chain" (JSON-RPC), endpoint the route template or RPC method (never a
// filled-in path or URL), code the HTTP status, "rpc_error" (JSON-RPC error
// answer) or "error" when no response arrived.
func (m *Metrics) ObserveAPI(api, endpoint, code string, seconds float64) {
	m.APIRequests.WithLabelValues(api, endpoint, code).Inc()
	m.APIRequestDuration.WithLabelValues(api, endpoint).Observe(seconds)
}

// Value converts a decimal to a metric sample. This is the one place money
// becomes float64, and only for display in Prometheus: no decision ever reads
// a metric back.
func Value(d decimal.Decimal) float64 { return d.InexactFloat64() }

// Fixed label sets of SPEC 6 that Init pre-creates.
var (
	// AcceptResults are the result label values of treasuryd_accepts_total.
	AcceptResults = []string{"ok", "rejected", "error", "unknown"}
	// ReconcileResults are the result label values of treasuryd_reconcile_runs_total.
	ReconcileResults = []string{"clean", "breaks", "error"}
	// ReloadResults are the result label values of treasuryd_config_reloads_total.
	ReloadResults = []string{"ok", "error"}
)

// Labels are the bounded label values known when the daemon starts: names
// from the policy and the fixed sets the deciding packages own.
type Labels struct {
	Programs   []string // policy program names
	Rules      []string // policy rebalance rule names
	Outcomes   []string // every decision outcome (strategy.Outcomes)
	BreakKinds []string // every reconciliation break kind (ledger.Kinds)
}

// Init creates every series of the given label sets so that each exists at 0
// from the first scrape: a rate, an increase or an alert over a series that
// has never moved then reads 0 rather than nothing. It only creates series;
// one that already holds a value keeps it, so Init is safe to call at any
// time and more than once.
func (m *Metrics) Init(l Labels) {
	for _, p := range l.Programs {
		m.QuotesReceived.WithLabelValues(p)
		for _, o := range l.Outcomes {
			m.QuoteDecisions.WithLabelValues(p, o)
		}
		for _, r := range AcceptResults {
			m.Accepts.WithLabelValues(p, r)
		}
		m.ExecutedBase.WithLabelValues(p)
		m.StreamUp.WithLabelValues(p)
		m.StreamReconnects.WithLabelValues(p)
		m.StreamBadFrames.WithLabelValues(p)
	}
	for _, r := range l.Rules {
		m.WithdrawalsInFlight.WithLabelValues(r)
		m.WithdrawalsUnresolved.WithLabelValues(r)
	}
	for _, k := range l.BreakKinds {
		m.ReconcileBreaks.WithLabelValues(k)
	}
	for _, r := range ReconcileResults {
		m.ReconcileRuns.WithLabelValues(r)
	}
	for _, r := range ReloadResults {
		m.ConfigReloads.WithLabelValues(r)
	}
}
