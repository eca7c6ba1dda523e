package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// logField finds the first JSON log line with msg and returns its field.
func logField(logs, msg, field string) string {
	for _, line := range strings.Split(logs, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["msg"] != msg {
			continue
		}
		if v, ok := m[field].(string); ok {
			return v
		}
	}
	return ""
}

func postJSON(t *testing.T, url, body string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST %s: %d", url, resp.StatusCode)
	}
}

// TestRevokedProofStopsAcceptsAndWithdrawals drives the gate end to end: the
// daemon on the sandbox, its embedded Astral simulator revoking the proof
// through the simulator's test API. Within one refresh interval nothing is
// accepted or withdrawn; a new valid proof resumes both.
func TestRevokedProofStopsAcceptsAndWithdrawals(t *testing.T) {
	dir := t.TempDir()
	policy, addr := sandboxPolicy(t, dir, func(s string) string {
		return strings.Replace(s, "refresh_interval: 10s", "refresh_interval: 1s", 1)
	})
	d := startDaemon(t, policy, addr)
	waitFor(t, 20*time.Second, "/readyz", func() bool { c, _ := d.get("/readyz"); return c == 200 })
	astralURL := logField(d.Logs(), "sandbox: simulators started", "astral")
	uid := logField(d.Logs(), "sandbox: location proof seeded", "uid")
	if astralURL == "" || uid == "" {
		t.Fatalf("sandbox log lacks the astral URL (%q) or the proof uid (%q)", astralURL, uid)
	}
	waitFor(t, 10*time.Second, "the gate open", func() bool { return d.metric("treasuryd_compliance_gate_open") == 1 })

	postJSON(t, astralURL+"/_sim/astral/revoke?uid="+uid, "")
	waitFor(t, 3*time.Second, "the gate closed within one refresh interval", func() bool {
		return d.metric("treasuryd_compliance_gate_open") == 0
	})
	accepts := d.metric("treasuryd_accepts_total")
	submitted := d.metric("treasuryd_withdrawals_total", `status="submitted"`)
	compliance := d.metric("treasuryd_quote_decisions_total", `outcome="compliance"`)
	// Two rebalance ticks (every 5s) and many quotes pass with the gate closed.
	time.Sleep(11 * time.Second)
	if got := d.metric("treasuryd_accepts_total"); got != accepts {
		t.Fatalf("accepts went from %v to %v with the gate closed", accepts, got)
	}
	if got := d.metric("treasuryd_withdrawals_total", `status="submitted"`); got != submitted {
		t.Fatalf("withdrawals submitted went from %v to %v with the gate closed", submitted, got)
	}
	if got := d.metric("treasuryd_quote_decisions_total", `outcome="compliance"`); got <= compliance {
		t.Fatalf("no quote was refused for compliance while the gate was closed (%v)", got)
	}
	_, status := d.get("/status")
	if !strings.Contains(status, `"open": false`) {
		t.Errorf("/status does not show the gate closed:\n%s", status)
	}

	proof := fmt.Sprintf(`{"chain":"base","prover":"0x1111111111111111111111111111111111111111","subject":"0xabcdef1234567890abcdef1234567890abcdef12","event_time":%q,"lng":10,"lat":47.5}`,
		time.Now().UTC().Format(time.RFC3339))
	postJSON(t, astralURL+"/_sim/astral/proofs", proof)
	waitFor(t, 3*time.Second, "the gate open again", func() bool { return d.metric("treasuryd_compliance_gate_open") == 1 })
	waitFor(t, 30*time.Second, "accepts and a withdrawal after the new proof", func() bool {
		return d.metric("treasuryd_accepts_total") > accepts &&
			d.metric("treasuryd_withdrawals_total", `status="submitted"`) > submitted
	})
}
