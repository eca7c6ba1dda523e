package main

import (
	"net/http"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

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
