package main

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The authority tests (SPEC 10, 7.12) run the real binary on the sandbox
// with a short authority.hold. The rebalance schedule ticks every 5s; each
// hold spans at least two ticks, so a change paid early would be seen.

const (
	newAddress = "0x8ba1f109551bD432803012645Ac136ddd64DBA72"
	// newEntry and newRule add a destination and a rule sweeping ETH to it
	// (the sandbox starts with 40 ETH).
	newEntry = `    - { asset: ETH, network: ethereum, address: "` + newAddress + `" }` + "\n"
	newRule  = `    - name: "eth-new"
      asset: ETH
      network: ethereum
      address: "` + newAddress + `"
      high_water: "30"
      keep: "20"
      max_amount: "1"
      max_daily: "10"
`
	ethEntry = `    - { asset: ETH, network: ethereum, address: "0x742d35Cc6634C0532925a3b8D4C9db96C4b4d8b6" }` + "\n"
	ruleHead = "rebalance:\n  schedule: \"@every 5s\"\n  rules:\n"
)

// withHold sets authority.hold in a sandbox policy.
func withHold(hold string) func(string) string {
	return func(s string) string { return strings.Replace(s, "hold: 0s", "hold: "+hold, 1) }
}

// withNewDestination adds the new allowlist entry and its rule.
func withNewDestination(s string) string {
	s = strings.Replace(s, ethEntry, ethEntry+newEntry, 1)
	return strings.Replace(s, ruleHead, ruleHead+newRule, 1)
}

// authorityStatus is /status's authority part.
type authorityStatus struct {
	Hold    string `json:"hold"`
	Pending []struct {
		Kind        string    `json:"kind"`
		Item        string    `json:"item"`
		Diff        string    `json:"diff"`
		FirstSeen   time.Time `json:"first_seen"`
		EffectiveAt time.Time `json:"effective_at"`
	} `json:"pending"`
}

func (d *daemon) authority(t *testing.T) authorityStatus {
	t.Helper()
	_, body := d.get("/status")
	var st struct {
		Authority   authorityStatus `json:"authority"`
		Withdrawals struct {
			Rules []struct {
				Name, Reason string
			} `json:"rules"`
		} `json:"withdrawals"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	return st.Authority
}

// newPaid counts withdrawal intents of the rule to the new destination: an
// intent is journaled right before the POST, so zero means never paid.
func (d *daemon) newPaid() float64 {
	return d.metric("treasuryd_withdrawals_total", `rule="eth-new"`, `status="intent"`)
}

func rewrite(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitPending waits for exactly n held changes in /status and returns them.
func waitPending(t *testing.T, d *daemon, n int) authorityStatus {
	t.Helper()
	var st authorityStatus
	waitFor(t, 10*time.Second, "held changes in /status", func() bool { st = d.authority(t); return len(st.Pending) == n })
	return st
}

// notPaidUntil checks, until shortly before at, that nothing was paid to
// the new destination.
func notPaidUntil(t *testing.T, d *daemon, at time.Time) {
	t.Helper()
	for time.Until(at) > 300*time.Millisecond {
		if n := d.newPaid(); n != 0 {
			t.Fatalf("SPEC 7.12: %v withdrawals to a held destination %s before its effective_at %s", n, time.Until(at), at)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestAuthorityHoldsAnAllowlistEntryAddedByReload: a destination and a rule
// added by reload are not paid before the hold (the rule is skipped as
// authority_hold, the change is in /status, the metric and a warn log);
// removing it cancels it; added again, its clock starts again; once held
// long enough it is paid.
func TestAuthorityHoldsAnAllowlistEntryAddedByReload(t *testing.T) {
	dir := t.TempDir()
	policy, addr := sandboxPolicy(t, dir, withHold("12s"))
	d := startDaemon(t, policy, addr)
	waitFor(t, 20*time.Second, "/readyz", func() bool { c, _ := d.get("/readyz"); return c == 200 })
	orig, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	if st := d.authority(t); st.Hold != "12s" || len(st.Pending) != 0 {
		t.Fatalf("authority at start %+v", st)
	}

	rewrite(t, policy, withNewDestination(string(orig)))
	st := waitPending(t, d, 1)
	first := st.Pending[0]
	if first.Kind != "allowlist" || !strings.Contains(first.Diff, newAddress) || first.EffectiveAt.Sub(first.FirstSeen) != 12*time.Second {
		t.Fatalf("held change %+v", first)
	}
	if v := d.metric("treasuryd_authority_pending", `kind="allowlist"`); v != 1 {
		t.Errorf("treasuryd_authority_pending{kind=allowlist} = %v", v)
	}
	if !strings.Contains(d.Logs(), `"msg":"authority: widening change held until effective_at"`) {
		t.Error("no warn log for the held change")
	}
	waitFor(t, 12*time.Second, "the rule skipped as authority_hold", func() bool {
		_, body := d.get("/status")
		return strings.Contains(body, `"reason": "authority_hold`)
	})

	// Removed before it matures: cancelled.
	rewrite(t, policy, string(orig))
	waitPending(t, d, 0)
	if !strings.Contains(d.Logs(), "held change cancelled") {
		t.Error("the cancellation is not logged")
	}
	// Added again: a new first sight, so the old effective_at pays nothing.
	time.Sleep(2 * time.Second)
	rewrite(t, policy, withNewDestination(string(orig)))
	second := waitPending(t, d, 1).Pending[0]
	if !second.FirstSeen.After(first.FirstSeen.Add(time.Second)) {
		t.Fatalf("re-added change first seen %s, the cancelled one %s: its clock must start again", second.FirstSeen, first.FirstSeen)
	}
	notPaidUntil(t, d, second.EffectiveAt)

	waitFor(t, 15*time.Second, "a withdrawal to the new destination after its hold", func() bool { return d.newPaid() >= 1 })
	if st := d.authority(t); len(st.Pending) != 0 || d.metric("treasuryd_authority_pending") != 0 {
		t.Errorf("after maturity: %+v, gauge %v", st, d.metric("treasuryd_authority_pending"))
	}
}

// TestAuthorityHoldSurvivesRestarts: a destination added while the daemon
// was down is held from the start that first sees it; a restart during the
// hold keeps its first sight (journaled), and it is paid only after.
func TestAuthorityHoldSurvivesRestarts(t *testing.T) {
	dir := t.TempDir()
	policy, addr := sandboxPolicy(t, dir, withHold("15s"))
	d := startDaemon(t, policy, addr)
	waitFor(t, 20*time.Second, "/readyz", func() bool { c, _ := d.get("/readyz"); return c == 200 })
	if code, _ := d.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	orig, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	rewrite(t, policy, withNewDestination(string(orig)))

	d = startDaemon(t, policy, addr)
	waitFor(t, 20*time.Second, "/readyz", func() bool { c, _ := d.get("/readyz"); return c == 200 })
	held := waitPending(t, d, 1).Pending[0]
	if !strings.Contains(d.Logs(), "widening change held until effective_at") {
		t.Error("the change first seen at start is not logged")
	}
	notPaidUntil(t, d, held.FirstSeen.Add(6*time.Second))
	if code, _ := d.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}

	d = startDaemon(t, policy, addr)
	waitFor(t, 20*time.Second, "/readyz", func() bool { c, _ := d.get("/readyz"); return c == 200 })
	again := waitPending(t, d, 1).Pending[0]
	if !again.FirstSeen.Equal(held.FirstSeen) || !again.EffectiveAt.Equal(held.EffectiveAt) {
		t.Fatalf("after restart: first_seen %s effective_at %s; want %s %s kept", again.FirstSeen, again.EffectiveAt,
			held.FirstSeen, held.EffectiveAt)
	}
	if !strings.Contains(d.Logs(), "widening change still held") {
		t.Error("a change still held at start is not logged")
	}
	notPaidUntil(t, d, held.EffectiveAt)
	waitFor(t, 15*time.Second, "a withdrawal to the new destination after its hold", func() bool { return d.newPaid() >= 1 })
}

// TestAuthorityComplianceNarrowsAtOnceAndLoosensAfterTheHold: a deny region
// over the proof's point closes the gate at once; removing it again is
// widening and keeps the gate closed until the hold has passed. Then, with
// the proof revoked, compliance disabled by reload keeps the gate closed
// until its hold has passed.
func TestAuthorityComplianceNarrowsAtOnceAndLoosensAfterTheHold(t *testing.T) {
	dir := t.TempDir()
	policy, addr := sandboxPolicy(t, dir, withHold("8s"), func(s string) string {
		return strings.Replace(s, "refresh_interval: 10s", "refresh_interval: 1s", 1)
	})
	d := startDaemon(t, policy, addr)
	waitFor(t, 20*time.Second, "/readyz", func() bool { c, _ := d.get("/readyz"); return c == 200 })
	waitFor(t, 10*time.Second, "the gate open", func() bool { return d.metric("treasuryd_compliance_gate_open") == 1 })
	orig, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	gateOpen := func() bool { return d.metric("treasuryd_compliance_gate_open") == 1 }

	// Narrowing: the sandbox proof sits at the centre of "eu" (10, 47.5).
	const alps = "    - name: \"alps\"\n      bbox: [5.0, 45.0, 15.0, 50.0]\n"
	denied := strings.Replace(string(orig), "  deny:\n", "  deny:\n"+alps, 1)
	rewrite(t, policy, denied)
	waitFor(t, 3*time.Second, "the gate closed at once by a new deny region", func() bool { return !gateOpen() })
	if st := d.authority(t); len(st.Pending) != 0 {
		t.Fatalf("a narrowing change is held: %+v", st)
	}

	// Widening: the deny region removed again waits for the hold.
	rewrite(t, policy, string(orig))
	held := waitPending(t, d, 1).Pending[0]
	if held.Kind != "compliance" || d.metric("treasuryd_authority_pending", `kind="compliance"`) != 1 {
		t.Fatalf("held change %+v", held)
	}
	for time.Until(held.EffectiveAt) > 300*time.Millisecond {
		if gateOpen() {
			t.Fatalf("SPEC 7.12: the gate opened %s before the deny region's removal matured", time.Until(held.EffectiveAt))
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, "the gate open after the hold", gateOpen)

	// The proof revoked, compliance disabled by reload: still gated until
	// the hold has passed.
	astralURL := logField(d.Logs(), "sandbox: simulators started", "astral")
	uid := logField(d.Logs(), "sandbox: location proof seeded", "uid")
	postJSON(t, astralURL+"/_sim/astral/revoke?uid="+uid, "")
	waitFor(t, 3*time.Second, "the gate closed by the revocation", func() bool { return !gateOpen() })
	rewrite(t, policy, strings.Replace(string(orig), "  enabled: true", "  enabled: false", 1))
	held = waitPending(t, d, 1).Pending[0]
	if held.Item != "compliance.enabled=false" {
		t.Fatalf("held change %+v", held)
	}
	for time.Until(held.EffectiveAt) > 300*time.Millisecond {
		if gateOpen() {
			t.Fatalf("SPEC 7.12: compliance disabled by reload opened the gate %s before its hold", time.Until(held.EffectiveAt))
		}
		time.Sleep(200 * time.Millisecond)
	}
	waitFor(t, 10*time.Second, "the gate open (disabled) after the hold", gateOpen)
}
