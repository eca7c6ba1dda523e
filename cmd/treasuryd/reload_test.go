package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestHotReloadAppliesValidAndRefusesBadPolicies edits the running sandbox's
// policy file: a valid change is applied, a broken file and a change to a
// restart-only field are refused and counted, and the daemon keeps deciding
// on the policy it had (SPEC 3 reload, 7.11).
func TestHotReloadAppliesValidAndRefusesBadPolicies(t *testing.T) {
	dir := t.TempDir()
	policy, addr := sandboxPolicy(t, dir)
	d := startDaemon(t, policy, addr)
	waitFor(t, 20*time.Second, "/readyz", func() bool { c, _ := d.get("/readyz"); return c == 200 })
	orig, err := os.ReadFile(policy)
	if err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		t.Helper()
		// Write-then-rename, as editors and ConfigMap updates do.
		tmp := policy + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, policy); err != nil {
			t.Fatal(err)
		}
	}

	// Valid: buy-eth may now pay up to 3300; its stream restarts.
	write(strings.Replace(string(orig), `limit_price: "3210"`, `limit_price: "3300"`, 1))
	waitFor(t, 10*time.Second, "a successful reload", func() bool {
		return d.metric("treasuryd_config_reloads_total", `result="ok"`) == 1
	})

	// Broken: refused, counted, the daemon goes on deciding.
	write(strings.Replace(string(orig), `limit_price: "3210"`, `limit_price: "3,210"`, 1))
	waitFor(t, 10*time.Second, "a refused reload", func() bool {
		return d.metric("treasuryd_config_reloads_total", `result="error"`) >= 1
	})
	errs := d.metric("treasuryd_config_reloads_total", `result="error"`)

	// Restart-only: a new account is refused as a whole.
	write(strings.Replace(string(orig), `account_id: "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"`, `account_id: "00000000-0000-4000-8000-000000000000"`, 1))
	waitFor(t, 10*time.Second, "a refused restart-only change", func() bool {
		return d.metric("treasuryd_config_reloads_total", `result="error"`) > errs
	})
	if n := d.metric("treasuryd_config_reloads_total", `result="ok"`); n != 1 {
		t.Fatalf("%v successful reloads; the broken and restart-only files must not count", n)
	}
	before := d.metric("treasuryd_quote_decisions_total")
	waitFor(t, 10*time.Second, "decisions after the refused reloads", func() bool {
		return d.metric("treasuryd_quote_decisions_total") > before+2
	})
	if n := d.metric("treasuryd_quote_decisions_total", `outcome="invalid"`); n != 0 {
		t.Fatalf("%v quotes judged invalid after the refused account change: the old account must stay in force", n)
	}
	if !strings.Contains(d.Logs(), "restart_only") {
		t.Error("the refused restart-only reload is not logged with the fields it changed")
	}
}
