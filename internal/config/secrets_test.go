package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAPIKeyComesFromTheEnvOrTheFileOnly(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "api-key")
	writeFile(t, keyFile, "  file-secret-1\n")
	emptyFile := filepath.Join(t.TempDir(), "empty")
	writeFile(t, emptyFile, "\n")
	t.Setenv("ASTRA_API_KEY", "")
	t.Setenv("CUSTOM_KEY", " env-secret-2 ")

	tests := []struct {
		name    string
		astra   Astra
		sandbox bool
		want    string
		wantErr string
	}{
		{"default env unset", Astra{}, false, "", "environment variable ASTRA_API_KEY is not set"},
		{"named env", Astra{APIKeyEnv: "CUSTOM_KEY"}, false, "env-secret-2", ""},
		{"file trimmed", Astra{APIKeyFile: keyFile}, false, "file-secret-1", ""},
		{"empty file", Astra{APIKeyFile: emptyFile}, false, "", "is empty"},
		{"missing file", Astra{APIKeyFile: filepath.Join(t.TempDir(), "nope")}, false, "", "no such file"},
		{"sandbox without key", Astra{}, true, "sandbox-key", ""},
		{"sandbox with key", Astra{APIKeyEnv: "CUSTOM_KEY"}, true, "env-secret-2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Policy{Astra: tt.astra}
			if tt.sandbox {
				p.Sandbox = &Sandbox{}
			}
			got, err := p.APIKey()
			if got != tt.want {
				t.Errorf("APIKey() = %q, want %q", got, tt.want)
			}
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("APIKey() error = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestAdminTokenIsEmptyWhenItsEnvIsUnset(t *testing.T) {
	t.Setenv("TREASURYD_ADMIN_TOKEN", "")
	p := &Policy{}
	if got := p.AdminToken(); got != "" {
		t.Errorf("AdminToken() = %q, want empty (pause/resume disabled)", got)
	}
	t.Setenv("TREASURYD_ADMIN_TOKEN", "tok-1\n")
	if got := p.AdminToken(); got != "tok-1" {
		t.Errorf("AdminToken() = %q, want tok-1 from the default env", got)
	}
	t.Setenv("OTHER_TOKEN", "tok-2")
	p.HTTP.AdminTokenEnv = "OTHER_TOKEN"
	if got := p.AdminToken(); got != "tok-2" {
		t.Errorf("AdminToken() = %q, want tok-2", got)
	}
}
