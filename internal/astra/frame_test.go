package astra

import (
	"bytes"
	"encoding/json"
	"io"
	"testing"
	"testing/iotest"
)

// TestScanValueAcceptsExactlyWhatEncodingJSONAccepts checks the list
// framer's validator against json.Valid on values at the edges of the
// grammar.
func TestScanValueAcceptsExactlyWhatEncodingJSONAccepts(t *testing.T) {
	values := []string{
		`{}`, `[]`, `{"a":1}`, `{"a":[1,2,{"b":null}]}`, `"x"`, `"\u00e9\n\"\\\/"`, `"\u00zz"`, `"\q"`,
		"\"a\x01b\"", "\"caf\xe9\"", `0`, `-0`, `01`, `-`, `1.`, `.5`, `1.5e`, `1.5e+`, `1.5E-7`, `1e5`, `-1.25`,
		`true`, `tru`, `truex`, `nul`, `null`, `{"a" 1}`, `{"a":1,}`, `[1,]`, `[,1]`, `{a:1}`, `{"a":1 "b":2}`,
		`{"a":{"b":{"c":[[[]]]}}}`, ` {"a" : 1 } `, `[1 2]`, `{"a":tru}`,
	}
	for _, v := range values {
		want := json.Valid([]byte(v))
		// A value is followed by a delimiter in a list; add one so a
		// trailing number is complete.
		b := []byte(v + "]")
		i := skipWS(b, 0)
		end, err := scanValue(b, i, 0)
		got := err == nil && skipWS(b, end) == len(b)-1
		if got != want {
			t.Errorf("%q: scanner accepts %v, encoding/json %v (err %v)", v, got, want, err)
		}
	}
}

// TestListReaderFramesAcrossReadBoundaries feeds a list one byte per read,
// so every element and escape straddles a buffer refill.
func TestListReaderFramesAcrossReadBoundaries(t *testing.T) {
	body := ` [ {"a":"x\"y","n":-1.5e3}, {"b":[1,{"c":"\u00e9"}]} ,"s", 12 ] `
	lr := newListReader(iotest.OneByteReader(bytes.NewReader([]byte(body))))
	var got []string
	for {
		elem, ok, err := lr.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, string(elem))
	}
	want := []string{`{"a":"x\"y","n":-1.5e3}`, `{"b":[1,{"c":"\u00e9"}]}`, `"s"`, `12`}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("element %d: %q, want %q", i, got[i], want[i])
		}
	}
	if _, _, err := newListReader(bytes.NewReader([]byte(`[{"a":1}`))).next(); err != nil {
		t.Fatalf("first element of a cut list: %v", err)
	}
	lr = newListReader(bytes.NewReader([]byte(`[{"a":1}`)))
	lr.next()
	if _, _, err := lr.next(); err != io.ErrUnexpectedEOF {
		t.Errorf("cut list: %v, want io.ErrUnexpectedEOF", err)
	}
}
