package main

import (
	"testing"

	"go.uber.org/fx"
	"go.uber.org/zap"

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
