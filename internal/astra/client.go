package astra

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// maxIdleConns bounds the idle keep-alive connections to the desk: enough for
// a few hundred programs accepting in the same instant, each an idle socket.
const maxIdleConns = 256

// APIKeyHeader carries the API key on every request and on the WebSocket
// handshake. The key never appears anywhere else (SPEC 7.9).
const APIKeyHeader = "x-astra-api-key"

// Options configure a Client.
type Options struct {
	BaseURL   string // REST base, e.g. "https://prod.astra-api.dev/v2"
	WSURL     string // WebSocket base, e.g. "wss://prod.astra-api.dev/v2"
	APIKey    string
	AccountID string
	// Timeout bounds one request attempt (default 10s): the wait for the
	// answer's headers, and then each stall while its body streams (a long
	// history may take longer than Timeout in all, but never stalls that long).
	Timeout time.Duration
	// HTTPClient is optional; its Timeout is not used (Timeout above is).
	HTTPClient *http.Client
	// Observe, when set, is called once per HTTP attempt with the route
	// template (e.g. "/balances/{account_id}"), the status code as text or
	// "error" when no response arrived, and the attempt's duration.
	Observe func(endpoint, code string, d time.Duration)

	// MaxAttempts bounds the attempts of one GET (default DefaultMaxAttempts).
	// POSTs are always sent once.
	MaxAttempts int
	// RetryBase and RetryCap shape the full-jitter backoff between GET
	// attempts (defaults DefaultRetryBase, DefaultRetryCap).
	RetryBase time.Duration
	RetryCap  time.Duration
	// MaxRetryAfter is the longest Retry-After the client waits out before a
	// retry; a longer one ends the call with the desk's error (default
	// DefaultMaxRetryAfter).
	MaxRetryAfter time.Duration
}

// Client talks to the Astra desk. Safe for concurrent use.
type Client struct {
	opts   Options
	http   *http.Client
	dialer *websocket.Dialer
}

// New builds a Client. It does no I/O.
func New(o Options) (*Client, error) {
	if o.AccountID == "" {
		return nil, errors.New("astra: account id is required")
	}
	for name, raw := range map[string]string{"base url": o.BaseURL, "ws url": o.WSURL} {
		if raw == "" {
			continue
		}
		if _, err := url.Parse(raw); err != nil {
			return nil, fmt.Errorf("astra: %s: %w", name, err)
		}
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.RetryBase <= 0 {
		o.RetryBase = DefaultRetryBase
	}
	if o.RetryCap <= 0 {
		o.RetryCap = DefaultRetryCap
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	var hc *http.Client
	if o.HTTPClient != nil {
		c := *o.HTTPClient // a copy: the caller's client is not changed
		hc = &c
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// One desk host, many programs accepting at once: keep their
		// connections warm instead of dialling (and handshaking TLS) per
		// accept. net/http's default keeps only 2 idle per host.
		t.MaxIdleConns = maxIdleConns
		t.MaxIdleConnsPerHost = maxIdleConns
		hc = &http.Client{Transport: t}
	}
	// Redirects are not followed: net/http would re-send the custom key
	// header to whatever host a redirect names, and would turn a POST into
	// a GET. A 3xx is reported as an APIError instead.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hc.Timeout = 0 // Options.Timeout bounds each attempt; see rest.go
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	o.WSURL = strings.TrimRight(o.WSURL, "/")
	return &Client{
		opts: o,
		http: hc,
		dialer: &websocket.Dialer{
			HandshakeTimeout: o.Timeout,
			Proxy:            http.ProxyFromEnvironment,
		},
	}, nil
}

// AccountID is the account every call is made for.
func (c *Client) AccountID() string { return c.opts.AccountID }

// StreamURL is the quote stream URL for r (without the key, which travels in
// a header).
func (c *Client) StreamURL(r StreamRequest) string {
	q := url.Values{}
	q.Set("from", r.From)
	q.Set("to", r.To)
	if !r.FromQty.IsZero() {
		q.Set("fromQty", r.FromQty.String())
	} else {
		q.Set("toQty", r.ToQty.String())
	}
	return c.opts.WSURL + "/ws/stream-otc-quotes/" + url.PathEscape(c.opts.AccountID) + "?" + q.Encode()
}

// DialQuotes opens the quote stream for r, with the API key in the handshake
// header. The caller owns the connection.
func (c *Client) DialQuotes(ctx context.Context, r StreamRequest) (*websocket.Conn, error) {
	if r.FromQty.IsZero() == r.ToQty.IsZero() {
		return nil, errors.New("astra: stream request needs exactly one of fromQty and toQty")
	}
	h := http.Header{}
	h.Set(APIKeyHeader, c.opts.APIKey)
	start := time.Now()
	conn, resp, err := c.dialer.DialContext(ctx, c.StreamURL(r), h)
	code := "error"
	if resp != nil {
		code = fmt.Sprint(resp.StatusCode)
		if resp.Body != nil {
			resp.Body.Close()
		}
	}
	c.observe("/ws/stream-otc-quotes/{account_id}", code, time.Since(start))
	if err != nil {
		if resp != nil {
			return nil, &APIError{Endpoint: "/ws/stream-otc-quotes/{account_id}", Status: resp.StatusCode, Message: "websocket handshake refused"}
		}
		// The dialer's error can name the URL but never the header.
		return nil, fmt.Errorf("astra: dial quote stream: %w", err)
	}
	return conn, nil
}

func (c *Client) observe(endpoint, code string, d time.Duration) {
	if c.opts.Observe != nil {
		c.opts.Observe(endpoint, code, d)
	}
}

// APIError is an answer from the desk other than success.
type APIError struct {
	Endpoint string // route template
	Status   int
	Message  string // the desk's message, if any
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("astra %s: HTTP %d", e.Endpoint, e.Status)
	}
	return fmt.Sprintf("astra %s: HTTP %d: %s", e.Endpoint, e.Status, e.Message)
}

// ErrUnknownOutcome marks a POST whose outcome is unknown (timeout, connection
// reset, 5xx): it may have taken effect. It is never re-sent blindly; callers
// settle it by reading the desk. Test with errors.Is.
var ErrUnknownOutcome = errors.New("outcome unknown")
