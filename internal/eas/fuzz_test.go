package eas

import (
	"testing"
)

// FuzzDecodeAttestation feeds arbitrary return data to the decoders: they
// must answer with a value or an error, never panic, and whatever decodes
// must encode back to an attestation that decodes the same.
func FuzzDecodeAttestation(f *testing.F) {
	a, _ := fixture(f)
	full, err := getAttMethod.Outputs.Pack(a)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(full)
	f.Add(full[:len(full)/2])
	f.Add([]byte{})
	f.Add(make([]byte, 64))
	f.Add(a.Data)
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeAttestation(data)
		if err == nil {
			again, err := getAttMethod.Outputs.Pack(got)
			if err != nil {
				t.Fatalf("decoded attestation does not re-encode: %v", err)
			}
			if back, err := DecodeAttestation(again); err != nil || back.Uid != got.Uid || string(back.Data) != string(got.Data) {
				t.Fatalf("re-decode differs: %v", err)
			}
		}
		if l, err := DecodeLocation(data); err == nil && l.EventTimestamp == nil {
			t.Fatal("location decoded without an event timestamp")
		}
	})
}
