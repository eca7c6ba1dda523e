package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"treasuryd/internal/config"
)

// TestAppGraphIsComplete validates the real module list for both shipped
// policies (fx.ValidateApp runs no constructor and starts nothing).
func TestAppGraphIsComplete(t *testing.T) {
	for _, path := range []string{"../../configs/sandbox.yaml", "../../configs/production.example.yaml"} {
		p, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := fx.ValidateApp(appOptions(p, policyUpstream(p), path, "test-key", zap.NewNop())); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
}

// TestAppStartsAndStopsInProcess runs the real module list under fxtest on
// the sandbox: every OnStart succeeds, the operator surface becomes ready,
// and every OnStop returns.
func TestAppStartsAndStopsInProcess(t *testing.T) {
	dir := t.TempDir()
	path, addr := sandboxPolicy(t, dir)
	p, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	log := zaptest.NewLogger(t)
	sb, err := startSandbox(p, config.SandboxAPIKey, log)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	app := fxtest.New(t, appOptions(p, sb.upstream(), path, config.SandboxAPIKey, log))
	app.RequireStart()
	waitFor(t, 10*time.Second, "/readyz", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	app.RequireStop()
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Fatal("the operator surface still answers after stop")
	}
}

// TestAuthorityKeeperStartsBeforeAnythingActs: the keeper's OnStart, which
// admits the file's policy (SPEC 10), runs after the journal opens and
// before the gate, the accept path and the rebalancer start.
func TestAuthorityKeeperStartsBeforeAnythingActs(t *testing.T) {
	dir := t.TempDir()
	path, _ := sandboxPolicy(t, dir)
	p, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	sb, err := startSandbox(p, config.SandboxAPIKey, log)
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	app := fxtest.New(t, appOptions(p, sb.upstream(), path, config.SandboxAPIKey, log))
	app.RequireStart()
	app.RequireStop()
	var order []string
	for _, e := range logs.FilterMessage("OnStart hook executing").All() {
		order = append(order, e.ContextMap()["callee"].(string))
	}
	at := func(part string) int {
		for i, c := range order {
			if strings.Contains(c, part) {
				return i
			}
		}
		t.Fatalf("no OnStart hook %q in %q", part, order)
		return -1
	}
	keeper := at("authority.(*Keeper).Start")
	// The journal's hook takes the single-writer hold, then opens it.
	if at("internal/journal.") > keeper {
		t.Errorf("the keeper starts before the journal opens: %q", order)
	}
	for _, later := range []string{"compliance.(*Gate).Start", "trade.(*Runner).Start", "withdraw.(*Rebalancer).Start"} {
		if at(later) < keeper {
			t.Errorf("%s starts before the keeper admits the policy: %q", later, order)
		}
	}
}
