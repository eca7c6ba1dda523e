// Package config loads, validates and reloads the treasuryd policy file
// (SPEC section 3).
//
// It promises that a *Policy it hands out has passed every check: a policy
// with any problem is refused as a whole, with every problem reported at once
// by its YAML path and line (SPEC 7.11). The API key and the admin token are
// never in the file; they are read from the environment or a mounted file on
// demand and never logged.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Problem is one validation problem in a policy file.
type Problem struct {
	Path string // YAML path, e.g. "programs[2].limit_price"; "" for the whole file
	Line int    // 1-based line in the file
	Msg  string
}

// String formats the problem as `LINE: PATH: MSG`.
func (p Problem) String() string {
	if p.Path == "" {
		return fmt.Sprintf("%d: %s", p.Line, p.Msg)
	}
	return fmt.Sprintf("%d: %s: %s", p.Line, p.Path, p.Msg)
}

// ValidationError is a policy file that failed validation. It carries every
// problem found, ordered by line.
type ValidationError struct {
	File     string
	Problems []Problem
}

// Error lists every problem, one per line: `FILE:LINE: PATH: MSG`.
func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.File)
		b.WriteByte(':')
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads, parses and validates the policy file at path. A policy that
// fails validation is returned as a *ValidationError; a file that cannot be
// read is a plain wrapped error.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	return Parse(data, path)
}

// Parse parses and validates a policy file's contents; file names it in
// problems.
func Parse(data []byte, file string) (*Policy, error) {
	c := &checker{}
	root := c.document(data)
	var p *Policy
	if root != nil {
		p = c.policy(root)
	}
	if len(c.problems) > 0 {
		sort.SliceStable(c.problems, func(i, j int) bool { return c.problems[i].Line < c.problems[j].Line })
		return nil, &ValidationError{File: file, Problems: c.problems}
	}
	return p, nil
}

// yamlLine finds the line in a yaml.v3 syntax error ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document decodes data into a YAML node tree and returns the root mapping,
// or nil after recording why there is none.
func (c *checker) document(data []byte) *yaml.Node {
	if len(bytes.TrimSpace(data)) == 0 {
		c.addf("", 1, "the policy file is empty")
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			c.addf("", 1, "the policy file is empty")
		} else {
			c.syntax(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		c.addf("", extra.Line, "only one YAML document is allowed")
	case !errors.Is(err, io.EOF):
		c.syntax(err)
	}
	if len(doc.Content) == 0 || isNull(resolve(doc.Content[0])) {
		c.addf("", 1, "the policy file is empty")
		return nil
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		c.addf("", root.Line, "the policy must be a mapping of keys, found %s", kindName(root))
		return nil
	}
	return root
}

// syntax records a YAML syntax error as one problem with its line.
func (c *checker) syntax(err error) {
	msg := err.Error()
	line := 1
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	c.addf("", line, "invalid YAML: %s", msg)
}
