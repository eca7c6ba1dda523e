package compliance

import (
	"encoding/hex"
	"strings"

	"golang.org/x/crypto/sha3"
)

// subjectForms are the spellings of an address the index may hold: the
// running server filters subject with an exact, case-sensitive match, while
// EVM addresses are written both in lower case and in EIP-55 mixed case. The
// gate asks for each and compares case-insensitively itself.
func subjectForms(s string) []string {
	forms := []string{s}
	add := func(f string) {
		for _, g := range forms {
			if g == f {
				return
			}
		}
		forms = append(forms, f)
	}
	if len(s) != 42 || !strings.HasPrefix(strings.ToLower(s), "0x") {
		return forms
	}
	lower := strings.ToLower(s)
	if _, err := hex.DecodeString(lower[2:]); err != nil {
		return forms
	}
	add(lower)
	add(checksumAddress(lower[2:]))
	return forms
}

// checksumAddress is the EIP-55 spelling of a 40-hex-digit address: a
// letter is upper case where the matching nibble of keccak256(lower) >= 8.
func checksumAddress(lowerHex string) string {
	h := sha3.NewLegacyKeccak256()
	h.Write([]byte(lowerHex))
	sum := h.Sum(nil)
	out := []byte("0x" + lowerHex)
	for i := 0; i < len(lowerHex); i++ {
		c := lowerHex[i]
		if c < 'a' || c > 'f' {
			continue
		}
		nibble := sum[i/2]
		if i%2 == 0 {
			nibble >>= 4
		}
		if nibble&0xf >= 8 {
			out[i+2] = c - 'a' + 'A'
		}
	}
	return string(out)
}
