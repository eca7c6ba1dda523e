package astra

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/shopspring/decimal"
)

// This file holds the wire shapes of the REST answers and their reading
// (SPEC 2): amounts are decimal strings decoded exactly, and a JSON number is
// taken from its literal text, never through float64; an amount or a
// required field that does not parse fails its record, it never becomes a
// zero; null strings become "".

// textKind is what a jsonText field held on the wire.
type textKind uint8

const (
	textAbsent textKind = iota // absent or null
	textString
	textNumber
	textOther // object, array or boolean
)

// jsonText reads a field as text: a string's content, or a number's literal
// exactly as sent. Other JSON kinds are kept as their raw text so the record
// error can show them; they never decode as a value.
type jsonText struct {
	s    string
	kind textKind
}

func (t *jsonText) UnmarshalJSON(b []byte) error {
	t.read(b)
	return nil
}

func (t *jsonText) read(b []byte) {
	switch {
	case len(b) == 0 || string(b) == "null":
		*t = jsonText{}
	case b[0] == '"' && len(b) >= 2:
		t.kind = textString
		if plain(b[1 : len(b)-1]) {
			t.s = string(b[1 : len(b)-1])
		} else if err := json.Unmarshal(b, &t.s); err != nil {
			t.s, t.kind = string(b), textOther
		}
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		t.s, t.kind = string(b), textNumber
	default:
		t.s, t.kind = string(b), textOther
	}
}

// shown is the value as an error message quotes it, cut to a readable length.
func (t jsonText) shown() string {
	s := t.s
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	if t.kind == textString {
		return strconv.Quote(s)
	}
	return s
}

// decimalField parses a required decimal: a decimal string, or a JSON number
// read from its literal. It holds REST amounts to the quote frame's bounds
// (quote.go): text of at most maxNumberLen characters, so that a hostile
// literal of a megabyte of digits is refused before big-number parsing
// costs seconds of CPU, and an exponent within ±maxExponent, so that
// "1e-5000" (seven characters, which the decimal package accepts) cannot
// make every later comparison rescale to five thousand digits.
func decimalField(name string, t jsonText) (decimal.Decimal, error) {
	switch t.kind {
	case textAbsent:
		return decimal.Decimal{}, fmt.Errorf("%s is missing", name)
	case textString, textNumber:
		if len(t.s) > maxNumberLen {
			return decimal.Decimal{}, fmt.Errorf("%s %s is %d characters long; a decimal has at most %d",
				name, t.shown(), len(t.s), maxNumberLen)
		}
		if d, err := decimal.NewFromString(t.s); err == nil {
			if e := d.Exponent(); e < -maxExponent || e > maxExponent {
				return decimal.Decimal{}, fmt.Errorf("%s %s is out of range (exponent %d beyond ±%d)", name, t.shown(), e, maxExponent)
			}
			return d, nil
		}
	}
	return decimal.Decimal{}, fmt.Errorf("%s %s is not a decimal", name, t.shown())
}

// idField reads an identifier sent as a string or a number; "" when null.
func idField(name string, t jsonText, required bool) (string, error) {
	switch t.kind {
	case textString, textNumber:
		if t.s != "" {
			return t.s, nil
		}
	case textOther:
		return "", fmt.Errorf("%s %s is not an identifier", name, t.shown())
	}
	if required {
		return "", fmt.Errorf("%s is missing", name)
	}
	return "", nil
}

// intField reads an integer sent as a number or a numeric string; nil when
// null or absent.
func intField(name string, t jsonText) (*int64, error) {
	if t.kind == textAbsent {
		return nil, nil
	}
	if t.kind == textString || t.kind == textNumber {
		if n, err := strconv.ParseInt(t.s, 10, 64); err == nil {
			return &n, nil
		}
	}
	return nil, fmt.Errorf("%s %s is not an integer", name, t.shown())
}

// isoLayouts are the ISO 8601 forms the reference's "ISO 8601 timestamp"
// may take: RFC 3339 first, then a numeric zone without a colon, a space
// instead of the T (as databases print), and no zone at all, read as UTC
// (the desk's samples are all UTC).
var isoLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z0700",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999",
}

// timeField parses an ISO 8601 timestamp (see isoLayouts). An empty optional
// one is the zero time.
func timeField(name, s string, required bool) (time.Time, error) {
	if s == "" {
		if required {
			return time.Time{}, fmt.Errorf("%s is missing", name)
		}
		return time.Time{}, nil
	}
	for _, layout := range isoLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q is not an ISO 8601 timestamp", name, s)
}

// rawObject keeps metadata as sent; null becomes nil.
func rawObject(m json.RawMessage) json.RawMessage {
	if len(m) == 0 || string(m) == "null" {
		return nil
	}
	return m
}

// recordError is a list record that does not read.
type recordError struct {
	Endpoint string
	Index    int // position in the list, from 0
	ID       string
	Err      error
}

func (e *recordError) Error() string {
	if e.ID == "" {
		return fmt.Sprintf("astra %s: record at index %d: %v", e.Endpoint, e.Index, e.Err)
	}
	return fmt.Sprintf("astra %s: record at index %d (id %q): %v", e.Endpoint, e.Index, e.ID, e.Err)
}

func (e *recordError) Unwrap() error { return e.Err }

// decodeFault reports whether a JSON decoder error is the desk's doing
// (syntax, wrong kinds, over a bound) rather than the connection's.
func decodeFault(err error) bool {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var wire *wireError
	return errors.As(err, &syn) || errors.As(err, &typ) || errors.As(err, &wire) || errors.Is(err, errTooLarge)
}

// streamErr classifies an error of the JSON decoder reading a body: what
// the desk sent wrong is permanent; everything else is the connection
// failing (a reset, a timeout, a body cut short) and may be retried while
// nothing was delivered.
func streamErr(endpoint, where string, err error) error {
	switch {
	case decodeFault(err):
		return &permanent{fmt.Errorf("astra %s: %s: %w", endpoint, where, err)}
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("astra %s: response truncated at %s: %w", endpoint, where, io.ErrUnexpectedEOF)
	default:
		return fmt.Errorf("astra %s: reading %s: %w", endpoint, where, err)
	}
}

// openDelim reads the opening '[' or '{' of a body.
func openDelim(dec *json.Decoder, endpoint string, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return streamErr(endpoint, "start of response", err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return &permanent{fmt.Errorf("astra %s: response is not a JSON %s (starts with %s)", endpoint, delimName(want), tokenKind(tok))}
	}
	return nil
}

// closeDelim reads the closing delimiter and requires the body to end there.
func closeDelim(dec *json.Decoder, endpoint string, n int) error {
	where := fmt.Sprintf("end of list after %d records", n)
	if _, err := dec.Token(); err != nil {
		return streamErr(endpoint, where, err)
	}
	tok, err := dec.Token()
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return streamErr(endpoint, where, err)
	}
	return &permanent{fmt.Errorf("astra %s: data after the end of the response (%s)", endpoint, tokenKind(tok))}
}

func delimName(d json.Delim) string {
	if d == '[' {
		return "array"
	}
	return "object"
}

// tokenKind names a token without echoing its content.
func tokenKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		return strconv.Quote(v.String())
	case string:
		return "a string"
	case nil:
		return "null"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}

// streamList decodes a JSON array answer record by record, converting each
// wire record W and handing it to fn; memory is one record, never the list.
// A retry happens only while fn has not been called.
func streamList[W any, PW interface {
	*W
	UnmarshalJSON([]byte) error
}, T any](c *Client, ctx context.Context, endpoint string, id func(*W) string, conv func(*W) (T, error), fn func(T) error) error {
	delivered := false
	read := func(body *bodyReader) error {
		lr := newListReader(body)
		var zero W
		for n := 0; ; n++ {
			elem, ok, err := lr.next()
			if err != nil {
				return streamErr(endpoint, fmt.Sprintf("record at index %d", n), err)
			}
			if !ok {
				return nil
			}
			w := zero
			if err := PW(&w).UnmarshalJSON(elem); err != nil {
				return &permanent{&recordError{Endpoint: endpoint, Index: n, ID: id(&w), Err: err}}
			}
			t, err := conv(&w)
			if err != nil {
				return &permanent{&recordError{Endpoint: endpoint, Index: n, ID: id(&w), Err: err}}
			}
			delivered = true
			if err := fn(t); err != nil {
				return &callerError{err}
			}
		}
	}
	return c.get(ctx, endpoint, c.path(endpoint), read, func() bool { return !delivered })
}
