package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"gopkg.in/yaml.v3"
)

// checker walks the YAML node tree and collects every problem; it never stops
// at the first one.
type checker struct {
	problems []Problem
}

func (c *checker) addf(path string, line int, format string, args ...any) {
	c.problems = append(c.problems, Problem{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func index(parent string, i int) string { return fmt.Sprintf("%s[%d]", parent, i) }

// resolve follows YAML aliases to the node they name.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "nothing"
		}
		return "a string"
	}
	return "something else"
}

// entry is one key of a YAML mapping.
type entry struct {
	key     string
	keyLine int
	val     *yaml.Node
}

// entries lists a mapping's keys, reporting non-scalar, merge and duplicate
// keys. ok is false when n is not a mapping (reported).
func (c *checker) entries(n *yaml.Node, path string) (es []entry, ok bool) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		c.addf(path, n.Line, "must be a mapping, found %s", kindName(n))
		return nil, false
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			c.addf(path, k.Line, "keys must be plain strings")
			continue
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			c.addf(path, k.Line, "YAML merge keys (<<) are not supported")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			c.addf(join(path, k.Value), k.Line, "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		es = append(es, entry{key: k.Value, keyLine: k.Line, val: resolve(v)})
	}
	return es, true
}

// section is one YAML mapping with a fixed set of keys. Unknown keys are
// reported when it is made; the typed getters report bad values.
type section struct {
	c     *checker
	path  string
	line  int  // where a missing key is reported: the line of the section's own key
	bad   bool // present but not a mapping: missing keys are not reported again
	vals  map[string]*yaml.Node
	lines map[string]int // key lines
}

// section reads the mapping n (nil or null: an absent, empty section) at path.
func (c *checker) section(n *yaml.Node, path string, line int, known ...string) *section {
	s := &section{c: c, path: path, line: line, vals: map[string]*yaml.Node{}, lines: map[string]int{}}
	if isNull(resolve(n)) {
		return s
	}
	es, ok := c.entries(n, path)
	if !ok {
		s.bad = true
		return s
	}
	for _, e := range es {
		if !contains(known, e.key) {
			c.addf(join(path, e.key), e.keyLine, "%s", unknownKeyMsg(path, e.key, known))
			continue
		}
		s.lines[e.key] = e.keyLine
		if !isNull(e.val) {
			s.vals[e.key] = e.val
		}
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// normKey folds a key for loose comparison: "API-Key" and "api_key" are alike.
func normKey(k string) string {
	return strings.NewReplacer("_", "", "-", "", ".", "", " ", "").Replace(strings.ToLower(k))
}

// unknownKeyMsg explains an unknown key; a key that looks like an inline
// secret gets the message that says where secrets belong.
func unknownKeyMsg(path, key string, known []string) string {
	k := normKey(key)
	for _, kn := range known {
		if nk := normKey(kn); nk == k || (len(k) > 3 && editDistance(nk, k) <= 2) {
			return fmt.Sprintf("unknown key %q (did you mean %q?)", key, kn)
		}
	}
	if path == "" || path == "astra" {
		if strings.Contains(k, "key") || strings.Contains(k, "secret") {
			return "the API key never goes in the policy file: use api_key_env or api_key_file"
		}
	}
	if (path == "" || path == "http") && (strings.Contains(k, "token") || strings.Contains(k, "password")) {
		return "the admin token never goes in the policy file: use admin_token_env"
	}
	return fmt.Sprintf("unknown key %q", key)
}

// at returns the path of key and the line to report it at: its own line when
// present, the section's line when absent.
func (s *section) at(key string) (string, int) {
	if l, ok := s.lines[key]; ok {
		return join(s.path, key), l
	}
	return join(s.path, key), s.line
}

func (s *section) has(key string) bool { _, ok := s.vals[key]; return ok }

// sub reads the mapping under key as a section.
func (s *section) sub(key string, known ...string) *section {
	path, line := s.at(key)
	return s.c.section(s.vals[key], path, line, known...)
}

// missing reports a required key that is absent.
func (s *section) missing(key string) {
	if s.bad {
		return
	}
	path, line := s.at(key)
	s.c.addf(path, line, "is required")
}

// scalar returns the scalar under key, reporting any other kind.
func (s *section) scalar(key string) (*yaml.Node, bool) {
	n, ok := s.vals[key]
	if !ok {
		return nil, false
	}
	if n.Kind != yaml.ScalarNode {
		path, _ := s.at(key)
		s.c.addf(path, n.Line, "must be a single value, found %s", kindName(n))
		return nil, false
	}
	return n, true
}

// str returns the text under key exactly as written ("" when absent).
func (s *section) str(key string) string {
	n, ok := s.scalar(key)
	if !ok {
		return ""
	}
	return n.Value
}

// requiredStr is str that reports an absent or empty value.
func (s *section) requiredStr(key string) string {
	n, ok := s.vals[key]
	if !ok {
		s.missing(key)
		return ""
	}
	v := s.str(key)
	if n.Kind == yaml.ScalarNode && strings.TrimSpace(v) == "" {
		path, _ := s.at(key)
		s.c.addf(path, n.Line, "must not be empty")
	}
	return v
}

// strOr is str with a default for an absent key; a present empty value is
// reported.
func (s *section) strOr(key, def string) string {
	if !s.has(key) {
		return def
	}
	return s.requiredStr(key)
}

func (s *section) boolean(key string) bool {
	n, ok := s.scalar(key)
	if !ok {
		return false
	}
	if n.ShortTag() != "!!bool" {
		path, _ := s.at(key)
		s.c.addf(path, n.Line, "must be true or false")
		return false
	}
	var b bool
	_ = n.Decode(&b)
	return b
}

// durRule says which durations are allowed.
type durRule int

const (
	nonNegative durRule = iota
	positive
)

// duration reads a Go duration string; def applies when the key is absent.
func (s *section) duration(key string, def time.Duration, rule durRule) time.Duration {
	n, ok := s.scalar(key)
	if !ok {
		return def
	}
	path, _ := s.at(key)
	d, err := time.ParseDuration(n.Value)
	if err != nil {
		s.c.addf(path, n.Line, "%q is not a duration (Go syntax, e.g. \"500ms\", \"15m\", \"24h\")", n.Value)
		return def
	}
	switch {
	case rule == positive && d <= 0:
		s.c.addf(path, n.Line, "must be positive, got %s", n.Value)
	case d < 0:
		s.c.addf(path, n.Line, "must not be negative, got %s", n.Value)
	}
	return d
}

// amountRule says which decimal amounts are allowed.
type amountRule int

const (
	optionalPositive amountRule = iota // absent: zero; present: > 0
	requiredPositive                   // present and > 0
	optionalNonNeg                     // absent: zero; present: >= 0
)

// decimalText is a plain decimal: no exponent, no thousands separator.
var decimalText = regexp.MustCompile(`^[+-]?[0-9]+(\.[0-9]+)?$`)

func parseDecimal(text string) (decimal.Decimal, bool) {
	if !decimalText.MatchString(text) {
		return decimal.Zero, false
	}
	d, err := decimal.NewFromString(text)
	return d, err == nil
}

// amount reads a decimal string under key.
func (s *section) amount(key string, rule amountRule) decimal.Decimal {
	if !s.has(key) {
		if rule == requiredPositive {
			s.missing(key)
		}
		return decimal.Zero
	}
	n, ok := s.scalar(key)
	if !ok {
		return decimal.Zero
	}
	path, _ := s.at(key)
	return s.c.amount(n, path, rule)
}

// amount checks one decimal-string node.
func (c *checker) amount(n *yaml.Node, path string, rule amountRule) decimal.Decimal {
	switch n.ShortTag() {
	case "!!int", "!!float":
		c.addf(path, n.Line, "must be a quoted decimal string, e.g. %q", n.Value)
		return decimal.Zero
	case "!!str":
	default:
		c.addf(path, n.Line, "must be a quoted decimal string, found %s", kindName(n))
		return decimal.Zero
	}
	d, ok := parseDecimal(n.Value)
	if !ok {
		c.addf(path, n.Line, "%q is not a decimal", n.Value)
		return decimal.Zero
	}
	return c.sign(d, n, path, rule == optionalNonNeg)
}

func (c *checker) sign(d decimal.Decimal, n *yaml.Node, path string, zeroOK bool) decimal.Decimal {
	switch {
	case d.IsNegative():
		c.addf(path, n.Line, "must not be negative, got %s", n.Value)
	case d.IsZero() && !zeroOK:
		c.addf(path, n.Line, "must be positive, got %s", n.Value)
	default:
		return d
	}
	return decimal.Zero
}

// bps reads a basis-point count, >= 0. Basis points are a ratio, not an
// amount, so a bare YAML number is fine; it is read from its literal text,
// never through float64.
func (s *section) bps(key string) decimal.Decimal {
	n, ok := s.scalar(key)
	if !ok {
		return decimal.Zero
	}
	path, _ := s.at(key)
	switch n.ShortTag() {
	case "!!int", "!!float", "!!str":
	default:
		s.c.addf(path, n.Line, "must be a number of basis points, found %s", kindName(n))
		return decimal.Zero
	}
	d, ok := parseDecimal(n.Value)
	if !ok {
		s.c.addf(path, n.Line, "%q is not a number of basis points", n.Value)
		return decimal.Zero
	}
	return s.c.sign(d, n, path, true)
}

func (s *section) int64(key string) int64 {
	n, ok := s.scalar(key)
	if !ok {
		return 0
	}
	var v int64
	if n.ShortTag() != "!!int" || n.Decode(&v) != nil {
		path, _ := s.at(key)
		s.c.addf(path, n.Line, "must be an integer, got %q", n.Value)
	}
	return v
}

// list returns the items of the sequence under key.
func (s *section) list(key string) []*yaml.Node {
	n, ok := s.vals[key]
	if !ok {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		path, _ := s.at(key)
		s.c.addf(path, n.Line, "must be a list, found %s", kindName(n))
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, it := range n.Content {
		items[i] = resolve(it)
	}
	return items
}

// strList reads a list of non-empty strings.
func (s *section) strList(key string) []string {
	path, _ := s.at(key)
	var out []string
	for i, it := range s.list(key) {
		if it.Kind != yaml.ScalarNode || isNull(it) || strings.TrimSpace(it.Value) == "" {
			s.c.addf(index(path, i), it.Line, "must be a non-empty string")
			continue
		}
		out = append(out, it.Value)
	}
	return out
}

// editDistance is the Levenshtein distance of two short keys, for "did you
// mean" hints.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
