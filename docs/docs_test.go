// Package docs_test checks the repository's own documentation: it never
// points outside the repository, every alert has its runbook section, and
// the policy reference covers every key.
package docs_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const root = ".."

// trackedFiles lists the repository's files: git's index when git is there,
// else every file under the root but .git.
func trackedFiles(t *testing.T) []string {
	t.Helper()
	if out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output(); err == nil && len(out) > 0 {
		var files []string
		for _, f := range bytes.Split(bytes.TrimRight(out, "\x00"), []byte{0}) {
			files = append(files, string(f))
		}
		return files
	}
	var files []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(root, path)
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestNoFileRefersOutsideTheRepository: the repository documents itself; no
// tracked file points at the workspace it was written in.
func TestNoFileRefersOutsideTheRepository(t *testing.T) {
	// Built from pieces so that this file does not match itself.
	forbidden := []string{"../" + "shared", "/" + "work/"}
	files := trackedFiles(t)
	if len(files) < 50 {
		t.Fatalf("only %d files found; is this the repository?", len(files))
	}
	for _, f := range files {
		raw, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			if os.IsNotExist(err) {
				continue // deleted in the work tree, not yet in the index
			}
			t.Fatal(err)
		}
		if bytes.IndexByte(raw, 0) >= 0 {
			continue // binary
		}
		for i, line := range strings.Split(string(raw), "\n") {
			for _, bad := range forbidden {
				if strings.Contains(line, bad) {
					t.Errorf("%s:%d refers outside the repository (%q): %s", f, i+1, bad, strings.TrimSpace(line))
				}
			}
		}
	}
}

// Documents that other parts of the project write; a link to one of them
// may precede it on a branch.
var writtenElsewhere = map[string]bool{"docs/authority.md": true, "docs/admin.md": true, "docs/onchain.md": true}

var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestMarkdownLinksStayInsideAndResolve: every relative link of the README
// and docs/ names a file of the repository, and every anchor into the
// runbook exists.
func TestMarkdownLinksStayInsideAndResolve(t *testing.T) {
	absRoot, _ := filepath.Abs(root)
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, doc := range append(docs, filepath.Join(root, "README.md")) {
		raw, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(raw), -1) {
			link := m[1]
			if strings.Contains(link, "://") || strings.HasPrefix(link, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(link, "#")
			target := doc
			if path != "" {
				target = filepath.Join(filepath.Dir(doc), path)
			}
			abs, _ := filepath.Abs(target)
			rel, err := filepath.Rel(absRoot, abs)
			if err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s links outside the repository: %s", doc, link)
				continue
			}
			if _, err := os.Stat(abs); err != nil {
				if !writtenElsewhere[filepath.ToSlash(rel)] {
					t.Errorf("%s links to %s, which does not exist", doc, link)
				}
				continue
			}
			if anchor != "" && strings.HasSuffix(abs, ".md") {
				body, _ := os.ReadFile(abs)
				if !hasAnchor(string(body), anchor) {
					t.Errorf("%s links to %s: no such anchor in %s", doc, link, rel)
				}
			}
		}
	}
}

// hasAnchor: an explicit <a id> or a heading whose GitHub slug is anchor.
func hasAnchor(doc, anchor string) bool {
	if strings.Contains(doc, `<a id="`+anchor+`"></a>`) {
		return true
	}
	for _, line := range strings.Split(doc, "\n") {
		if h, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") && slug(h) == anchor {
			return true
		}
	}
	return false
}

// slug is GitHub's heading anchor: lower case, punctuation dropped, spaces
// to hyphens.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

// TestEveryAlertHasItsRunbookSection: each alert's runbook_url ends in
// docs/runbook.md#<alert name in lower case>, and the runbook has that
// anchor under a heading named as the alert.
func TestEveryAlertHasItsRunbookSection(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "deploy/k8s/base/prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert       string            `yaml:"alert"`
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(raw, &rule); err != nil {
		t.Fatal(err)
	}
	book, err := os.ReadFile(filepath.Join(root, "docs/runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	alerts := []string{"TreasurydAuthorityChangePending"} // added beside these rules by the authority work
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			url := r.Annotations["runbook_url"]
			want := "/docs/runbook.md#" + strings.ToLower(r.Alert)
			if !strings.HasSuffix(url, want) {
				t.Errorf("alert %s: runbook_url %q does not end in %s", r.Alert, url, want)
			}
		}
	}
	if len(alerts) < 8 {
		t.Fatalf("only %d alerts found", len(alerts))
	}
	for _, a := range alerts {
		anchor := strings.ToLower(a)
		if !strings.Contains(string(book), `<a id="`+anchor+`"></a>`+"\n## "+a+"\n") {
			t.Errorf("docs/runbook.md has no section `<a id=%q></a>` + `## %s`", anchor, a)
		}
		if !hasAnchor(string(book), anchor) {
			t.Errorf("docs/runbook.md: no anchor #%s", anchor)
		}
	}
}

// policyKeys are the keys a policy file may hold beyond those the shipped
// policies use (each must be in the reference too).
var policyKeys = []string{
	"authority.hold", "http.admin_listen", "ha.lease", "state.postgres_dsn_env",
	"compliance.verify_onchain", "compliance.verify_onchain.schema_uid", "compliance.verify_onchain.chains",
	"compliance.verify_onchain.chains.*.rpc_url", "compliance.verify_onchain.chains.*.rpc_url_env",
	"compliance.verify_onchain.chains.*.eas", "astra.stream_stale_after", "astra.api_key_env", "astra.api_key_file",
	"programs[].notional", "programs[].dry_run", "compliance.allow[].geojson", "dry_run",
}

// dataMaps are mappings whose keys are data (asset names, chains), not policy keys.
var dataMaps = map[string]bool{"sandbox.balances": true, "sandbox.price": true, "compliance.verify_onchain.chains": true}

func flatten(prefix string, n *yaml.Node, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			flatten(prefix, c, out)
		}
	case yaml.MappingNode:
		if dataMaps[prefix] {
			out[prefix] = true
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if prefix != "" {
				key = prefix + "." + key
			}
			out[key] = true
			flatten(key, n.Content[i+1], out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			if c.Kind == yaml.MappingNode {
				flatten(prefix+"[]", c, out)
			}
		}
	}
}

// TestPolicyReferenceCoversEveryKey: every key of the shipped policies, and
// every key added beyond them, is named in docs/policy.md within the
// section of its top-level key.
func TestPolicyReferenceCoversEveryKey(t *testing.T) {
	ref, err := os.ReadFile(filepath.Join(root, "docs/policy.md"))
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]string{} // top-level key -> its section's text
	for _, sec := range strings.Split(string(ref), "\n## ")[1:] {
		heading, _, _ := strings.Cut(sec, "\n")
		for _, m := range regexp.MustCompile("`([a-z_]+)(\\[\\])?`").FindAllStringSubmatch(heading, -1) {
			sections[m[1]] = sec
		}
	}
	keys := map[string]bool{}
	for _, f := range []string{"configs/sandbox.yaml", "deploy/k8s/base/policy.yaml"} {
		raw, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		var n yaml.Node
		if err := yaml.Unmarshal(raw, &n); err != nil {
			t.Fatal(err)
		}
		flatten("", &n, keys)
	}
	for _, k := range policyKeys {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	if len(sorted) < 60 {
		t.Fatalf("only %d keys found", len(sorted))
	}
	for _, k := range sorted {
		segs := strings.Split(strings.ReplaceAll(k, "[]", ""), ".")
		leaf := segs[len(segs)-1]
		if leaf == "*" {
			continue
		}
		if len(segs) == 1 {
			if !named(string(ref), leaf) {
				t.Errorf("docs/policy.md does not name the top-level key %s", k)
			}
			continue
		}
		sec, ok := sections[segs[0]]
		if !ok {
			t.Errorf("docs/policy.md has no section for %s (needed by %s)", segs[0], k)
			continue
		}
		if !named(sec, leaf) {
			t.Errorf("docs/policy.md, section %s, does not name %s", segs[0], k)
		}
	}
}

// named reports whether text names key in code: `key`, `a.key`, `key[]`,
// `key.b`, and so on.
func named(text, key string) bool {
	for _, before := range []string{"`", "."} {
		for _, after := range []string{"`", "[]", "."} {
			if strings.Contains(text, before+key+after) {
				return true
			}
		}
	}
	return false
}
