package config

import (
	"strings"
	"testing"
	"time"
)

func TestStreamStaleAfterIsConfigurable(t *testing.T) {
	base := `account_id: "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"
astra:
  base_url: "https://prod.astra-api.dev/v2"
  ws_url: "wss://prod.astra-api.dev/v2"
%s
compliance:
  enabled: false
`
	tests := []struct {
		name, line string
		want       time.Duration
		problem    string
	}{
		{"default", "", DefaultStreamStaleAfter, ""},
		{"set", "  stream_stale_after: 3s", 3 * time.Second, ""},
		{"zero", "  stream_stale_after: 0s", 0, "astra.stream_stale_after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse([]byte(strings.Replace(base, "%s", tt.line, 1)), "p.yaml")
			if tt.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("err %v, want a problem at %s", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Astra.StreamStaleAfter != tt.want {
				t.Fatalf("StreamStaleAfter = %s, want %s", p.Astra.StreamStaleAfter, tt.want)
			}
		})
	}
}
