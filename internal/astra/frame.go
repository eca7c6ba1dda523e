package astra

import (
	"errors"
	"fmt"
	"io"
)

// listReader frames a JSON array body into its elements, validating each
// element's syntax as strictly as encoding/json does, in one pass over the
// bytes. encoding/json's Decoder scans every element twice through a
// byte-at-a-time state machine (once to frame it, once more to hand it to an
// Unmarshaler), which was two thirds of the cost of a million-record history
// (SPEC 8); here strings, the bulk of a record, are scanned with a tight loop.
// Memory is one buffer, bounded by maxRecordBytes plus one read chunk.
type listReader struct {
	r     io.Reader
	buf   []byte
	off   int   // start of unconsumed bytes
	base  int64 // body offset of buf[0], for error messages
	rerr  error // the reader's error (io.EOF at the end)
	state int
}

const (
	lrStart = iota // before '['
	lrFirst        // after '[': an element or ']'
	lrNext         // after an element: ',' or ']'
	lrDone         // after ']'
)

// maxDepth bounds nesting inside one element (encoding/json allows 10000;
// the records are flat, and metadata nests two levels).
const maxDepth = 512

// errShort is internal: the buffer ends before the value does.
var errShort = errors.New("short buffer")

func newListReader(r io.Reader) *listReader {
	return &listReader{r: r, buf: make([]byte, 0, readChunk)}
}

// fill reads more bytes, keeping buf[off:]. It fails over the record bound.
func (l *listReader) fill() error {
	if l.rerr != nil {
		return l.rerr
	}
	if l.off > 0 {
		n := copy(l.buf, l.buf[l.off:])
		l.buf = l.buf[:n]
		l.base += int64(l.off)
		l.off = 0
	}
	if len(l.buf) > maxRecordBytes {
		return fmt.Errorf("%w (%d bytes)", errTooLarge, maxRecordBytes)
	}
	if cap(l.buf)-len(l.buf) < readChunk {
		nb := make([]byte, len(l.buf), 2*cap(l.buf)+readChunk)
		copy(nb, l.buf)
		l.buf = nb
	}
	n, err := l.r.Read(l.buf[len(l.buf):cap(l.buf)])
	l.buf = l.buf[:len(l.buf)+n]
	if err != nil {
		l.rerr = err
		if n > 0 {
			return nil
		}
		return err
	}
	return nil
}

// syntax is the error for invalid JSON at buffer index i.
func (l *listReader) syntax(i int, what string) error {
	return &wireError{fmt.Sprintf("invalid JSON at byte %d: %s", l.base+int64(i), what)}
}

// delim skips whitespace and returns the next byte, filling as needed.
// io.ErrUnexpectedEOF when the body ends.
func (l *listReader) delim() (byte, error) {
	for {
		for l.off < len(l.buf) {
			switch c := l.buf[l.off]; c {
			case ' ', '\t', '\n', '\r':
				l.off++
			default:
				return c, nil
			}
		}
		if err := l.fill(); err != nil {
			if err == io.EOF {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
}

// next returns the next element's bytes, valid until the following call;
// ok is false after the closing ']' when nothing but whitespace follows.
func (l *listReader) next() (elem []byte, ok bool, err error) {
	for {
		switch l.state {
		case lrDone:
			return nil, false, nil
		case lrStart:
			c, err := l.delim()
			if err != nil {
				return nil, false, err
			}
			if c != '[' {
				return nil, false, &wireError{fmt.Sprintf("response is not a JSON array (starts with %s)", kindName(l.buf[l.off:]))}
			}
			l.off++
			l.state = lrFirst
			c, err = l.delim()
			if err != nil {
				return nil, false, err
			}
			if c == ']' {
				l.off++
				return nil, false, l.end()
			}
		case lrNext:
			c, err := l.delim()
			if err != nil {
				return nil, false, err
			}
			switch c {
			case ']':
				l.off++
				return nil, false, l.end()
			case ',':
				l.off++
			default:
				return nil, false, l.syntax(l.off, "expected ',' or ']' after an element")
			}
			if _, err := l.delim(); err != nil {
				return nil, false, err
			}
		case lrFirst:
			// delim has positioned off at the element.
		}
		for {
			end, err := scanValue(l.buf, l.off, 0)
			if err == nil {
				elem = l.buf[l.off:end]
				l.off = end
				l.state = lrNext
				return elem, true, nil
			}
			if err != errShort {
				if e, ok := err.(*scanError); ok {
					return nil, false, l.syntax(e.at, e.what)
				}
				return nil, false, err
			}
			if err := l.fill(); err != nil {
				if err == io.EOF {
					return nil, false, io.ErrUnexpectedEOF
				}
				return nil, false, err
			}
		}
	}
}

// end requires the body to end after the closing bracket.
func (l *listReader) end() error {
	l.state = lrDone
	for {
		for ; l.off < len(l.buf); l.off++ {
			switch l.buf[l.off] {
			case ' ', '\t', '\n', '\r':
			default:
				return &wireError{"data after the end of the response"}
			}
		}
		if err := l.fill(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

type scanError struct {
	at   int
	what string
}

func (e *scanError) Error() string { return e.what }

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipWS(b []byte, i int) int {
	for i < len(b) && isWS(b[i]) {
		i++
	}
	return i
}

// scanValue validates the JSON value starting at b[i] and returns the index
// just past it; errShort when b ends first.
func scanValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return 0, errShort
	}
	switch c := b[i]; {
	case c == '"':
		return scanString(b, i)
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return 0, &scanError{i, "nested too deeply"}
		}
		return scanComposite(b, i, depth+1)
	case c == '-' || (c >= '0' && c <= '9'):
		return scanNumber(b, i)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	default:
		return 0, &scanError{i, fmt.Sprintf("unexpected %q", c)}
	}
}

func scanComposite(b []byte, i, depth int) (int, error) {
	obj := b[i] == '{'
	closer := byte(']')
	if obj {
		closer = '}'
	}
	i = skipWS(b, i+1)
	if i >= len(b) {
		return 0, errShort
	}
	if b[i] == closer {
		return i + 1, nil
	}
	for {
		var err error
		if obj {
			if b[i] != '"' {
				return 0, &scanError{i, "expected a string key"}
			}
			if i, err = scanString(b, i); err != nil {
				return 0, err
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return 0, errShort
			}
			if b[i] != ':' {
				return 0, &scanError{i, "expected ':' after a key"}
			}
			i = skipWS(b, i+1)
		}
		if i, err = scanValue(b, i, depth); err != nil {
			return 0, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return 0, errShort
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
			if i >= len(b) {
				return 0, errShort
			}
		case closer:
			return i + 1, nil
		default:
			return 0, &scanError{i, fmt.Sprintf("expected ',' or %q", closer)}
		}
	}
}

func scanString(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		c := b[j]
		switch {
		case c == '"':
			return j + 1, nil
		case c < 0x20:
			return 0, &scanError{j, "control character in a string"}
		case c == '\\':
			if j+1 >= len(b) {
				return 0, errShort
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+5 >= len(b) {
					return 0, errShort
				}
				for k := j + 2; k < j+6; k++ {
					if !isHex(b[k]) {
						return 0, &scanError{k, "invalid \\u escape"}
					}
				}
				j += 5
			default:
				return 0, &scanError{j, "invalid escape"}
			}
		}
	}
	return 0, errShort
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// scanNumber follows the JSON number grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?; a number at the end of the
// buffer is short, since more digits may follow.
func scanNumber(b []byte, i int) (int, error) {
	j := i
	if b[j] == '-' {
		j++
	}
	if j >= len(b) {
		return 0, errShort
	}
	switch {
	case b[j] == '0':
		j++
	case b[j] >= '1' && b[j] <= '9':
		for j < len(b) && isDigit(b[j]) {
			j++
		}
	default:
		return 0, &scanError{j, "invalid number"}
	}
	if j < len(b) && b[j] == '.' {
		j++
		if j >= len(b) {
			return 0, errShort
		}
		if !isDigit(b[j]) {
			return 0, &scanError{j, "invalid number"}
		}
		for j < len(b) && isDigit(b[j]) {
			j++
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if j >= len(b) {
			return 0, errShort
		}
		if !isDigit(b[j]) {
			return 0, &scanError{j, "invalid number"}
		}
		for j < len(b) && isDigit(b[j]) {
			j++
		}
	}
	if j >= len(b) {
		return 0, errShort
	}
	return j, nil
}

func scanLiteral(b []byte, i int, lit string) (int, error) {
	for k := 0; k < len(lit); k++ {
		if i+k >= len(b) {
			return 0, errShort
		}
		if b[i+k] != lit[k] {
			return 0, &scanError{i + k, "invalid literal"}
		}
	}
	return i + len(lit), nil
}
