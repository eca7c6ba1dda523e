package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"treasuryd/internal/sim"
)

const cliAccount = "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"

// deskPolicy starts a desk simulator in the test process and writes a policy
// pointing at it, with the key in the environment as in production.
func deskPolicy(t *testing.T) (*sim.Desk, string, []string) {
	t.Helper()
	key := "cli-test-key-7f3a9"
	desk, err := sim.NewDesk(sim.DeskConfig{
		AccountID: cliAccount, APIKey: key, Seed: 3,
		Balances: map[string]decimal.Decimal{"BTC": decimal.RequireFromString("5"), "USD": decimal.RequireFromString("1000")},
		Prices:   map[string]decimal.Decimal{"BTC-USD": decimal.RequireFromString("65000")},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := desk.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { desk.Close() })
	dir := t.TempDir()
	policy := fmt.Sprintf(`account_id: %q
astra:
  base_url: %q
  ws_url: %q
  api_key_env: CLI_TEST_ASTRA_KEY
  request_timeout: 2s
state:
  path: %q
compliance:
  enabled: false
withdraw:
  allowlist:
    - { asset: BTC, network: bitcoin, address: "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh" }
reconcile:
  tolerance: "0"
`, cliAccount, desk.BaseURL(), desk.WSURL(), filepath.Join(dir, "journal.db"))
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	return desk, path, []string{"CLI_TEST_ASTRA_KEY=" + key}
}

func runCLIEnv(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return runCLI(t, args...)
}

func TestReconcileCommandExitCodes(t *testing.T) {
	desk, policy, env := deskPolicy(t)

	code, out, errs := runCLIEnv(t, env, "reconcile", "-config", policy)
	if code != 0 || !strings.Contains(out, "no breaks") || !strings.Contains(out, "BTC") {
		t.Fatalf("clean desk: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	if strings.Contains(errs, "transactions read") {
		t.Errorf("progress printed to a non-terminal stderr:\n%s", errs)
	}

	desk.DriftBalance("BTC", decimal.RequireFromString("0.5"))
	code, out, errs = runCLIEnv(t, env, "reconcile", "-config", policy)
	if code != 3 || !strings.Contains(out, "balance_drift") {
		t.Fatalf("drifted desk: exit %d; want 3 with a balance_drift line\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
	for _, s := range []string{out, errs} {
		if strings.Contains(s, "cli-test-key-7f3a9") {
			t.Fatal("the API key appears in the output")
		}
	}

	desk.Close()
	code, _, errs = runCLIEnv(t, env, "reconcile", "-config", policy)
	if code != 1 {
		t.Fatalf("desk down: exit %d; want 1\n%s", code, errs)
	}
}

func TestAddressesCommandPrintsTheTable(t *testing.T) {
	_, policy, env := deskPolicy(t)
	code, out, errs := runCLIEnv(t, env, "addresses", "-config", policy)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "bitcoin") || !strings.Contains(out, "BTC") {
		t.Fatalf("table lacks the configured asset and network:\n%s", out)
	}
	// No key in the environment: a usage error, not a crash.
	t.Setenv("CLI_TEST_ASTRA_KEY", "")
	if code, _, _ := runCLI(t, "addresses", "-config", policy); code != 2 {
		t.Fatalf("without a key: exit %d; want 2", code)
	}
}
