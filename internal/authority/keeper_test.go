package authority

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
)

const policyHead = `account_id: "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"
astra: { base_url: "https://desk.example/v2", ws_url: "wss://desk.example/v2" }
authority: { hold: 24h }
compliance:
  enabled: %ENABLED%
  subject: "0xabcdef1234567890abcdef1234567890abcdef12"
  trusted_provers: ["0x1111111111111111111111111111111111111111"]
  allow: [ { name: eu, bbox: [-10.0, 35.0, 30.0, 60.0] } ]
withdraw:
  allowlist:
    - { asset: BTC, network: bitcoin, address: "bc1qcold" }
`

// policyFile renders a policy: compliance enabled or not, plus extra
// allowlist entries.
func policyFile(enabled bool, extra ...string) string {
	s := strings.Replace(policyHead, "%ENABLED%", map[bool]string{true: "true", false: "false"}[enabled], 1)
	for _, a := range extra {
		s += "    - { asset: BTC, network: bitcoin, address: \"" + a + "\" }\n"
	}
	return s
}

// clock is the keeper's injected clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// daemon is the keeper's part of a daemon: the journal, the Reloader and the
// keeper over one policy file.
type daemon struct {
	j    *journal.Journal
	rl   *config.Reloader
	k    *Keeper
	m    *metrics.Metrics
	logs *observer.ObservedLogs
}

func start(t *testing.T, dir string, clk *clock) *daemon {
	t.Helper()
	path := filepath.Join(dir, "policy.yaml")
	p, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(filepath.Join(dir, "journal.db"))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	rl := config.NewReloader(path, p, zap.NewNop(), nil)
	m := metrics.New("")
	k := New(Deps{Log: zap.New(core), Metrics: m, Journal: j, Reloader: rl, Now: clk.Now, Recheck: 10 * time.Millisecond})
	if got := rl.Current(); len(got.Withdraw.Allowlist) != 0 || !got.Compliance.Enabled || len(got.Compliance.Allow) != 0 {
		t.Fatalf("before admission the policy in force is %+v; want nothing payable and the gate closed", got)
	}
	if err := k.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	d := &daemon{j: j, rl: rl, k: k, m: m, logs: logs}
	t.Cleanup(func() { d.stop(t) })
	return d
}

func (d *daemon) stop(t *testing.T) {
	if err := d.k.Stop(context.Background()); err != nil {
		t.Error(err)
	}
	d.j.Close()
}

func write(t *testing.T, dir, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (d *daemon) payable(addr string) bool { return d.rl.Current().Allowed("BTC", "bitcoin", addr) }

// TestKeeperHoldsAWideningChangeAcrossReloadsAndRestarts is SPEC 7.12 on the
// keeper: an allowlist entry added by reload is not in force before its
// hold, not after a restart either (its first sight is journaled), and is in
// force once the hold has passed; the pending change is visible in Status,
// the metric and a warn log.
func TestKeeperHoldsAWideningChangeAcrossReloadsAndRestarts(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{now: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)}
	write(t, dir, policyFile(true))
	d := start(t, dir, clk)
	if !d.payable("bc1qcold") {
		t.Fatal("a new journal's policy is not in force at once")
	}

	write(t, dir, policyFile(true, "bc1qnew"))
	if err := d.rl.Reload(); err != nil {
		t.Fatal(err)
	}
	first := clk.Now()
	if d.payable("bc1qnew") || !d.payable("bc1qcold") {
		t.Fatalf("allowlist in force %v right after the reload", d.rl.Current().Withdraw.Allowlist)
	}
	if d.rl.File().Allowed("BTC", "bitcoin", "bc1qnew") != true {
		t.Fatal("the file's policy lost the entry")
	}
	st := d.k.Status()
	if st.Hold != "24h0m0s" || len(st.Pending) != 1 || st.Pending[0].Kind != "allowlist" ||
		!st.Pending[0].EffectiveAt.Equal(first.Add(24*time.Hour)) || !strings.Contains(st.Pending[0].Diff, "bc1qnew") {
		t.Fatalf("status %+v", st)
	}
	if v := testutil.ToFloat64(d.m.AuthorityPending.WithLabelValues("allowlist")); v != 1 {
		t.Errorf("treasuryd_authority_pending{kind=allowlist} = %v, want 1", v)
	}
	if d.logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("held").FilterField(zap.String("item", "allowlist:BTC/bitcoin/bc1qnew")).Len() != 1 {
		t.Errorf("no warn log for the held change: %v", d.logs.All())
	}

	// A restart 23h later: the clock is not restarted.
	clk.Add(23 * time.Hour)
	d.stop(t)
	d = start(t, dir, clk)
	if d.payable("bc1qnew") {
		t.Fatal("the held entry is in force after a restart")
	}
	if st := d.k.Status(); len(st.Pending) != 1 || !st.Pending[0].FirstSeen.Equal(first) {
		t.Fatalf("after restart: %+v; want first_seen %s kept", st, first)
	}
	if d.logs.FilterMessageSnippet("still held").Len() != 1 {
		t.Error("a change still held at start is not logged")
	}
	if err := d.rl.Admit(); err != nil || d.payable("bc1qnew") {
		t.Fatalf("admit 1h before the hold: %v, payable %v", err, d.payable("bc1qnew"))
	}

	// The hold passes: the keeper's timer admits it.
	clk.Add(time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for !d.payable("bc1qnew") {
		if time.Now().After(deadline) {
			t.Fatal("the entry is not in force after its hold")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := testutil.ToFloat64(d.m.AuthorityPending.WithLabelValues("allowlist")); v != 0 {
		t.Errorf("pending gauge %v after maturity", v)
	}
	all, err := d.j.AuthorityChanges(context.Background())
	if err != nil || len(all) != 1 || all[0].State != journal.AuthorityMatured {
		t.Fatalf("journal %+v %v", all, err)
	}
}

// TestKeeperCancelsAChangeRemovedBeforeItMatures, and a narrowing change
// (compliance enabled again, an entry removed) applies at once.
func TestKeeperCancelsAChangeRemovedBeforeItMatures(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{now: time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)}
	write(t, dir, policyFile(true))
	d := start(t, dir, clk)

	write(t, dir, policyFile(false, "bc1qnew"))
	if err := d.rl.Reload(); err != nil {
		t.Fatal(err)
	}
	if !d.rl.Current().Compliance.Enabled || d.payable("bc1qnew") {
		t.Fatalf("in force after the widening reload: %+v", d.rl.Current())
	}
	if v := testutil.ToFloat64(d.m.AuthorityPending.WithLabelValues("compliance")); v != 1 {
		t.Errorf("compliance pending %v", v)
	}
	clk.Add(time.Hour)
	write(t, dir, policyFile(true))
	if err := d.rl.Reload(); err != nil {
		t.Fatal(err)
	}
	clk.Add(48 * time.Hour)
	if err := d.rl.Admit(); err != nil {
		t.Fatal(err)
	}
	if d.payable("bc1qnew") || !d.rl.Current().Compliance.Enabled {
		t.Fatal("a cancelled change came into force")
	}
	all, _ := d.j.AuthorityChanges(context.Background())
	for _, c := range all {
		if c.State != journal.AuthorityCancelled {
			t.Errorf("change %+v, want cancelled", c)
		}
	}
	if len(all) != 2 || d.logs.FilterMessageSnippet("cancelled").Len() != 2 {
		t.Errorf("changes %+v; cancellations logged %d", all, d.logs.FilterMessageSnippet("cancelled").Len())
	}

	// Narrowing: the one entry removed is unpayable at once.
	write(t, dir, strings.Replace(policyFile(true), `    - { asset: BTC, network: bitcoin, address: "bc1qcold" }`+"\n", "", 1))
	if err := d.rl.Reload(); err != nil {
		t.Fatal(err)
	}
	if d.payable("bc1qcold") {
		t.Error("a removed entry is still payable")
	}
	// ... and adding it back is a widening change again.
	write(t, dir, policyFile(true))
	if err := d.rl.Reload(); err != nil {
		t.Fatal(err)
	}
	if d.payable("bc1qcold") {
		t.Error("an entry removed and added back is payable without a hold")
	}
}

// TestKeeperFailsClosedWithoutTheJournal: a reload that cannot be judged
// (journal closed) is refused and the running policy stays.
func TestKeeperFailsClosedWithoutTheJournal(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{now: time.Now()}
	write(t, dir, policyFile(true))
	d := start(t, dir, clk)
	before := d.rl.Current()
	d.j.Close()
	write(t, dir, policyFile(false, "bc1qnew"))
	if err := d.rl.Reload(); err == nil {
		t.Fatal("a reload without the journal was admitted")
	}
	if d.rl.Current() != before {
		t.Error("the running policy changed on a refused reload")
	}
}

// TestSandboxAndRealPoliciesNeverShareAJournal: a sandbox policy (whose hold
// may be 0s) would put a widening change in force at once, for a real
// policy to find in force on the same journal at its next start. Either
// order is refused at admission, and nothing is put in force.
func TestSandboxAndRealPoliciesNeverShareAJournal(t *testing.T) {
	const sandbox = "sandbox: { seed: 1 }\n"
	for _, tc := range []struct{ name, first, second string }{
		{"sandbox after real", policyFile(true), policyFile(true, "bc1qattacker") + sandbox},
		{"real after sandbox", policyFile(true) + sandbox, policyFile(true, "bc1qattacker")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			clk := &clock{now: time.Now()}
			write(t, dir, tc.first)
			d := start(t, dir, clk)
			d.stop(t)

			write(t, dir, tc.second)
			path := filepath.Join(dir, "policy.yaml")
			p, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			j, err := journal.Open(filepath.Join(dir, "journal.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer j.Close()
			rl := config.NewReloader(path, p, zap.NewNop(), nil)
			k := New(Deps{Journal: j, Reloader: rl, Now: clk.Now})
			err = k.Start(context.Background())
			if !errors.Is(err, ErrJournalMode) {
				t.Fatalf("start on the other kind's journal: %v; want ErrJournalMode", err)
			}
			if rl.Current().Allowed("BTC", "bitcoin", "bc1qattacker") || rl.Current().Allowed("BTC", "bitcoin", "bc1qcold") {
				t.Fatal("a refused admission put a destination in force")
			}
		})
	}
}
