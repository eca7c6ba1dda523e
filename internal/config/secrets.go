package config

import (
	"fmt"
	"os"
	"strings"
)

// SandboxAPIKey is the key used against the embedded simulators when none is
// configured.
const SandboxAPIKey = "sandbox-key"

// APIKey returns the Astra API key from the file Astra.APIKeyFile or the
// environment variable Astra.APIKeyEnv (default ASTRA_API_KEY), trimmed. A
// missing or empty key is an error, except with a sandbox block, where it is
// SandboxAPIKey. Errors name where the key was looked for, never the key.
func (p *Policy) APIKey() (string, error) {
	key, err := p.readAPIKey()
	if err != nil && p.Sandbox != nil {
		return SandboxAPIKey, nil
	}
	return key, err
}

func (p *Policy) readAPIKey() (string, error) {
	if f := p.Astra.APIKeyFile; f != "" {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", fmt.Errorf("astra API key: %w", err)
		}
		key := strings.TrimSpace(string(data))
		if key == "" {
			return "", fmt.Errorf("astra API key: file %s is empty", f)
		}
		return key, nil
	}
	name := p.Astra.APIKeyEnv
	if name == "" {
		name = DefaultAPIKeyEnv
	}
	key := strings.TrimSpace(os.Getenv(name))
	if key == "" {
		return "", fmt.Errorf("astra API key: environment variable %s is not set", name)
	}
	return key, nil
}

// AdminToken returns the admin token from the environment variable
// HTTP.AdminTokenEnv (default TREASURYD_ADMIN_TOKEN), trimmed. "" means
// pause and resume are disabled.
func (p *Policy) AdminToken() string {
	name := p.HTTP.AdminTokenEnv
	if name == "" {
		name = DefaultAdminTokenEnv
	}
	return strings.TrimSpace(os.Getenv(name))
}
