package astra

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The list records are flat objects. Reading them through encoding/json's
// reflection costs about as much as scanning them twice, which is most of a
// million-record history (SPEC 8); instead each wire type implements
// json.Unmarshaler with the members iterator below. The decoder has already
// validated the value's syntax before it hands the bytes over, so the
// iterator only has to find boundaries; it still checks every index and
// returns an error rather than panic. Keys match as encoding/json matches
// them: exactly, else case-insensitively; the last duplicate wins.

// wireError is a record member of the wrong kind; it fails the record and is
// never retried.
type wireError struct{ msg string }

func (e *wireError) Error() string { return e.msg }

var errNotObject = errors.New("not a JSON object")

// members iterates the members of one JSON object.
type members struct {
	b []byte
	i int
}

func newMembers(b []byte) (members, error) {
	m := members{b: b}
	m.ws()
	if m.i >= len(b) || b[m.i] != '{' {
		return m, &wireError{fmt.Sprintf("record is %s, %s", kindName(b), errNotObject)}
	}
	m.i++
	return m, nil
}

func (m *members) ws() {
	for m.i < len(m.b) {
		switch m.b[m.i] {
		case ' ', '\t', '\n', '\r':
			m.i++
		default:
			return
		}
	}
}

// next returns the next key (raw, without quotes) and value (raw JSON).
// ok is false at the end of the object.
func (m *members) next() (key []byte, esc bool, val []byte, ok bool, err error) {
	m.ws()
	if m.i < len(m.b) && m.b[m.i] == ',' {
		m.i++
		m.ws()
	}
	if m.i >= len(m.b) {
		return nil, false, nil, false, &wireError{"object ends early"}
	}
	if m.b[m.i] == '}' {
		m.i++
		return nil, false, nil, false, nil
	}
	kEnd, kEsc := endString(m.b, m.i)
	if kEnd < 0 {
		return nil, false, nil, false, &wireError{"malformed key"}
	}
	key, esc = m.b[m.i+1:kEnd-1], kEsc
	m.i = kEnd
	m.ws()
	if m.i >= len(m.b) || m.b[m.i] != ':' {
		return nil, false, nil, false, &wireError{"malformed member"}
	}
	m.i++
	m.ws()
	vEnd := endValue(m.b, m.i)
	if vEnd < 0 {
		return nil, false, nil, false, &wireError{"malformed value"}
	}
	val = m.b[m.i:vEnd]
	m.i = vEnd
	return key, esc, val, true, nil
}

// endString returns the index just past the string starting at b[i] (a
// quote) and whether it holds escapes; -1 when it is not closed.
func endString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return -1, false
	}
	esc := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			esc = true
			j++
		case '"':
			return j + 1, esc
		}
	}
	return -1, false
}

// endValue returns the index just past the value starting at b[i].
func endValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := endString(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := endString(b, j)
				if end < 0 {
					return -1
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default:
		j := i
		for j < len(b) {
			switch b[j] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return j
			}
			j++
		}
		return j
	}
}

// keyName is the member's key as a field name: keys are looked up exactly,
// else case-insensitively among names, as encoding/json does.
func keyName(key []byte, esc bool, names []string) string {
	if esc {
		var s string
		if json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &s) != nil {
			return ""
		}
		key = []byte(s)
	}
	for _, n := range names {
		if string(key) == n {
			return n
		}
	}
	for _, n := range names {
		if bytes.EqualFold(key, []byte(n)) {
			return n
		}
	}
	return ""
}

// plain reports whether a string's content can be taken as is: no escapes
// and valid UTF-8 (encoding/json would replace invalid bytes).
func plain(s []byte) bool {
	return bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s)
}

// stringValue reads a string member; null is "".
func stringValue(name string, v []byte) (string, error) {
	switch {
	case len(v) >= 2 && v[0] == '"':
		if plain(v[1 : len(v)-1]) {
			return string(v[1 : len(v)-1]), nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return "", &wireError{fmt.Sprintf("%s: %v", name, err)}
		}
		return s, nil
	case string(v) == "null":
		return "", nil
	}
	return "", &wireError{fmt.Sprintf("%s is %s, not a string", name, kindName(v))}
}

// rawValue copies a member kept as raw JSON; null is nil.
func rawValue(v []byte) json.RawMessage {
	if string(v) == "null" {
		return nil
	}
	return append(json.RawMessage(nil), v...)
}

func kindName(v []byte) string {
	v = bytes.TrimLeft(v, " \t\r\n")
	if len(v) == 0 {
		return "empty"
	}
	switch v[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return "a number"
	}
	return fmt.Sprintf("%q, not JSON", v[0])
}

// setter is a wire record that reads one member by its field name.
type setter interface {
	set(name string, v []byte) error
}

// readObject walks b's members, handing each known one to set. The first
// member error is kept and returned after the walk, so the fields that
// identify the record (its id) are read even when an earlier member fails.
func readObject(b []byte, names []string, w setter) error {
	m, err := newMembers(b)
	if err != nil {
		return err
	}
	var first error
	for {
		key, esc, val, ok, err := m.next()
		if err != nil {
			return err
		}
		if !ok {
			return first
		}
		if name := keyName(key, esc, names); name != "" {
			if err := w.set(name, val); err != nil && first == nil {
				first = err
			}
		}
	}
}

// text reads a jsonText member.
func text(v []byte) jsonText {
	var t jsonText
	t.read(v)
	return t
}
