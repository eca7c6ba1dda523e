package main

import (
	"strings"
	"testing"
	"time"
)

// TestSandboxOnchainOnlyRevocationClosesTheGate: the sandbox verifies its
// proof on the simulated chain; a revocation made on chain only (the index
// still says revoked: false) closes the gate within one refresh interval.
func TestSandboxOnchainOnlyRevocationClosesTheGate(t *testing.T) {
	dir := t.TempDir()
	policy, addr := sandboxPolicy(t, dir, func(s string) string {
		return strings.Replace(s, "refresh_interval: 10s", "refresh_interval: 1s", 1)
	})
	d := startDaemon(t, policy, addr)
	waitFor(t, 20*time.Second, "/readyz", func() bool { c, _ := d.get("/readyz"); return c == 200 })
	chainURL := logField(d.Logs(), "sandbox: simulators started", "chain")
	uid := logField(d.Logs(), "sandbox: location proof seeded", "uid")
	if chainURL == "" || uid == "" {
		t.Fatalf("sandbox log lacks the chain URL (%q) or the proof uid (%q)", chainURL, uid)
	}
	waitFor(t, 10*time.Second, "the gate open", func() bool { return d.metric("treasuryd_compliance_gate_open") == 1 })
	if d.metric("treasuryd_api_requests_total", `api="chain"`, `endpoint="eth_call"`, `code="200"`) == 0 {
		t.Fatal("the gate opened without an eth_call")
	}
	_, status := d.get("/status")
	if !strings.Contains(status, `"onchain_verified": true`) {
		t.Fatalf("/status does not show the proof verified on chain:\n%s", status)
	}

	postJSON(t, chainURL+"/_sim/chain/revoke?uid="+uid, "")
	waitFor(t, 3*time.Second, "the gate closed within one refresh interval", func() bool {
		return d.metric("treasuryd_compliance_gate_open") == 0
	})
	if d.metric("treasuryd_compliance_checks_total", `result="onchain_mismatch"`) == 0 {
		t.Fatal("no check counted as onchain_mismatch")
	}
	_, status = d.get("/status")
	if !strings.Contains(status, `"reason": "onchain_mismatch"`) {
		t.Fatalf("/status:\n%s", status)
	}
}
