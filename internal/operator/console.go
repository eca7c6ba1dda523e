package operator

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"net/http"
)

// consolePage is the operator console (SPEC 12): one self-contained page,
// embedded in the binary, that polls /status and renders it. No external
// asset, no build step.
//
//go:embed console/console.html
var consolePage []byte

// consoleCSP allows exactly the page's own inline script and style (by
// hash) and requests to this origin: no other script, style, frame or
// destination, so nothing the page shows can make it load or run anything.
var consoleCSP = func() string {
	return fmt.Sprintf("default-src 'none'; script-src '%s'; style-src '%s'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		inlineHash(consolePage, "<script>", "</script>"), inlineHash(consolePage, "<style>", "</style>"))
}()

// inlineHash is the CSP source ('sha256-...') of the first element between
// open and close in page; it panics at start-up if the embedded page lacks
// one, which a test catches.
func inlineHash(page []byte, open, close string) string {
	_, rest, ok := bytes.Cut(page, []byte(open))
	if !ok {
		panic("console page has no " + open)
	}
	body, _, ok := bytes.Cut(rest, []byte(close))
	if !ok {
		panic("console page has no " + close)
	}
	sum := sha256.Sum256(body)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// console serves GET / (exactly "/": other paths stay 404).
func (s *Server) console(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", consoleCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.Write(consolePage)
}
