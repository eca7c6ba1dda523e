package compliance

import (
	"reflect"
	"testing"
)

func TestSubjectFormsIncludeLowerAndEIP55(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		// EIP-55's own test vectors.
		{"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
			[]string{"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"}},
		{"0xFB6916095CA1DF60BB79CE92CE3EA74C37C5D359",
			[]string{"0xFB6916095CA1DF60BB79CE92CE3EA74C37C5D359", "0xfb6916095ca1df60bb79ce92ce3ea74c37c5d359", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"}},
		{"0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
			[]string{"0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB", "0xdbf03b407c01e7cd3cbea99509d93f8dddc8c6fb"}},
		{"not-an-address", []string{"not-an-address"}},
		{"0xzz", []string{"0xzz"}},
	}
	for _, tt := range tests {
		if got := subjectForms(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("subjectForms(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
