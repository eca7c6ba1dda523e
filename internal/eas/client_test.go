package eas_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"treasuryd/internal/astral"
	"treasuryd/internal/eas"
	"treasuryd/internal/sim"
)

const subject = "0xabcdef1234567890abcdef1234567890abcdef12"

type chainEnv struct {
	astral *sim.Astral
	chain  *sim.Chain
	uid    string
}

func newChainEnv(t *testing.T) chainEnv {
	t.Helper()
	a := sim.NewAstral(sim.AstralConfig{})
	c, err := sim.NewChain(sim.ChainConfig{Astral: a})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	uid := a.AddProof(sim.SandboxProof(subject, "base", 10, 47.5, time.Now()))
	return chainEnv{astral: a, chain: c, uid: uid}
}

type observed struct {
	mu    sync.Mutex
	codes []string
}

func (o *observed) fn(endpoint, code string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.codes = append(o.codes, endpoint+" "+code)
}

func (o *observed) last() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.codes) == 0 {
		return ""
	}
	return o.codes[len(o.codes)-1]
}

func get(t *testing.T, c *eas.Client, uid string) (eas.Attestation, error) {
	t.Helper()
	u, err := eas.ParseUID(uid)
	if err != nil {
		t.Fatal(err)
	}
	return c.GetAttestation(context.Background(), common.HexToAddress(sim.DefaultEAS), u)
}

func TestGetAttestationReadsTheSimulatedChain(t *testing.T) {
	env := newChainEnv(t)
	var obs observed
	c, err := eas.New(eas.Options{URL: env.chain.URL("base"), Observe: obs.fn})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := get(t, c, env.uid)
	if err != nil {
		t.Fatal(err)
	}
	if a.Empty() || "0x"+common.Bytes2Hex(a.Uid[:]) != env.uid || a.RevocationTime != 0 ||
		!strings.EqualFold(a.Recipient.Hex(), subject) || common.Hash(a.Schema).Hex() != sim.AstralSchemaUID {
		t.Fatalf("attestation %+v", a)
	}
	loc, err := eas.DecodeLocation(a.Data)
	if err != nil {
		t.Fatal(err)
	}
	lng, lat, ok := astral.ParsePoint(loc.Location)
	if !ok || lng != 10 || lat != 47.5 || loc.SRS != "WGS84" {
		t.Fatalf("location %+v", loc)
	}
	if obs.last() != "eth_call 200" {
		t.Fatalf("observed %q", obs.last())
	}

	env.chain.RevokeOnChain(env.uid)
	env.chain.SetLocation(env.uid, 40, 45)
	if a, err = get(t, c, env.uid); err != nil || a.RevocationTime == 0 {
		t.Fatalf("after on-chain revocation: %+v %v", a, err)
	}
	loc, _ = eas.DecodeLocation(a.Data)
	if lng, lat, _ := astral.ParsePoint(loc.Location); lng != 40 || lat != 45 {
		t.Fatalf("moved location %v,%v", lng, lat)
	}
	env.chain.Drop(env.uid)
	if a, err = get(t, c, env.uid); err != nil || !a.Empty() {
		t.Fatalf("dropped: %+v %v", a, err)
	}
	// Another chain does not hold a base proof; another address has no code.
	other, _ := eas.New(eas.Options{URL: env.chain.URL("arbitrum")})
	uid2 := env.astral.AddProof(sim.SandboxProof(subject, "base", 1, 1, time.Now()))
	if a, err = get(t, other, uid2); err != nil || !a.Empty() {
		t.Fatalf("other chain: %+v %v", a, err)
	}
	u2, _ := eas.ParseUID(uid2)
	if _, err := c.GetAttestation(context.Background(), common.HexToAddress("0x1"), u2); err != eas.ErrNoContract && !strings.Contains(err.Error(), "empty eth_call") {
		t.Fatalf("no contract: %v", err)
	}
}

func TestGetAttestationFailuresAreLabelledAndNeverShowTheURL(t *testing.T) {
	env := newChainEnv(t)
	const key = "s3cr3t-pr0vider-k3y"
	// The endpoint carries a key in its path and query; the simulator routes on the first segment.
	srv := httptest.NewServer(http.StripPrefix("/base/"+key, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = "/base"
		env.chain.Handler().ServeHTTP(w, r)
	})))
	defer srv.Close()
	url := srv.URL + "/base/" + key + "?apikey=" + key
	var obs observed
	c, err := eas.New(eas.Options{URL: url, Observe: obs.fn, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, c, env.uid); err != nil {
		t.Fatalf("through the keyed URL: %v", err)
	}
	tests := []struct {
		name string
		set  func(bool)
		code string
	}{
		{"endpoint down", env.chain.SetDown, "eth_call 503"},
		{"node error", env.chain.SetRPCError, "eth_call rpc_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.set(true)
			defer tt.set(false)
			_, err := get(t, c, env.uid)
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), srv.URL) {
				t.Fatalf("error shows the URL: %v", err)
			}
			if obs.last() != tt.code {
				t.Fatalf("observed %q, want %q", obs.last(), tt.code)
			}
		})
	}
	srv.Close()
	_, err = get(t, c, env.uid)
	if err == nil || strings.Contains(err.Error(), key) || strings.Contains(err.Error(), strings.TrimPrefix(srv.URL, "http://")) {
		t.Fatalf("unreachable: %v", err)
	}
	if obs.last() != "eth_call error" {
		t.Fatalf("observed %q", obs.last())
	}
	if _, err := eas.New(eas.Options{URL: "ws://127.0.0.1:1/" + key}); err == nil || strings.Contains(err.Error(), key) {
		t.Fatalf("ws URL: %v", err)
	}
}

func TestGetAttestationBoundsTheResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"jsonrpc":"2.0","id":1,"result":"0x`))
		chunk := []byte(strings.Repeat("00", 1<<15))
		for i := 0; i < 64; i++ { // 4 MiB of hex
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		w.Write([]byte(`"}`))
	}))
	defer srv.Close()
	c, err := eas.New(eas.Options{URL: srv.URL, MaxResponseBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetAttestation(context.Background(), common.Address{}, [32]byte{1})
	if err == nil || !strings.Contains(err.Error(), "size bound") {
		t.Fatalf("err %v, want the size bound", err)
	}
}
