package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

const onchainHead = minimal + `compliance:
  enabled: true
  subject: "0xabcdef1234567890abcdef1234567890abcdef12"
  chains: [base, arbitrum]
  trusted_provers: ["0x1111111111111111111111111111111111111111"]
  allow: [{name: eu, bbox: [-10, 35, 30, 60]}]
  verify_onchain:
`

const schemaLine = `    schema_uid: "0xba4171c92572b1e4f241d044c32cdf083be9fd946b8766977558ca6378c824e2"` + "\n"

func TestVerifyOnchainParsesBothEndpointForms(t *testing.T) {
	const key = "k3y-s3cr3t-9f8e7d"
	t.Setenv("TEST_BASE_RPC", "https://base.example-rpc.net/v2/"+key)
	doc := onchainHead + schemaLine + `    chains:
      base: { rpc_url_env: TEST_BASE_RPC, eas: "0x4200000000000000000000000000000000000021" }
      arbitrum: { rpc_url: "https://arb.example-rpc.net", eas: "0xbD75f629A22Dc1ceD33dDA0b68c546A1c035c458" }
`
	p, err := Parse([]byte(doc), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v := p.Compliance.VerifyOnchain
	if v == nil || v.SchemaUID != "0xba4171c92572b1e4f241d044c32cdf083be9fd946b8766977558ca6378c824e2" || len(v.Chains) != 2 {
		t.Fatalf("verify_onchain %+v", v)
	}
	arb, ok := v.Chain("Arbitrum")
	if !ok || arb.RPCURL.Reveal() != "https://arb.example-rpc.net" || arb.EAS != "0xbd75f629a22dc1ced33dda0b68c546a1c035c458" || arb.RPCURLEnv != "" {
		t.Fatalf("arbitrum %+v", arb)
	}
	base, ok := v.Chain("base")
	if !ok || base.RPCURL.Reveal() != "https://base.example-rpc.net/v2/"+key || base.RPCURLEnv != "TEST_BASE_RPC" {
		t.Fatalf("base %+v", base)
	}
	// The resolved URL never prints.
	js, _ := json.Marshal(p.Compliance)
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s", p.Compliance, *v, *v, base.RPCURL), string(js)} {
		if strings.Contains(s, key) {
			t.Fatalf("the RPC key printed: %s", s)
		}
	}
	if !v.Equal(v) || v.Equal(nil) || !(*OnchainVerify)(nil).Equal(nil) {
		t.Fatal("Equal")
	}
	p2, _ := Parse([]byte(doc), "p.yaml")
	if !v.Equal(p2.Compliance.VerifyOnchain) {
		t.Fatal("the same file parsed twice is not Equal")
	}
}

func TestVerifyOnchainAbsentIsNil(t *testing.T) {
	p, err := Parse([]byte(minimal), "p.yaml")
	if err != nil || p.Compliance.VerifyOnchain != nil {
		t.Fatalf("%v %+v", err, p)
	}
}

func TestBadVerifyOnchainIsRefusedNamingKeyAndLine(t *testing.T) {
	const key = "zz-provider-key-zz"
	t.Setenv("TEST_HTTP_RPC", "http://rpc.example.net/"+key)
	t.Setenv("TEST_EMPTY_RPC", "")
	const L = 11 // the line of "verify_onchain:" in onchainHead
	tests := []struct {
		name, body string
		sandbox    bool
		want       []want
	}{
		{"schema uid not 32 bytes", `    schema_uid: "0x1234"
    chains:
      base: { rpc_url: "https://b.example", eas: "0x4200000000000000000000000000000000000021" }
      arbitrum: { rpc_url: "https://a.example", eas: "0x4200000000000000000000000000000000000021" }
`, false, []want{{"compliance.verify_onchain.schema_uid", L + 1, "is not a schema uid"}}},
		{"eas not an address, both forms, neither form", schemaLine + `    chains:
      base: { rpc_url: "https://b.example", rpc_url_env: X, eas: "0x42" }
      arbitrum: { eas: "0x4200000000000000000000000000000000000021" }
`, false, []want{
			{"compliance.verify_onchain.chains.base.eas", L + 3, "is not a contract address"},
			{"compliance.verify_onchain.chains.base.rpc_url_env", L + 3, "mutually exclusive"},
			{"compliance.verify_onchain.chains.arbitrum", L + 4, "one of rpc_url or rpc_url_env is required"},
		}},
		{"env unset, env empty, http outside loopback", schemaLine + `    chains:
      base: { rpc_url_env: TEST_UNSET_RPC_9, eas: "0x4200000000000000000000000000000000000021" }
      arbitrum: { rpc_url_env: TEST_HTTP_RPC, eas: "0x4200000000000000000000000000000000000021" }
      celo: { rpc_url_env: TEST_EMPTY_RPC, eas: "0x4200000000000000000000000000000000000021" }
      sepolia: { rpc_url: "ftp://x.example", eas: "0x4200000000000000000000000000000000000021" }
`, false, []want{
			{"compliance.verify_onchain.chains.base.rpc_url_env", L + 3, "environment variable TEST_UNSET_RPC_9 is not set"},
			{"compliance.verify_onchain.chains.arbitrum.rpc_url_env", L + 4, "must use https"},
			{"compliance.verify_onchain.chains.celo.rpc_url_env", L + 5, "environment variable TEST_EMPTY_RPC is not set"},
			{"compliance.verify_onchain.chains.sepolia.rpc_url", L + 6, "is not an http(s) URL"},
		}},
		{"a compliance chain without an entry; inline credentials", schemaLine + `    chains:
      base: { rpc_url: "https://user:pw@b.example", eas: "0x4200000000000000000000000000000000000021" }
`, false, []want{
			{"compliance.verify_onchain.chains", L + 2, `compliance.chains lists "arbitrum" but it has no entry`},
			{"compliance.verify_onchain.chains.base.rpc_url", L + 3, "must not carry credentials"},
		}},
		{"unknown key and missing keys", `    schema: x
`, false, []want{
			{"compliance.verify_onchain.schema", L + 1, "unknown key"},
			{"compliance.verify_onchain.schema_uid", L, "is required"},
			{"compliance.verify_onchain.chains", L, "is required"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := onchainHead + tt.body
			_, err := Parse([]byte(doc), "p.yaml")
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("accepted: %v", err)
			}
			if strings.Contains(err.Error(), key) {
				t.Fatalf("the URL from the environment is echoed: %v", err)
			}
			for _, w := range tt.want {
				found := false
				for _, p := range ve.Problems {
					if p.Path == w.path && p.Line == w.line && strings.Contains(p.Msg, w.msg) {
						found = true
					}
				}
				if !found {
					t.Errorf("missing %d: %s: %s\n got:\n%v", w.line, w.path, w.msg, err)
				}
			}
			if len(ve.Problems) != len(tt.want) {
				t.Errorf("%d problems, want %d:\n%v", len(ve.Problems), len(tt.want), err)
			}
		})
	}
}

func TestSandboxVerifyOnchainNeedsNoEndpointAndAllowsHTTP(t *testing.T) {
	doc := onchainHead + schemaLine + `    chains:
      base: { eas: "0x4200000000000000000000000000000000000021" }
      arbitrum: { rpc_url: "http://10.0.0.5:8545", eas: "0x4200000000000000000000000000000000000021" }
sandbox: {seed: 1}
`
	p, err := Parse([]byte(doc), "p.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := p.Compliance.VerifyOnchain.Chain("base"); b.RPCURL != "" {
		t.Fatalf("base %+v", b)
	}
	// Outside the sandbox, loopback http is fine and other http is not.
	doc = onchainHead + schemaLine + `    chains:
      base: { rpc_url: "http://127.0.0.1:8545", eas: "0x4200000000000000000000000000000000000021" }
      arbitrum: { rpc_url: "http://localhost:8545", eas: "0x4200000000000000000000000000000000000021" }
`
	if _, err := Parse([]byte(doc), "p.yaml"); err != nil {
		t.Fatal(err)
	}
}
