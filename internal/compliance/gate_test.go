package compliance_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"treasuryd/internal/astral"
	"treasuryd/internal/compliance"
	"treasuryd/internal/config"
	"treasuryd/internal/metrics"
	"treasuryd/internal/sim"
)

const subject = "0xabcdef1234567890abcdef1234567890abcdef12"

// clock is the one injected clock shared by the simulator and the gate.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	clock *clock
	sim   *sim.Astral
	gate  *compliance.Gate
	m     *metrics.Metrics
	logs  *observer.ObservedLogs
	cfg   atomic.Pointer[config.Compliance]
}

func policy() config.Compliance {
	return config.Compliance{
		Enabled:         true,
		Subject:         subject,
		Chains:          []string{"base", "arbitrum"},
		MaxProofAge:     24 * time.Hour,
		RefreshInterval: time.Minute,
		Allow: []config.Region{
			{Name: "eu", BBox: []float64{-10, 35, 30, 60}},
			{Name: "manhattan", GeoJSON: `{"type":"Polygon","coordinates":[[[-74.02,40.70],[-73.93,40.70],[-73.93,40.88],[-74.02,40.88],[-74.02,40.70]]]}`},
		},
		Deny: []config.Region{{Name: "berlin", BBox: []float64{13, 52, 14, 53}}},
	}
}

type envOpt struct {
	simCfg sim.AstralConfig
	policy func(*config.Compliance)
	index  func(compliance.Index) compliance.Index
}

func newEnv(t *testing.T, o envOpt) *env {
	t.Helper()
	e := &env{clock: &clock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}, m: metrics.New("test")}
	o.simCfg.Now = e.clock.Now
	e.sim = sim.NewAstral(o.simCfg)
	if err := e.sim.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.sim.Close() })
	pol := policy()
	if o.policy != nil {
		o.policy(&pol)
	}
	e.cfg.Store(&pol)
	core, logs := observer.New(zapcore.DebugLevel)
	e.logs = logs
	// One attempt per request: retries are the client's own tests; here they
	// would only add backoff time to outage cases.
	var idx compliance.Index = astral.New(astral.Options{BaseURL: e.sim.BaseURL(), Timeout: 5 * time.Second, MaxAttempts: 1})
	if o.index != nil {
		idx = o.index(idx)
	}
	e.gate = compliance.New(compliance.Deps{
		Log: zap.New(core), Metrics: e.m, Client: idx,
		Config: func() config.Compliance { return *e.cfg.Load() },
		Now:    e.clock.Now,
	})
	return e
}

// good adds a proof that passes every check.
func (e *env) good(mod func(*sim.ProofSpec)) string {
	p := sim.ProofSpec{Chain: "base", Prover: "0xprover", Subject: subject, EventTime: e.clock.Now().Add(-time.Hour), Lng: 2.35, Lat: 48.85}
	if mod != nil {
		mod(&p)
	}
	return e.sim.AddProof(p)
}

func (e *env) mustOpen(t *testing.T) {
	t.Helper()
	if err := e.gate.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ok, reason := e.gate.Open(); !ok {
		t.Fatalf("gate closed (%s), want open", reason)
	}
}

func (e *env) checks(result string) float64 {
	return testutil.ToFloat64(e.m.ComplianceChecks.WithLabelValues(result))
}

func TestGateIsClosedUntilTheFirstGoodCheck(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.good(nil)
	if ok, reason := e.gate.Open(); ok || reason != compliance.ReasonNoProof {
		t.Fatalf("new gate Open = %v, %q; want closed, no_proof", ok, reason)
	}
	if e.sim.Requests() != 0 {
		t.Fatal("New or Open did I/O")
	}
	e.mustOpen(t)
}

func TestGateClosesForEveryReason(t *testing.T) {
	tests := []struct {
		name  string
		opt   envOpt
		setup func(t *testing.T, e *env) // leaves the gate in the state to judge
		want  string
	}{
		{"no proof", envOpt{}, func(t *testing.T, e *env) {
			e.good(func(p *sim.ProofSpec) { p.Subject = "0xsomeoneelse" })
			e.gate.Refresh(context.Background())
		}, compliance.ReasonNoProof},
		{"too old: the proof in use ages out between refreshes", envOpt{}, func(t *testing.T, e *env) {
			e.good(nil)
			e.mustOpen(t)
			before := e.sim.Requests()
			e.clock.Advance(23*time.Hour + time.Second) // the proof was an hour old
			if e.sim.Requests() != before {
				t.Fatal("aging out needed a request")
			}
		}, compliance.ReasonTooOld},
		{"too old: future-dated proof from the index", envOpt{}, func(t *testing.T, e *env) {
			e.good(func(p *sim.ProofSpec) { p.EventTime = e.clock.Now().Add(2 * time.Hour) })
			e.gate.Refresh(context.Background())
		}, compliance.ReasonTooOld},
		{"too old: an index that ignores fromTimestamp", envOpt{simCfg: sim.AstralConfig{NoServerFilter: true}}, func(t *testing.T, e *env) {
			e.good(func(p *sim.ProofSpec) { p.EventTime = e.clock.Now().Add(-30 * time.Hour) })
			e.gate.Refresh(context.Background())
		}, compliance.ReasonTooOld},
		{"revoked", envOpt{}, func(t *testing.T, e *env) {
			e.good(func(p *sim.ProofSpec) { p.Revoked = true })
			e.gate.Refresh(context.Background())
		}, compliance.ReasonRevoked},
		{"wrong subject from an index that does not filter", envOpt{simCfg: sim.AstralConfig{NoServerFilter: true}}, func(t *testing.T, e *env) {
			e.good(func(p *sim.ProofSpec) { p.Subject = "0x1111111111111111111111111111111111111111" })
			e.gate.Refresh(context.Background())
		}, compliance.ReasonWrongSubject},
		{"wrong chain", envOpt{}, func(t *testing.T, e *env) {
			e.good(func(p *sim.ProofSpec) { p.Chain = "celo" })
			e.gate.Refresh(context.Background())
		}, compliance.ReasonWrongChain},
		{"untrusted prover", envOpt{policy: func(c *config.Compliance) { c.TrustedProvers = []string{"0xTRUSTED"} }}, func(t *testing.T, e *env) {
			e.good(func(p *sim.ProofSpec) { p.Prover = "0xuntrusted" })
			e.gate.Refresh(context.Background())
		}, compliance.ReasonUntrustedProver},
		{"outside every allow region", envOpt{}, func(t *testing.T, e *env) {
			e.good(func(p *sim.ProofSpec) { p.Lng, p.Lat = -122.42, 37.77 })
			e.gate.Refresh(context.Background())
		}, compliance.ReasonOutsideAllow},
		{"inside a deny region", envOpt{}, func(t *testing.T, e *env) {
			e.good(func(p *sim.ProofSpec) { p.Lng, p.Lat = 13.4, 52.5 })
			e.gate.Refresh(context.Background())
		}, compliance.ReasonInsideDeny},
		{"no point", envOpt{}, func(t *testing.T, e *env) {
			e.good(func(p *sim.ProofSpec) { p.Style = sim.ProofStyleNoPoint })
			e.gate.Refresh(context.Background())
		}, compliance.ReasonNoPoint},
		{"astral unreachable after the last good proof aged out", envOpt{}, func(t *testing.T, e *env) {
			e.good(nil)
			e.mustOpen(t)
			e.sim.SetDown(true)
			e.clock.Advance(24 * time.Hour)
			if err := e.gate.Refresh(context.Background()); err == nil {
				t.Fatal("refresh against a down index returned no error")
			}
		}, compliance.ReasonUnreachable},
		{"astral unreachable from the start", envOpt{}, func(t *testing.T, e *env) {
			e.good(nil)
			e.sim.SetDown(true)
			e.gate.Refresh(context.Background())
		}, compliance.ReasonUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opt)
			tt.setup(t, e)
			ok, reason := e.gate.Open()
			if ok || reason != tt.want {
				t.Fatalf("Open = %v, %q; want closed, %q", ok, reason, tt.want)
			}
			st := e.gate.Status()
			if st.Open || st.Reason != tt.want {
				t.Fatalf("Status = %+v; want closed, %q", st, tt.want)
			}
			if g := testutil.ToFloat64(e.m.ComplianceGateOpen); g != 0 {
				t.Fatalf("gate_open gauge = %v, want 0", g)
			}
		})
	}
}

func TestRefreshCountsEachResultUnderItsReason(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.gate.Refresh(context.Background())
	e.good(func(p *sim.ProofSpec) { p.Chain = "celo" })
	e.gate.Refresh(context.Background())
	e.good(nil)
	e.gate.Refresh(context.Background())
	e.sim.SetDown(true)
	e.gate.Refresh(context.Background())
	for result, want := range map[string]float64{
		compliance.ReasonNoProof: 1, compliance.ReasonWrongChain: 1, compliance.ReasonPass: 1, compliance.ReasonUnreachable: 1,
	} {
		if got := e.checks(result); got != want {
			t.Errorf("checks{result=%q} = %v, want %v", result, got, want)
		}
	}
}

func TestGateStaysOpenThroughAShortOutageWhileTheProofIsFresh(t *testing.T) {
	e := newEnv(t, envOpt{})
	uid := e.good(nil)
	e.mustOpen(t)
	e.sim.SetDown(true)
	for i := 0; i < 5; i++ {
		e.clock.Advance(time.Hour)
		if err := e.gate.Refresh(context.Background()); err == nil {
			t.Fatal("refresh against a down index returned no error")
		}
		if ok, reason := e.gate.Open(); !ok {
			t.Fatalf("after %dh of outage: closed (%s), want open on the fresh proof", i+1, reason)
		}
	}
	st := e.gate.Status()
	if !st.Open || st.ProofUID != uid || st.LastError == "" || st.ProofAgeSeconds != 6*3600 {
		t.Fatalf("Status = %+v; want open on %s, last error set, age 6h", st, uid)
	}
	if got := e.checks(compliance.ReasonUnreachable); got != 5 {
		t.Fatalf("unreachable checks = %v, want 5", got)
	}
	e.sim.SetDown(false)
	e.mustOpen(t)
	if st := e.gate.Status(); st.LastError != "" {
		t.Fatalf("last error %q survived a good refresh", st.LastError)
	}
}

func TestRevocationClosesOnTheNextRefreshAndANewProofReopens(t *testing.T) {
	e := newEnv(t, envOpt{})
	first := e.good(nil)
	e.mustOpen(t)
	if got := e.gate.Status().ProofUID; got != first {
		t.Fatalf("proof in use %s, want %s", got, first)
	}
	e.sim.Revoke(first)
	e.gate.Refresh(context.Background())
	ok, reason := e.gate.Open()
	if ok || reason != compliance.ReasonRevoked {
		t.Fatalf("after revocation Open = %v, %q; want closed, revoked", ok, reason)
	}
	if got := e.gate.Status().ProofUID; got != first {
		t.Fatalf("status names proof %q, want the revoked %s", got, first)
	}
	e.clock.Advance(time.Minute)
	second := e.good(func(p *sim.ProofSpec) { p.EventTime = e.clock.Now() })
	e.mustOpen(t)
	if got := e.gate.Status().ProofUID; got != second {
		t.Fatalf("proof in use %s, want the new %s", got, second)
	}
	// The transitions were logged with their reason and proof uid.
	var seen []string
	for _, l := range e.logs.All() {
		ctx := l.ContextMap()
		seen = append(seen, l.Level.String()+" "+l.Message+" "+ctx["reason"].(string)+" "+ctx["proof_uid"].(string))
	}
	want := []string{
		"info compliance gate opened pass " + first,
		"warn compliance gate closed revoked " + first,
		"info compliance gate opened pass " + second,
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("logs:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

// staleList serves a list that has not caught up with revocations, as an
// index's list cache might; only the by-uid read is current.
type staleList struct{ compliance.Index }

func (s staleList) Proofs(ctx context.Context, q astral.Query, fn func(astral.Proof) error) error {
	return s.Index.Proofs(ctx, q, func(p astral.Proof) error {
		p.Revoked = false
		return fn(p)
	})
}

func TestRevocationSeenOnlyByTheUIDReReadClosesTheGate(t *testing.T) {
	e := newEnv(t, envOpt{index: func(i compliance.Index) compliance.Index { return staleList{i} }})
	uid := e.good(nil)
	e.mustOpen(t)
	e.sim.Revoke(uid)
	e.gate.Refresh(context.Background())
	if ok, reason := e.gate.Open(); ok || reason != compliance.ReasonRevoked {
		t.Fatalf("Open = %v, %q; want closed, revoked", ok, reason)
	}
}

func TestGatePicksTheNewestProofThatPasses(t *testing.T) {
	e := newEnv(t, envOpt{})
	now := e.clock.Now()
	e.good(func(p *sim.ProofSpec) { p.EventTime = now.Add(-time.Minute); p.Lng, p.Lat = -100, 40 }) // newest, outside
	want := e.good(func(p *sim.ProofSpec) {
		p.EventTime = now.Add(-2 * time.Minute)
		p.Style = sim.ProofStyleArray
		p.Lng, p.Lat = -73.98, 40.75 // Manhattan, as "[lng, lat]"
	})
	e.good(func(p *sim.ProofSpec) { p.EventTime = now.Add(-3 * time.Minute); p.Style = sim.ProofStyleStrings })
	e.mustOpen(t)
	st := e.gate.Status()
	if st.ProofUID != want || st.ProofAgeSeconds != 120 {
		t.Fatalf("Status = %+v; want proof %s aged 120s", st, want)
	}
	if age := testutil.ToFloat64(e.m.ComplianceProofAge); age != 120 {
		t.Fatalf("proof age gauge = %v, want 120", age)
	}
	if g := testutil.ToFloat64(e.m.ComplianceGateOpen); g != 1 {
		t.Fatalf("gate_open gauge = %v, want 1", g)
	}
}

func TestGateFindsItsProofAmongMoreThanAPage(t *testing.T) {
	e := newEnv(t, envOpt{})
	now := e.clock.Now()
	for i := 0; i < 150; i++ { // newer, but outside every allow region
		e.good(func(p *sim.ProofSpec) {
			p.EventTime = now.Add(-time.Duration(i) * time.Second)
			p.Lng, p.Lat = -100, 40
		})
	}
	want := e.good(func(p *sim.ProofSpec) { p.EventTime = now.Add(-time.Hour) })
	e.mustOpen(t)
	if got := e.gate.Status().ProofUID; got != want {
		t.Fatalf("proof in use %s, want %s", got, want)
	}
}

func TestPolicyReloadTakesEffectAtDecisionTime(t *testing.T) {
	e := newEnv(t, envOpt{})
	e.good(nil)
	e.mustOpen(t)
	before := e.sim.Requests()
	pol := policy()
	pol.Allow = []config.Region{{Name: "manhattan-only", BBox: []float64{-74.02, 40.70, -73.93, 40.88}}}
	e.cfg.Store(&pol)
	if ok, reason := e.gate.Open(); ok || reason != compliance.ReasonOutsideAllow {
		t.Fatalf("after reload Open = %v, %q; want closed, outside_allow", ok, reason)
	}
	pol2 := policy()
	pol2.Enabled = false
	e.cfg.Store(&pol2)
	if ok, reason := e.gate.Open(); !ok || reason != compliance.ReasonDisabled {
		t.Fatalf("disabled Open = %v, %q", ok, reason)
	}
	if e.sim.Requests() != before {
		t.Fatal("Open did I/O")
	}
}

func TestStartChecksChainsRefreshesAndStopsTwice(t *testing.T) {
	e := newEnv(t, envOpt{policy: func(c *config.Compliance) {
		c.Chains = []string{"base", "solana"}
		c.RefreshInterval = time.Hour
	}})
	e.good(nil)
	ctx, cancel := context.WithCancel(context.Background())
	if err := e.gate.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel() // the start context ending must not stop the loop
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ok, _ := e.gate.Open(); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("gate did not open after Start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	warned := e.logs.FilterMessage("configured compliance chain is not supported by the astral index").All()
	if len(warned) != 1 || warned[0].ContextMap()["chain"] != "solana" {
		t.Fatalf("unsupported-chain warnings = %v, want one for solana", warned)
	}
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer stopCancel()
	if err := e.gate.Stop(stopCtx); err != nil {
		t.Fatal(err)
	}
	if err := e.gate.Stop(stopCtx); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if err := e.gate.Start(context.Background()); err == nil {
		t.Fatal("Start after Stop succeeded")
	}
}

func TestStopWithoutStart(t *testing.T) {
	e := newEnv(t, envOpt{})
	if err := e.gate.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestAlwaysOpen(t *testing.T) {
	if ok, reason := (compliance.AlwaysOpen{}).Open(); !ok || reason != "compliance disabled" {
		t.Fatalf("AlwaysOpen = %v, %q", ok, reason)
	}
}

func TestOpenIsSafeDuringRefreshesAndNeverOpenWithoutAGoodProof(t *testing.T) {
	e := newEnv(t, envOpt{})
	uid := e.good(func(p *sim.ProofSpec) { p.Lng, p.Lat = 13.4, 52.5 }) // inside the deny region
	var wg sync.WaitGroup
	var opened atomic.Bool
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if ok, _ := e.gate.Open(); ok {
					opened.Store(true)
				}
				e.gate.Status()
			}
		}()
	}
	for i := 0; i < 20; i++ {
		e.gate.Refresh(context.Background())
	}
	close(stop)
	wg.Wait()
	if opened.Load() {
		t.Fatalf("gate opened on proof %s inside a deny region", uid)
	}
}

// TestEveryCheckResultIsExportedFromTheStart: before any check, the gate
// exports treasuryd_compliance_checks_total at 0 for every result a check
// can have, so a rate or an alert on one has a series from the start.
func TestEveryCheckResultIsExportedFromTheStart(t *testing.T) {
	m := metrics.New("test")
	compliance.New(compliance.Deps{Metrics: m})
	got := map[string]bool{}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "treasuryd_compliance_checks_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			if s.GetCounter().GetValue() != 0 {
				t.Errorf("%v = %v before any check", s.GetLabel(), s.GetCounter().GetValue())
			}
			for _, l := range s.GetLabel() {
				if l.GetName() == "result" {
					got[l.GetValue()] = true
				}
			}
		}
	}
	for _, r := range []string{compliance.ReasonPass, compliance.ReasonNoProof, compliance.ReasonRevoked,
		compliance.ReasonOnchainMismatch, compliance.ReasonOnchainUnreachable, compliance.ReasonExpired} {
		if !got[r] {
			t.Errorf("no series for result %q before any check (have %v)", r, got)
		}
	}
	if len(got) != len(compliance.CheckResults) {
		t.Errorf("%d result series, want %d", len(got), len(compliance.CheckResults))
	}
}
