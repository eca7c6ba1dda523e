package eas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/rpc"
)

// EndpointCall is the endpoint label of the one RPC method this package
// uses: the metric label set stays bounded whatever the chain count.
const EndpointCall = "eth_call"

const (
	// DefaultTimeout bounds one eth_call.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxResponseBytes bounds one JSON-RPC response. An Astral
	// attestation (a point, a few recipe and media references) is a few KiB
	// of ABI, twice that in hex; 4 MiB is room for generous media fields and
	// still stops a hostile endpoint from filling memory.
	DefaultMaxResponseBytes = 4 << 20
	// maxErrorText bounds the text of an error taken from an endpoint.
	maxErrorText = 300
)

// Options configure a Client.
type Options struct {
	// URL is the chain's JSON-RPC endpoint (http or https). It may carry a
	// provider key: it never appears in an error, log or metric of this
	// package.
	URL string
	// Timeout bounds one call (default DefaultTimeout).
	Timeout time.Duration
	// MaxResponseBytes bounds one response (default DefaultMaxResponseBytes).
	MaxResponseBytes int64
	// Transport is the HTTP transport to use (default: a clone of
	// http.DefaultTransport). Clients of several chains may share one.
	Transport http.RoundTripper
	// Observe, when set, is called once per call with EndpointCall, the
	// outcome ("200", another HTTP status, "rpc_error" for a JSON-RPC error
	// answer, "error" when no answer arrived) and the duration.
	Observe func(endpoint, code string, d time.Duration)
}

// Client calls one chain's EAS contract. Safe for concurrent use.
type Client struct {
	opts    Options
	rpc     *rpc.Client
	secrets []string // parts of the URL scrubbed from every error
}

// New builds a Client for an http(s) endpoint. It does no I/O (go-ethereum
// dials HTTP endpoints lazily). The error never contains the URL.
func New(o Options) (*Client, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxResponseBytes <= 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("eas: RPC endpoint is not an http(s) URL")
	}
	base := o.Transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	hc := &http.Client{Transport: limitTransport{base: base, max: o.MaxResponseBytes}, Timeout: o.Timeout}
	rc, err := rpc.DialOptions(context.Background(), o.URL, rpc.WithHTTPClient(hc))
	if err != nil {
		return nil, errors.New("eas: RPC endpoint: " + scrub(err.Error(), urlSecrets(o.URL, u)))
	}
	return &Client{opts: o, rpc: rc, secrets: urlSecrets(o.URL, u)}, nil
}

// Close releases the client. Safe to call twice.
func (c *Client) Close() { c.rpc.Close() }

// GetAttestation reads getAttestation(uid) from the EAS contract at contract
// through eth_call at the latest block. A uid EAS does not hold comes back as
// the zero Attestation (see Empty), as the contract returns it. Errors are
// scrubbed of the endpoint's URL.
func (c *Client) GetAttestation(ctx context.Context, contract common.Address, uid [32]byte) (Attestation, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	call := map[string]any{"to": contract, "data": hexutil.Bytes(PackGetAttestation(uid))}
	var ret hexutil.Bytes
	start := time.Now()
	err := c.rpc.CallContext(ctx, &ret, "eth_call", call, "latest")
	c.observe(codeOf(err), time.Since(start))
	if err != nil {
		return Attestation{}, fmt.Errorf("eas %s: %s", EndpointCall, c.scrub(err.Error()))
	}
	a, err := DecodeAttestation(ret)
	if err != nil {
		return Attestation{}, fmt.Errorf("eas %s: %w", EndpointCall, err)
	}
	return a, nil
}

func (c *Client) observe(code string, d time.Duration) {
	if c.opts.Observe != nil {
		c.opts.Observe(EndpointCall, code, d)
	}
}

// codeOf is the bounded outcome label of a call.
func codeOf(err error) string {
	var he rpc.HTTPError
	var re rpc.Error
	switch {
	case err == nil:
		return "200"
	case errors.As(err, &he):
		return strconv.Itoa(he.StatusCode)
	case errors.As(err, &re):
		return "rpc_error"
	}
	return "error"
}

func (c *Client) scrub(msg string) string { return scrub(msg, c.secrets) }

// urlSecrets lists every part of an endpoint URL that may carry a key: the
// whole URL, its host (some providers put the key in a subdomain), path,
// query and user info. Longest first, so a part inside another is scrubbed
// with it.
func urlSecrets(raw string, u *url.URL) []string {
	cand := []string{raw, u.String(), u.Host, u.Hostname(), u.EscapedPath(), u.Path, u.RawQuery, u.Fragment}
	if u.User != nil {
		cand = append(cand, u.User.String(), u.User.Username())
		if pw, ok := u.User.Password(); ok {
			cand = append(cand, pw)
		}
	}
	var out []string
	for _, s := range cand {
		s = strings.Trim(s, "/")
		if len(s) >= 3 { // shorter parts ("/", "v1") would scrub unrelated text and hide nothing
			out = append(out, s)
			if q, err := url.QueryUnescape(s); err == nil && q != s && len(q) >= 3 {
				out = append(out, q)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// scrub replaces every secret in msg and bounds its length.
func scrub(msg string, secrets []string) string {
	for _, s := range secrets {
		msg = strings.ReplaceAll(msg, s, "<rpc-url>")
	}
	if len(msg) > maxErrorText {
		msg = msg[:maxErrorText] + "…"
	}
	return msg
}

// limitTransport bounds every response body: a read past max fails, so a
// hostile endpoint cannot make the JSON decoder buffer without end.
type limitTransport struct {
	base http.RoundTripper
	max  int64
}

func (t limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.max}
	return resp, nil
}

// errTooLarge is a response over the bound.
var errTooLarge = errors.New("response body over the size bound")

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Tell a body that ends exactly at the bound from one that goes on.
		var one [1]byte
		if n, _ := b.rc.Read(one[:]); n > 0 {
			return 0, errTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
