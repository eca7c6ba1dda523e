package operator_test

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestConsoleIsOneSelfContainedPage: GET / (and only /) serves the embedded
// console; it loads nothing from anywhere (no src, href or url() to another
// place, no external script), runs only its own inline script and style
// (pinned by hash in the Content-Security-Policy), and cannot be framed.
func TestConsoleIsOneSelfContainedPage(t *testing.T) {
	h, _, _ := newServer(t, token, &memStore{}, true)
	rec := do(h, http.MethodGet, "/", "", "")
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	page := rec.Body.String()
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`(?i)\bsrc\s*=`),
		regexp.MustCompile(`(?i)<link\b`),
		regexp.MustCompile(`(?i)url\(`),
		regexp.MustCompile(`(?i)@import`),
		regexp.MustCompile(`(?i)https?://`),
		regexp.MustCompile(`\binnerHTML\b|\bouterHTML\b|insertAdjacentHTML|document\.write`),
		regexp.MustCompile(`parseFloat|Number\(p\.|Number\(x\.amount`),
	} {
		if m := bad.FindString(page); m != "" {
			t.Errorf("the console page contains %q: it must be self-contained, build DOM from text only, and never parse money into floats", m)
		}
	}
	if !strings.Contains(page, `fetch("status"`) {
		t.Error("the console does not poll /status")
	}

	csp := rec.Header().Get("Content-Security-Policy")
	for _, el := range []string{"script", "style"} {
		m := regexp.MustCompile(`(?s)<`+el+`>(.*?)</`+el+`>`).FindAllStringSubmatch(page, -1)
		if len(m) != 1 {
			t.Fatalf("want exactly one inline <%s>, found %d", el, len(m))
		}
		sum := sha256.Sum256([]byte(m[0][1]))
		if want := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, el+"-src "+want) {
			t.Errorf("CSP %q does not pin the inline %s (%s)", csp, el, want)
		}
	}
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %s", csp, want)
		}
	}
	for k, v := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Cache-Control": "no-store"} {
		if got := rec.Header().Get(k); got != v {
			t.Errorf("%s: %q; want %q", k, got, v)
		}
	}

	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/index.html", http.StatusNotFound},
		{http.MethodGet, "/console/console.html", http.StatusNotFound},
		{http.MethodPost, "/", http.StatusMethodNotAllowed},
	} {
		if got := do(h, tc.method, tc.path, "", "").Code; got != tc.want {
			t.Errorf("%s %s: %d; want %d", tc.method, tc.path, got, tc.want)
		}
	}
}
