package eas

import (
	"bytes"
	"encoding/hex"
	"math/big"
	"reflect"
	"testing"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// easReturnType builds the return type of EAS's getAttestation from the
// ABI's own type constructors, independently of the package's ABI text.
func easReturnType(t testing.TB) abi.Arguments {
	t.Helper()
	tuple, err := abi.NewType("tuple", "struct Attestation", []abi.ArgumentMarshaling{
		{Name: "uid", Type: "bytes32"},
		{Name: "schema", Type: "bytes32"},
		{Name: "time", Type: "uint64"},
		{Name: "expirationTime", Type: "uint64"},
		{Name: "revocationTime", Type: "uint64"},
		{Name: "refUID", Type: "bytes32"},
		{Name: "recipient", Type: "address"},
		{Name: "attester", Type: "address"},
		{Name: "revocable", Type: "bool"},
		{Name: "data", Type: "bytes"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return abi.Arguments{{Type: tuple}}
}

// fixture is a known Astral attestation: an EU point, Base's schema uid.
func fixture(t testing.TB) (Attestation, Location) {
	t.Helper()
	loc := Location{
		EventTimestamp: big.NewInt(1765000000),
		SRS:            "WGS84",
		LocationType:   "point",
		Location:       `{"type":"Point","coordinates":[10,47.5]}`,
		RecipeType:     []string{"gps"},
		RecipePayload:  [][]byte{{0xde, 0xad}},
		MediaType:      []string{},
		MediaData:      []string{},
		Memo:           "fixture",
	}
	data, err := EncodeLocation(loc)
	if err != nil {
		t.Fatal(err)
	}
	a := Attestation{
		Time: 1765000100, ExpirationTime: 0, RevocationTime: 0,
		Recipient: common.HexToAddress("0xabcdef1234567890abcdef1234567890abcdef12"),
		Attester:  common.HexToAddress("0x1111111111111111111111111111111111111111"),
		Revocable: true, Data: data,
	}
	copy(a.Uid[:], common.FromHex("0x1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef"))
	copy(a.Schema[:], common.FromHex("0xba4171c92572b1e4f241d044c32cdf083be9fd946b8766977558ca6378c824e2"))
	return a, loc
}

func TestSelectorIsKeccakOfSignature(t *testing.T) {
	want := crypto.Keccak256([]byte("getAttestation(bytes32)"))[:4]
	got := Selector()
	if !bytes.Equal(got[:], want) || hex.EncodeToString(want) != "a3112a64" {
		t.Fatalf("selector %x, keccak %x, want a3112a64", got, want)
	}
	uid := [32]byte{31: 7}
	call := PackGetAttestation(uid)
	if len(call) != 36 || !bytes.Equal(call[:4], want) || !bytes.Equal(call[4:], uid[:]) {
		t.Fatalf("calldata %x", call)
	}
}

// TestDecodeAttestationRoundTripsEASReturn packs a known attestation with the
// ABI (as the contract's `returns (Attestation memory)` does: one dynamic
// tuple behind a 0x20 offset) and decodes it back field for field.
func TestDecodeAttestationRoundTripsEASReturn(t *testing.T) {
	a, loc := fixture(t)
	type easTuple struct {
		Uid            [32]byte
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
	ret, err := easReturnType(t).Pack(easTuple(a))
	if err != nil {
		t.Fatal(err)
	}
	// The layout EAS returns: offset 0x20, then ten head words, then data.
	if w := new(big.Int).SetBytes(ret[:32]); w.Int64() != 32 {
		t.Fatalf("first word %v, want the tuple offset 0x20", w)
	}
	if !bytes.Equal(ret[32:64], a.Uid[:]) || !bytes.Equal(ret[64:96], a.Schema[:]) {
		t.Fatalf("uid/schema words not where the ABI puts them")
	}
	if got := new(big.Int).SetBytes(ret[32+9*32 : 32+10*32]).Int64(); got != 10*32 {
		t.Fatalf("data offset %d, want 320 (after ten head words)", got)
	}
	got, err := DecodeAttestation(ret)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Fatalf("decoded %+v\nwant    %+v", got, a)
	}
	gl, err := DecodeLocation(got.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gl, loc) {
		t.Fatalf("location %+v\nwant     %+v", gl, loc)
	}
}

func TestDecodeAttestationRefusesBadData(t *testing.T) {
	a, _ := fixture(t)
	full, err := getAttMethod.Outputs.Pack(a)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty (no contract)", nil},
		{"one word", full[:32]},
		{"truncated data", full[:len(full)-40]},
		{"offset past end", append([]byte{}, append(bytes.Repeat([]byte{0}, 31), 0xff)...)},
		{"odd length", full[:len(full)-1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeAttestation(tt.data); err == nil {
				t.Fatal("decoded")
			}
		})
	}
	if _, err := DecodeAttestation(nil); err != ErrNoContract {
		t.Fatalf("empty: %v, want ErrNoContract", err)
	}
}

func TestDecodeAttestationOfUnknownUIDIsEmpty(t *testing.T) {
	ret, err := getAttMethod.Outputs.Pack(Attestation{Data: []byte{}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := DecodeAttestation(ret)
	if err != nil || !a.Empty() {
		t.Fatalf("got %+v, %v; want the empty attestation", a, err)
	}
}

func TestDecodeLocationRefusesOtherSchema(t *testing.T) {
	for _, data := range [][]byte{nil, {1, 2, 3}, bytes.Repeat([]byte{0xff}, 64)} {
		if _, err := DecodeLocation(data); err == nil {
			t.Fatalf("decoded %x", data)
		}
	}
}

func TestParseUIDAndAddress(t *testing.T) {
	if _, err := ParseUID("0x" + "ab"); err == nil {
		t.Fatal("short uid parsed")
	}
	if _, err := ParseUID("0x" + string(bytes.Repeat([]byte("g"), 64))); err == nil {
		t.Fatal("non-hex uid parsed")
	}
	if u, err := ParseUID("0x" + string(bytes.Repeat([]byte("A"), 64))); err != nil || u[0] != 0xaa {
		t.Fatalf("uid: %x %v", u, err)
	}
	if _, err := ParseAddress("0x4200000000000000000000000000000000000021"); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseAddress("4200000000000000000000000000000000000021"); err == nil {
		t.Fatal("address without 0x parsed")
	}
}
