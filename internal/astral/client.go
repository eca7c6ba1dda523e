// Package astral is the client of the Astral location-proof index
// (api/astral-location-proof-api.md). It reads; it never writes. It absorbs
// the differences between the index's doc and its running server (SPEC 2):
// both list shapes, numeric-string coordinates, GeoJSON or "[lng, lat]"
// locations. It decodes; the decision about a proof is internal/compliance's.
package astral

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Route templates: the endpoint label of metrics and errors.
const (
	EndpointHealth = "/health"
	EndpointRoot   = "/"
	EndpointConfig = "/api/v0/config"
	EndpointProofs = "/api/v0/location-proofs"
	EndpointProof  = "/api/v0/location-proofs/{uid}"
	EndpointStats  = "/api/v0/location-proofs/stats"
)

const (
	// DefaultPageSize is the limit requested per page: the server's cap.
	DefaultPageSize = 100
	// MaxPageSize is the server's cap on limit; larger requests are clamped.
	MaxPageSize = 100
	// MaxPages bounds one Proofs walk: 1,000 pages of 100 is far more proofs
	// than one subject makes in any max_proof_age window; a walk that goes on
	// longer is a server that never ends its list.
	MaxPages = 1000
	// maxBodyBytes bounds one response body. A full page of 100 proofs with
	// media is well under this; more is a broken or hostile server.
	maxBodyBytes = 16 << 20
	// defaultAttempts: one try plus two retries keeps a refresh well inside a
	// one-minute refresh interval even with backoff.
	defaultAttempts = 3
	// backoffBase and backoffCap bound the exponential backoff between retries.
	backoffBase = 200 * time.Millisecond
	backoffCap  = 5 * time.Second
	// maxRetryAfter bounds how long a Retry-After header may make us wait.
	maxRetryAfter = 30 * time.Second
)

// ErrNotFound is returned (wrapped in an *APIError) when the index answers 404.
// Test with errors.Is.
var ErrNotFound = errors.New("astral: not found")

// ErrTooManyPages is returned when a list does not end within MaxPages.
var ErrTooManyPages = errors.New("astral: list did not end within the page bound")

// APIError is an answer from the index other than success, or a success whose
// body could not be read.
type APIError struct {
	Endpoint string // route template
	Status   int
	Message  string // the index's message, if any
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("astral %s: HTTP %d", e.Endpoint, e.Status)
	}
	return fmt.Sprintf("astral %s: HTTP %d: %s", e.Endpoint, e.Status, e.Message)
}

// Is makes errors.Is(err, ErrNotFound) true for a 404.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// Options configure a Client.
type Options struct {
	BaseURL string // e.g. "https://api.astral.global"
	// Timeout bounds one request attempt (default 10s).
	Timeout time.Duration
	// HTTPClient is optional; its Timeout is not used (Timeout above is).
	HTTPClient *http.Client
	// Observe, when set, is called once per HTTP attempt with the route
	// template, the status code as text or "error" when no response arrived,
	// and the attempt's duration.
	Observe func(endpoint, code string, d time.Duration)
	// MaxAttempts bounds the tries of one GET (default 3; 1 disables retries).
	MaxAttempts int
}

// Client reads the Astral index. Safe for concurrent use.
type Client struct {
	opts Options
	http *http.Client
}

// New builds a Client. It does no I/O.
func New(o Options) *Client {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = defaultAttempts
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	return &Client{opts: o, http: hc}
}

// Query selects proofs. Empty fields are not sent.
type Query struct {
	Chain   string
	Prover  string
	Subject string
	From    time.Time // fromTimestamp: event_timestamp at or after
	To      time.Time // toTimestamp: event_timestamp at or before
	BBox    *[4]float64
	// PageSize is the limit asked per page (default and cap 100).
	PageSize int
}

func (q Query) values(limit, offset int) url.Values {
	v := url.Values{}
	if q.Chain != "" {
		v.Set("chain", q.Chain)
	}
	if q.Prover != "" {
		v.Set("prover", q.Prover)
	}
	if q.Subject != "" {
		v.Set("subject", q.Subject)
	}
	if !q.From.IsZero() {
		v.Set("fromTimestamp", q.From.UTC().Format(time.RFC3339))
	}
	if !q.To.IsZero() {
		v.Set("toTimestamp", q.To.UTC().Format(time.RFC3339))
	}
	if q.BBox != nil {
		parts := make([]string, 4)
		for i, f := range q.BBox {
			parts[i] = strconv.FormatFloat(f, 'f', -1, 64)
		}
		v.Set("bbox", strings.Join(parts, ","))
	}
	v.Set("limit", strconv.Itoa(limit))
	v.Set("offset", strconv.Itoa(offset))
	return v
}

// Health checks GET /health answers 2xx.
func (c *Client) Health(ctx context.Context) error {
	_, err := c.get(ctx, EndpointHealth, "/health", nil)
	return err
}

// Config reads GET /api/v0/config. chains may be an object {name: bool} (the
// doc) or a list of names.
func (c *Client) Config(ctx context.Context) (Config, error) {
	body, err := c.get(ctx, EndpointConfig, "/api/v0/config", nil)
	if err != nil {
		return Config{}, err
	}
	var raw struct {
		Chains  json.RawMessage `json:"chains"`
		Schema  json.RawMessage `json:"schema"`
		Version json.RawMessage `json:"version"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return Config{}, badBody(EndpointConfig, err)
	}
	cfg := Config{Chains: map[string]bool{}, Schema: rawString(raw.Schema), Version: rawString(raw.Version)}
	var asMap map[string]json.RawMessage
	var asList []string
	switch {
	case json.Unmarshal(raw.Chains, &asMap) == nil:
		for k, v := range asMap {
			var on bool
			cfg.Chains[k] = json.Unmarshal(v, &on) == nil && on
		}
	case json.Unmarshal(raw.Chains, &asList) == nil:
		for _, k := range asList {
			cfg.Chains[k] = true
		}
	}
	return cfg, nil
}

// Stats reads GET /api/v0/location-proofs/stats. Counts may be numbers or
// numeric strings; unreadable counts are zero.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	body, err := c.get(ctx, EndpointStats, "/api/v0/location-proofs/stats", nil)
	if err != nil {
		return Stats{}, err
	}
	var raw struct {
		Total   json.RawMessage            `json:"total"`
		ByChain map[string]json.RawMessage `json:"by_chain"`
		ByTime  map[string]json.RawMessage `json:"by_time"`
		Revoked json.RawMessage            `json:"revoked"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return Stats{}, badBody(EndpointStats, err)
	}
	s := Stats{ByChain: map[string]int64{}}
	s.Total, _ = rawInt(raw.Total)
	s.Revoked, _ = rawInt(raw.Revoked)
	for k, v := range raw.ByChain {
		s.ByChain[k], _ = rawInt(v)
	}
	s.Last24Hours, _ = rawInt(raw.ByTime["last_24_hours"])
	s.Last7Days, _ = rawInt(raw.ByTime["last_7_days"])
	s.Last30Days, _ = rawInt(raw.ByTime["last_30_days"])
	return s, nil
}

// Proof reads one proof by uid. A 404 is an *APIError that errors.Is
// ErrNotFound.
func (c *Client) Proof(ctx context.Context, uid string) (Proof, error) {
	body, err := c.get(ctx, EndpointProof, "/api/v0/location-proofs/"+url.PathEscape(uid), nil)
	if err != nil {
		return Proof{}, err
	}
	p, err := DecodeProof(body)
	if err != nil {
		return Proof{}, badBody(EndpointProof, err)
	}
	return p, nil
}

// listPage is either list shape: the doc's {data, count, limit, offset} or
// the server's {data, pagination: {total, limit, offset, next}}.
type listPage struct {
	Data       []json.RawMessage          `json:"data"`
	Count      json.RawMessage            `json:"count"`
	Limit      json.RawMessage            `json:"limit"`
	Pagination map[string]json.RawMessage `json:"pagination"`
}

// Proofs walks every proof matching q, page by page with limit/offset, and
// calls fn for each in the server's order (newest first). It stops when a
// page comes back short or empty, when pagination.next is null, when the
// total count is reached, when fn returns an error (returned as is), or with
// ErrTooManyPages after MaxPages.
func (c *Client) Proofs(ctx context.Context, q Query, fn func(Proof) error) error {
	limit := q.PageSize
	if limit <= 0 || limit > MaxPageSize {
		limit = DefaultPageSize
	}
	offset := 0
	for page := 0; page < MaxPages; page++ {
		body, err := c.get(ctx, EndpointProofs, "/api/v0/location-proofs", q.values(limit, offset))
		if err != nil {
			return err
		}
		var lp listPage
		if err := json.Unmarshal(body, &lp); err != nil {
			return badBody(EndpointProofs, err)
		}
		for i, raw := range lp.Data {
			p, err := DecodeProof(raw)
			if err != nil {
				return badBody(EndpointProofs, fmt.Errorf("record %d at offset %d: %w", i, offset, err))
			}
			if err := fn(p); err != nil {
				return err
			}
		}
		n := len(lp.Data)
		if n == 0 {
			return nil
		}
		// The page size the server used: its echo when readable (it may have
		// clamped or ignored ours), else what we asked.
		eff := limit
		echo := lp.Limit
		if lp.Pagination != nil {
			echo = lp.Pagination["limit"]
		}
		if l, ok := rawInt(echo); ok && l > 0 {
			eff = int(l)
		}
		if n < eff {
			return nil
		}
		if lp.Pagination != nil {
			if next, present := lp.Pagination["next"]; present && isNull(next) {
				return nil
			}
			if total, ok := rawInt(lp.Pagination["total"]); ok && int64(offset+n) >= total {
				return nil
			}
		} else if count, ok := rawInt(lp.Count); ok && count != int64(n) && int64(offset+n) >= count {
			// The doc's count is either the total or this page's length; it
			// is read as the total only when it cannot be the page length.
			// The cost of the ambiguity is at most one extra, empty page.
			return nil
		}
		offset += n
	}
	return fmt.Errorf("astral %s: %w (%d pages)", EndpointProofs, ErrTooManyPages, MaxPages)
}

func badBody(endpoint string, err error) error {
	return &APIError{Endpoint: endpoint, Status: http.StatusOK, Message: "unreadable body: " + err.Error()}
}

// get performs a GET with bounded retries: network errors, 5xx and 429 are
// retried with exponential backoff and full jitter, waiting at least any
// Retry-After the server sent (bounded by maxRetryAfter).
func (c *Client) get(ctx context.Context, endpoint, path string, v url.Values) ([]byte, error) {
	u := c.opts.BaseURL + path
	if len(v) > 0 {
		u += "?" + v.Encode()
	}
	var lastErr error
	for attempt := 0; attempt < c.opts.MaxAttempts; attempt++ {
		body, retryAfter, retry, err := c.once(ctx, endpoint, u)
		if err == nil {
			return body, nil
		}
		lastErr = err
		if !retry || attempt == c.opts.MaxAttempts-1 || ctx.Err() != nil {
			break
		}
		wait := backoff(attempt)
		if retryAfter > wait {
			wait = retryAfter
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("astral %s: %w (last error: %v)", endpoint, ctx.Err(), lastErr)
		case <-t.C:
		}
	}
	return nil, lastErr
}

// backoff is full jitter over an exponential bound: uniform in [0, min(cap, base·2^n)).
func backoff(attempt int) time.Duration {
	bound := backoffBase << attempt
	if bound > backoffCap || bound <= 0 {
		bound = backoffCap
	}
	return time.Duration(rand.Int64N(int64(bound)))
}

func (c *Client) once(ctx context.Context, endpoint, u string) (body []byte, retryAfter time.Duration, retry bool, err error) {
	actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, false, fmt.Errorf("astral %s: %w", endpoint, err)
	}
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.observe(endpoint, "error", time.Since(start))
		return nil, 0, true, fmt.Errorf("astral %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	c.observe(endpoint, strconv.Itoa(resp.StatusCode), time.Since(start))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &APIError{Endpoint: endpoint, Status: resp.StatusCode, Message: errorMessage(body)}
		retryable := resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests
		return nil, parseRetryAfter(resp.Header.Get("Retry-After")), retryable, e
	}
	if rerr != nil {
		return nil, 0, true, fmt.Errorf("astral %s: read body: %w", endpoint, rerr)
	}
	if len(body) > maxBodyBytes {
		return nil, 0, false, &APIError{Endpoint: endpoint, Status: resp.StatusCode, Message: fmt.Sprintf("body over %d bytes", maxBodyBytes)}
	}
	return body, 0, false, nil
}

func (c *Client) observe(endpoint, code string, d time.Duration) {
	if c.opts.Observe != nil {
		c.opts.Observe(endpoint, code, d)
	}
}

// errorMessage pulls "message" (and "error") out of an error body, bounded so
// a hostile body cannot bloat logs.
func errorMessage(body []byte) string {
	const maxLen = 200
	var e struct {
		Message json.RawMessage `json:"message"`
		Error   json.RawMessage `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &e) == nil {
		msg = rawString(e.Message)
		if d := rawString(e.Error); d != "" {
			if msg != "" {
				msg += ": "
			}
			msg += d
		}
	}
	if len(msg) > maxLen {
		msg = msg[:maxLen]
	}
	return msg
}

// parseRetryAfter reads seconds or an HTTP date; bounded by maxRetryAfter.
func parseRetryAfter(h string) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	var d time.Duration
	if s, err := strconv.Atoi(h); err == nil && s >= 0 {
		d = time.Duration(s) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = time.Until(t)
	}
	if d < 0 {
		return 0
	}
	if d > maxRetryAfter {
		return maxRetryAfter
	}
	return d
}
