// Package eas reads attestations from an Ethereum Attestation Service
// contract over JSON-RPC (eth_call of getAttestation) and decodes the Astral
// location schema they carry. It reads; it never signs or sends a
// transaction. It decodes; the decision about an attestation is
// internal/compliance's.
//
// ABI encoding and decoding are go-ethereum's accounts/abi, the JSON-RPC
// client its rpc package: nothing here hand-rolls either. Every decoder is
// safe on hostile input: an error, never a panic.
package eas

import (
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
)

// contractABI is the part of the EAS contract's ABI this package calls:
// getAttestation(bytes32) returning the Attestation struct of EAS's
// Common.sol, in field order.
const contractABI = `[{
  "type": "function", "name": "getAttestation", "stateMutability": "view",
  "inputs": [{"name": "uid", "type": "bytes32"}],
  "outputs": [{"name": "", "type": "tuple", "internalType": "struct Attestation", "components": [
    {"name": "uid", "type": "bytes32"},
    {"name": "schema", "type": "bytes32"},
    {"name": "time", "type": "uint64"},
    {"name": "expirationTime", "type": "uint64"},
    {"name": "revocationTime", "type": "uint64"},
    {"name": "refUID", "type": "bytes32"},
    {"name": "recipient", "type": "address"},
    {"name": "attester", "type": "address"},
    {"name": "revocable", "type": "bool"},
    {"name": "data", "type": "bytes"}
  ]}]
}]`

// LocationSchema is the Astral location-proof schema, as EAS registers it.
const LocationSchema = "uint256 eventTimestamp,string srs,string locationType,string location,string[] recipeType,bytes[] recipePayload,string[] mediaType,string[] mediaData,string memo"

var (
	parsedABI    = mustABI(contractABI)
	getAttMethod = parsedABI.Methods["getAttestation"]
	locationArgs = mustLocationArgs()
)

func mustABI(s string) abi.ABI {
	a, err := abi.JSON(strings.NewReader(s))
	if err != nil {
		panic(fmt.Sprintf("eas: contract ABI does not parse: %v", err)) // a constant: caught by every test
	}
	return a
}

// mustLocationArgs builds the schema's argument list from LocationSchema, so
// the one string EAS registers is the one this package decodes with.
func mustLocationArgs() abi.Arguments {
	var args abi.Arguments
	for _, field := range strings.Split(LocationSchema, ",") {
		typ, name, ok := strings.Cut(strings.TrimSpace(field), " ")
		if !ok {
			panic("eas: bad location schema field " + field)
		}
		t, err := abi.NewType(typ, "", nil)
		if err != nil {
			panic(fmt.Sprintf("eas: location schema type %s: %v", typ, err))
		}
		args = append(args, abi.Argument{Name: name, Type: t})
	}
	return args
}

// Attestation is EAS's Attestation struct. Field names and types mirror the
// ABI tuple exactly (go-ethereum converts the decoded tuple into it).
type Attestation struct {
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

// Empty reports whether a is the zero attestation EAS returns for a uid it
// does not hold.
func (a Attestation) Empty() bool { return a.Uid == [32]byte{} }

// Location is the decoded Astral location schema.
type Location struct {
	EventTimestamp *big.Int // Unix seconds
	SRS            string
	LocationType   string
	Location       string
	RecipeType     []string
	RecipePayload  [][]byte
	MediaType      []string
	MediaData      []string
	Memo           string
}

// ErrNoContract is a call that returned no data at all: there is no contract
// at the address (an eth_call to an account without code succeeds empty).
var ErrNoContract = errors.New("eas: empty eth_call result (no contract at that address?)")

// PackGetAttestation is the calldata of getAttestation(uid).
func PackGetAttestation(uid [32]byte) []byte {
	data, err := parsedABI.Pack("getAttestation", uid)
	if err != nil {
		panic(fmt.Sprintf("eas: pack getAttestation: %v", err)) // a fixed-size argument cannot fail
	}
	return data
}

// Selector is getAttestation's 4-byte function selector.
func Selector() [4]byte {
	var s [4]byte
	copy(s[:], getAttMethod.ID)
	return s
}

// DecodeAttestation decodes getAttestation's return data.
func DecodeAttestation(ret []byte) (a Attestation, err error) {
	if len(ret) == 0 {
		return Attestation{}, ErrNoContract
	}
	defer func() {
		if r := recover(); r != nil { // the decoder is meant not to panic; fail closed if it does
			a, err = Attestation{}, fmt.Errorf("eas: decode attestation: %v", r)
		}
	}()
	out, err := getAttMethod.Outputs.Unpack(ret)
	if err != nil {
		return Attestation{}, fmt.Errorf("eas: decode attestation: %w", err)
	}
	if len(out) != 1 {
		return Attestation{}, fmt.Errorf("eas: decode attestation: %d values, want 1", len(out))
	}
	p, ok := abi.ConvertType(out[0], new(Attestation)).(*Attestation)
	if !ok {
		return Attestation{}, errors.New("eas: decode attestation: unexpected tuple shape")
	}
	return *p, nil
}

// DecodeLocation decodes an attestation's data with the Astral location
// schema.
func DecodeLocation(data []byte) (l Location, err error) {
	defer func() {
		if r := recover(); r != nil {
			l, err = Location{}, fmt.Errorf("eas: decode location: %v", r)
		}
	}()
	vals, err := locationArgs.Unpack(data)
	if err != nil {
		return Location{}, fmt.Errorf("eas: decode location: %w", err)
	}
	if len(vals) != len(locationArgs) {
		return Location{}, fmt.Errorf("eas: decode location: %d values, want %d", len(vals), len(locationArgs))
	}
	var ok [9]bool
	l.EventTimestamp, ok[0] = vals[0].(*big.Int)
	l.SRS, ok[1] = vals[1].(string)
	l.LocationType, ok[2] = vals[2].(string)
	l.Location, ok[3] = vals[3].(string)
	l.RecipeType, ok[4] = vals[4].([]string)
	l.RecipePayload, ok[5] = vals[5].([][]byte)
	l.MediaType, ok[6] = vals[6].([]string)
	l.MediaData, ok[7] = vals[7].([]string)
	l.Memo, ok[8] = vals[8].(string)
	for i, good := range ok {
		if !good {
			return Location{}, fmt.Errorf("eas: decode location: field %s has type %T", locationArgs[i].Name, vals[i])
		}
	}
	return l, nil
}

// EncodeLocation is the inverse of DecodeLocation (for tests and tools).
func EncodeLocation(l Location) ([]byte, error) {
	ts := l.EventTimestamp
	if ts == nil {
		ts = new(big.Int)
	}
	nz := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	rp := l.RecipePayload
	if rp == nil {
		rp = [][]byte{}
	}
	return locationArgs.Pack(ts, l.SRS, l.LocationType, l.Location, nz(l.RecipeType), rp, nz(l.MediaType), nz(l.MediaData), l.Memo)
}

// ParseUID reads a 0x-prefixed 32-byte hex uid.
func ParseUID(s string) ([32]byte, error) {
	var uid [32]byte
	b, err := parseHex(s, 32)
	if err != nil {
		return uid, fmt.Errorf("uid: %w", err)
	}
	copy(uid[:], b)
	return uid, nil
}

// ParseAddress reads a 0x-prefixed 20-byte hex address (any letter case).
func ParseAddress(s string) (common.Address, error) {
	b, err := parseHex(s, 20)
	if err != nil {
		return common.Address{}, fmt.Errorf("address: %w", err)
	}
	return common.BytesToAddress(b), nil
}

func parseHex(s string, n int) ([]byte, error) {
	s = strings.TrimSpace(s)
	if len(s) != 2+2*n || !(strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X")) {
		return nil, fmt.Errorf("want 0x and %d hex digits", 2*n)
	}
	b := common.FromHex(s)
	if len(b) != n || !isHex(s[2:]) {
		return nil, fmt.Errorf("want 0x and %d hex digits", 2*n)
	}
	return b, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
