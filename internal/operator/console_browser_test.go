package operator_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// fullStatus is a /status document with every optional section the console
// renders when present: a pause with its reason, the role, an unresolved
// withdrawal, reconciliation breaks, pending authority changes and the
// audit chain head. Amounts carry more digits than a float64 holds, so a
// console that parsed them into numbers would show them changed.
const fullStatus = `{
  "time": "2026-12-07T01:00:00Z",
  "role": "leader",
  "paused": true,
  "pause": {"paused": true, "reason": "withdrawal_mismatch", "by": "treasuryd", "at": "2026-12-07T00:59:00Z"},
  "programs": [{"name": "sell-btc", "side": "sell", "base": "BTC", "quote": "USD", "stream_up": false,
    "last_quote_price": "64123.123456789012345", "limit_price": "64900", "last_outcome": "paused",
    "last_reason": "the kill switch is engaged", "executed": "0.300000000000000001", "target": "1",
    "remaining_target": "0.699999999999999999", "daily_notional": "19500.5", "max_daily_notional": "500000",
    "average_price": "65001.12345678", "in_flight": false, "dry_run": false}],
  "compliance": {"enabled": true, "open": false, "reason": "too_old", "proof_uid": "0xabc", "proof_age_seconds": 90000,
    "max_proof_age_seconds": 86400, "checked_at": "2026-12-07T00:59:30Z"},
  "withdrawals": {"rules": [{"name": "btc-to-cold", "at": "2026-12-07T00:59:00Z", "action": "skipped", "reason": "unresolved"}],
    "in_flight": [], "unresolved": [{"id": 42, "rule": "btc-to-cold", "asset": "BTC", "amount": "0.123456789012345678",
    "network": "bitcoin", "address": "bc1qunresolved0000000000000000000000000000", "state": "unresolved", "created_at": "2026-12-07T00:50:00Z"}]},
  "reconciliation": {"at": "2026-12-07T00:58:00Z", "clean": false, "breaks": {"unexpected_withdrawal": 1, "withdrawal_mismatch": 2}, "transactions": 1234},
  "authority": {"pending": [{"kind": "allowlist", "item": "BTC bitcoin bc1qnewaddress", "diff": "+ BTC on bitcoin to bc1qnewaddress",
    "first_seen": "2026-12-07T00:00:00Z", "effective_at": "2026-12-08T00:00:00Z"}]},
  "audit": {"head": {"sequence": 9876, "hash": "5f2c0ffee0ddba11"}}
}`

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is required under CI (.ci/run installs it)")
	}
	t.Skip("chromium not installed; skipping the console's browser test (apt-get install -y chromium)")
	return ""
}

// TestConsoleRendersEverySectionInChromium renders the console in headless
// chromium over a /status that holds every optional section, and checks
// each is shown with its values exactly as sent.
func TestConsoleRendersEverySectionInChromium(t *testing.T) {
	chromium := chromiumPath(t)
	h, _, _ := newServer(t, token, &memStore{}, true)
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", h)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(fullStatus))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir="+t.TempDir(), "--virtual-time-budget=3000", "--window-size=390,2000",
		"--dump-dom", srv.URL+"/")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, errb.String())
	}
	dom := out.String()
	for _, want := range []string{
		`data-loaded="true"`,
		"role: leader",
		`<div class="big bad">PAUSED</div>`, "withdrawal_mismatch", // the pause and its reason
		`<div class="big bad">CLOSED</div>`, "too_old", "1d 1h of 1d 0h", // the gate, its proof age against the maximum
		"stream DOWN",
		"64123.123456789012345 USD/BTC", "beyond limit", "64900 USD/BTC", // price against limit, exactly
		"0.300000000000000001 BTC", // executed against target, exactly
		"19500.5 USD",              // 24h notional against its cap
		"65001.12345678 USD/BTC",   // average price
		"#42", "unresolved", "0.123456789012345678 BTC", "bc1qunresolved0000000000000000000000000000",
		"unexpected_withdrawal", "withdrawal_mismatch", // breaks by kind
		"BTC bitcoin bc1qnewaddress", "+ BTC on bitcoin to bc1qnewaddress", // a pending authority change
		`id="card-audit"`, "9876", "5f2c0ffee0ddba11", // the audit head
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered console lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("rendered DOM:\n%s", dom[strings.Index(dom, "<body"):])
	}
}
