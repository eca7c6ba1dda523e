package sim

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/rpc"
)

// DefaultEAS is the EAS contract address the chain simulator answers at for
// a chain without one configured: Base's (and Optimism's) EAS predeploy.
const DefaultEAS = "0x4200000000000000000000000000000000000021"

// AstralSchemaUID is the Astral location schema's uid, as the index's
// /api/v0/config reports it.
const AstralSchemaUID = "0xba4171c92572b1e4f241d044c32cdf083be9fd946b8766977558ca6378c824e2"

// ChainConfig configures the chain simulator.
type ChainConfig struct {
	// Astral is the index whose proofs the chain holds as attestations
	// (required).
	Astral *Astral
	// Contracts maps a chain name to its EAS address; chains not listed
	// answer at DefaultEAS.
	Contracts map[string]string
	// SchemaUID is the schema of every attestation (default AstralSchemaUID).
	SchemaUID string
}

// chainOverride is how the chain disagrees with the index about one uid.
type chainOverride struct {
	revokedAt uint64
	point     *[2]float64
	dropped   bool
	attester  string
}

// Chain simulates the JSON-RPC endpoints of the chains the Astral index
// reads: POST /{chain} answers eth_call of EAS's getAttestation(bytes32)
// from the proofs the Astral simulator holds, ABI-encoded as the EAS
// contract returns them (go-ethereum's rpc server and abi encoder do the
// wire). A test API under /_sim/chain/ makes the chain disagree with the
// index: revoke on chain only, move the on-chain location, drop an
// attestation, change its attester, or fail the endpoint. Safe for
// concurrent use.
type Chain struct {
	cfg     ChainConfig
	handler http.Handler
	servers map[string]*rpc.Server // one per chain the index supports

	mu        sync.Mutex
	overrides map[string]*chainOverride
	down      bool // answer 503
	rpcErr    bool // answer a JSON-RPC error
	calls     int
	srv       *http.Server
	ln        net.Listener
	closed    bool
}

// chainMaxOverrides bounds the override store, like astralMaxProofs.
const chainMaxOverrides = 100000

// NewChain builds the simulator. It does no I/O.
func NewChain(cfg ChainConfig) (*Chain, error) {
	if cfg.Astral == nil {
		return nil, errors.New("chain sim: an Astral simulator is required")
	}
	if cfg.SchemaUID == "" {
		cfg.SchemaUID = AstralSchemaUID
	}
	contracts := make(map[string]string, len(cfg.Contracts))
	for name, addr := range cfg.Contracts {
		contracts[strings.ToLower(name)] = addr
	}
	cfg.Contracts = contracts
	c := &Chain{cfg: cfg, servers: map[string]*rpc.Server{}, overrides: map[string]*chainOverride{}}
	for _, name := range cfg.Astral.cfg.Chains {
		srv := rpc.NewServer()
		if err := srv.RegisterName("eth", &chainService{c: c, chain: name}); err != nil {
			return nil, fmt.Errorf("chain sim: %w", err)
		}
		c.servers[strings.ToLower(name)] = srv
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{chain}", c.handleRPC)
	mux.HandleFunc("POST /_sim/chain/revoke", c.simUID(func(o *chainOverride, _ *http.Request) error {
		o.revokedAt = uint64(c.cfg.Astral.cfg.Now().Unix())
		return nil
	}))
	mux.HandleFunc("POST /_sim/chain/drop", c.simUID(func(o *chainOverride, _ *http.Request) error { o.dropped = true; return nil }))
	mux.HandleFunc("POST /_sim/chain/location", c.simUID(func(o *chainOverride, r *http.Request) error {
		lng, err1 := strconv.ParseFloat(r.URL.Query().Get("lng"), 64)
		lat, err2 := strconv.ParseFloat(r.URL.Query().Get("lat"), 64)
		if err := errors.Join(err1, err2); err != nil {
			return fmt.Errorf("lng, lat: %w", err)
		}
		o.point = &[2]float64{lng, lat}
		return nil
	}))
	mux.HandleFunc("POST /_sim/chain/attester", c.simUID(func(o *chainOverride, r *http.Request) error {
		a := r.URL.Query().Get("address")
		if !common.IsHexAddress(a) {
			return fmt.Errorf("address %q is not an address", a)
		}
		o.attester = a
		return nil
	}))
	mux.HandleFunc("POST /_sim/chain/down", func(w http.ResponseWriter, r *http.Request) {
		on := simFlag(r)
		c.SetDown(on)
		astralJSON(w, http.StatusOK, map[string]any{"down": on})
	})
	mux.HandleFunc("POST /_sim/chain/error", func(w http.ResponseWriter, r *http.Request) {
		on := simFlag(r)
		c.SetRPCError(on)
		astralJSON(w, http.StatusOK, map[string]any{"error": on})
	})
	c.handler = mux
	return c, nil
}

func simFlag(r *http.Request) bool {
	on := r.URL.Query().Get("on")
	return on == "1" || on == "true"
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves in the background.
func (c *Chain) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("chain sim: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: c.handler, ReadHeaderTimeout: 10 * time.Second}
	c.mu.Lock()
	if c.srv != nil || c.closed {
		c.mu.Unlock()
		ln.Close()
		return errors.New("chain sim: already started or closed")
	}
	c.srv, c.ln = srv, ln
	c.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// URL is the JSON-RPC endpoint of chain once started ("" before).
func (c *Chain) URL(chain string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln == nil {
		return ""
	}
	return "http://" + c.ln.Addr().String() + "/" + chain
}

// BaseURL is the simulator's root once started ("" before).
func (c *Chain) BaseURL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln == nil {
		return ""
	}
	return "http://" + c.ln.Addr().String()
}

// Handler serves the simulator without a listener.
func (c *Chain) Handler() http.Handler { return c.handler }

// Close stops the server. Safe to call twice.
func (c *Chain) Close() error {
	c.mu.Lock()
	srv := c.srv
	already := c.closed
	c.closed = true
	c.mu.Unlock()
	if already {
		return nil
	}
	for _, s := range c.servers {
		s.Stop()
	}
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return srv.Close()
	}
	return nil
}

func (c *Chain) override(uid string, f func(o *chainOverride)) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.overrides[uid]
	if !ok {
		if len(c.overrides) >= chainMaxOverrides {
			return false
		}
		o = &chainOverride{}
		c.overrides[uid] = o
	}
	f(o)
	return true
}

// RevokeOnChain revokes uid on chain only: the index still says not revoked.
func (c *Chain) RevokeOnChain(uid string) {
	c.override(uid, func(o *chainOverride) { o.revokedAt = uint64(c.cfg.Astral.cfg.Now().Unix()) })
}

// SetLocation makes the on-chain location of uid a point other than the
// index's.
func (c *Chain) SetLocation(uid string, lng, lat float64) {
	c.override(uid, func(o *chainOverride) { o.point = &[2]float64{lng, lat} })
}

// Drop removes uid from the chain: getAttestation returns the empty struct.
func (c *Chain) Drop(uid string) { c.override(uid, func(o *chainOverride) { o.dropped = true }) }

// SetAttester makes the on-chain attester of uid another address.
func (c *Chain) SetAttester(uid, address string) {
	c.override(uid, func(o *chainOverride) { o.attester = address })
}

// SetDown makes every RPC endpoint answer HTTP 503 (true) or serve again.
func (c *Chain) SetDown(down bool) {
	c.mu.Lock()
	c.down = down
	c.mu.Unlock()
}

// SetRPCError makes every eth_call answer a JSON-RPC error (true) or serve
// again.
func (c *Chain) SetRPCError(on bool) {
	c.mu.Lock()
	c.rpcErr = on
	c.mu.Unlock()
}

// Calls counts JSON-RPC requests received (the test API excluded).
func (c *Chain) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

func (c *Chain) simUID(f func(o *chainOverride, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		uid := r.URL.Query().Get("uid")
		if _, _, _, ok := c.cfg.Astral.lookup(uid); !ok {
			astralJSON(w, http.StatusNotFound, map[string]any{"status": "error", "message": "unknown uid"})
			return
		}
		var ferr error
		if !c.override(uid, func(o *chainOverride) { ferr = f(o, r) }) {
			astralJSON(w, http.StatusInsufficientStorage, map[string]any{"status": "error", "message": "override store full"})
			return
		}
		if ferr != nil {
			astralJSON(w, http.StatusBadRequest, map[string]any{"status": "error", "message": ferr.Error()})
			return
		}
		astralJSON(w, http.StatusOK, map[string]any{"uid": uid})
	}
}

func (c *Chain) handleRPC(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.calls++
	down := c.down
	c.mu.Unlock()
	srv, ok := c.servers[strings.ToLower(r.PathValue("chain"))]
	switch {
	case down:
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
	case !ok:
		http.Error(w, "unknown chain", http.StatusNotFound)
	default:
		srv.ServeHTTP(w, r)
	}
}

// chainService is the "eth" namespace of one chain's RPC server.
type chainService struct {
	c     *Chain
	chain string
}

// chainCallArgs is the call object of eth_call (the fields EAS reads need).
type chainCallArgs struct {
	From  *common.Address `json:"from"`
	To    *common.Address `json:"to"`
	Data  *hexutil.Bytes  `json:"data"`
	Input *hexutil.Bytes  `json:"input"`
	Gas   *hexutil.Uint64 `json:"gas"`
	Value *hexutil.Big    `json:"value"`
}

// errRevert is what the EVM answers a call to a function the contract lacks.
var errRevert = errors.New("execution reverted")

// Call is eth_call.
func (s *chainService) Call(_ context.Context, args chainCallArgs, _ *rpc.BlockNumberOrHash) (hexutil.Bytes, error) {
	s.c.mu.Lock()
	rpcErr := s.c.rpcErr
	s.c.mu.Unlock()
	if rpcErr {
		return nil, errors.New("simulated node error")
	}
	contract := DefaultEAS
	if a, ok := s.c.cfg.Contracts[strings.ToLower(s.chain)]; ok {
		contract = a
	}
	if args.To == nil || !strings.EqualFold(args.To.Hex(), common.HexToAddress(contract).Hex()) {
		return hexutil.Bytes{}, nil // no code at that address: an empty success
	}
	var input []byte
	switch {
	case args.Input != nil:
		input = *args.Input
	case args.Data != nil:
		input = *args.Data
	}
	if len(input) < 4 || !bytesEqual(input[:4], chainGetAttestation.ID) {
		return nil, errRevert
	}
	vals, err := chainGetAttestation.Inputs.Unpack(input[4:])
	if err != nil || len(vals) != 1 {
		return nil, errRevert
	}
	uid, _ := vals[0].([32]byte)
	att, err := s.c.attestation(s.chain, uid)
	if err != nil {
		return nil, err
	}
	return chainGetAttestation.Outputs.Pack(att)
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// chainAttestation mirrors EAS's Attestation struct for the encoder.
type chainAttestation struct {
	Uid            [32]byte //nolint:revive // the ABI's field name
	Schema         [32]byte
	Time           uint64
	ExpirationTime uint64
	RevocationTime uint64
	RefUID         [32]byte
	Recipient      common.Address
	Attester       common.Address
	Revocable      bool
	Data           []byte
}

// attestation is what EAS on chain holds for uid: the index's proof with
// the test API's overrides, or the zero struct for a uid it does not hold.
func (c *Chain) attestation(chain string, uid [32]byte) (chainAttestation, error) {
	key := "0x" + hex.EncodeToString(uid[:])
	spec, created, now, ok := c.cfg.Astral.lookup(key)
	c.mu.Lock()
	var o chainOverride
	if p := c.overrides[key]; p != nil {
		o = *p
	}
	c.mu.Unlock()
	empty := chainAttestation{Data: []byte{}}
	if !ok || o.dropped || !strings.EqualFold(spec.Chain, chain) {
		return empty, nil
	}
	if o.point != nil {
		spec.Lng, spec.Lat = o.point[0], o.point[1]
	}
	rec := astralRecord(spec, created, now)
	loc, _ := rec["location"].(string)
	locType, _ := rec["location_type"].(string)
	data, err := chainLocationArgs.Pack(big.NewInt(spec.EventTime.Unix()), "WGS84", locType, loc,
		[]string{"gps"}, [][]byte{{}}, []string{}, []string{}, spec.Memo)
	if err != nil {
		return empty, fmt.Errorf("chain sim: encode location: %w", err)
	}
	a := chainAttestation{
		Uid:       uid,
		Schema:    common.HexToHash(c.cfg.SchemaUID),
		Time:      uint64(created.Unix()),
		Recipient: common.HexToAddress(spec.Subject),
		Attester:  common.HexToAddress(spec.Prover),
		Revocable: true,
		Data:      data,
	}
	if o.attester != "" {
		a.Attester = common.HexToAddress(o.attester)
	}
	switch {
	case o.revokedAt != 0:
		a.RevocationTime = o.revokedAt
	case spec.Revoked:
		a.RevocationTime = uint64(now.Unix())
	}
	return a, nil
}

// The simulator's own ABI description, built with go-ethereum's type
// constructors from EAS's Common.sol and the Astral schema, independent of
// internal/eas, so the client is tested against a second encoding.
var (
	chainGetAttestation = func() abi.Method {
		b32, _ := abi.NewType("bytes32", "", nil)
		tuple, err := abi.NewType("tuple", "struct Attestation", []abi.ArgumentMarshaling{
			{Name: "uid", Type: "bytes32"}, {Name: "schema", Type: "bytes32"},
			{Name: "time", Type: "uint64"}, {Name: "expirationTime", Type: "uint64"},
			{Name: "revocationTime", Type: "uint64"}, {Name: "refUID", Type: "bytes32"},
			{Name: "recipient", Type: "address"}, {Name: "attester", Type: "address"},
			{Name: "revocable", Type: "bool"}, {Name: "data", Type: "bytes"},
		})
		if err != nil {
			panic(err)
		}
		return abi.NewMethod("getAttestation", "getAttestation", abi.Function, "view", false, false,
			abi.Arguments{{Name: "uid", Type: b32}}, abi.Arguments{{Type: tuple}})
	}()
	chainLocationArgs = func() abi.Arguments {
		var args abi.Arguments
		for _, t := range []string{"uint256", "string", "string", "string", "string[]", "bytes[]", "string[]", "string[]", "string"} {
			typ, err := abi.NewType(t, "", nil)
			if err != nil {
				panic(err)
			}
			args = append(args, abi.Argument{Type: typ})
		}
		return args
	}()
)
