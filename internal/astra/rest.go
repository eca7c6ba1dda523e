package astra

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// GET retry defaults (SPEC 5: keep running through network faults).
const (
	// DefaultMaxAttempts: five attempts ride out a desk restart or a short
	// burst of 5xx/429 (about 1.5 s of backoff at the defaults, more when the
	// desk sends Retry-After), while a desk that keeps failing is reported
	// within seconds instead of stalling a scheduled run.
	DefaultMaxAttempts = 5
	// DefaultRetryBase is the first backoff window: one dropped connection
	// costs little, and a struggling desk is not hammered.
	DefaultRetryBase = 100 * time.Millisecond
	// DefaultRetryCap bounds one backoff wait, so a retry never sleeps longer
	// than a reconcile or rebalance run can afford.
	DefaultRetryCap = 5 * time.Second
	// DefaultMaxRetryAfter: a Retry-After longer than this is not waited out;
	// the call fails and the next scheduled run asks again.
	DefaultMaxRetryAfter = 30 * time.Second
)

// Bounds on what the desk can make the client hold in memory.
const (
	// maxErrorBody is how much of a non-2xx body is read to find its message.
	maxErrorBody = 4 << 10
	// maxMessage is the longest desk message kept in an APIError.
	maxMessage = 256
	// maxObjectBody bounds single-object answers (addresses, withdrawal id,
	// accept): the documented ones are under 200 bytes.
	maxObjectBody = 64 << 10
	// maxRecordBytes bounds one record of a list or one balance entry. Real
	// records are under 2 KiB; metadata is the only free-form part.
	maxRecordBytes = 1 << 20
	// readChunk caps one read from a body, so a record's byte count is exact
	// to within one chunk of decoder read-ahead.
	readChunk = 32 << 10
	// maxBalances bounds the instruments of one /balances answer, which is
	// held in memory whole (it is returned as a slice).
	maxBalances = 100_000
	// drainLimit is how much of an unread body is discarded to let the
	// connection be reused; beyond that the connection is dropped.
	drainLimit = 64 << 10
)

// Route templates: the endpoint of APIError and the label of Observe.
const (
	epBalances         = "/balances/{account_id}"
	epTransfers        = "/transfers/{account_id}"
	epConverts         = "/converts/{account_id}"
	epTransactions     = "/transactions/{account_id}"
	epWithdrawals      = "/withdrawal-request/{account_id}/all"
	epCreateWithdrawal = "/withdrawal-request/{account_id}"
	epDepositAddress   = "/deposit-address/{account_id}"
	epExpressDeposit   = "/express-deposit-address"
	epAcceptQuote      = "/otc/accept-quote/{account_id}"
)

// attemptTimeout is the cause of an attempt cancelled by Options.Timeout.
// errors.Is(err, context.DeadlineExceeded) holds for it.
type attemptTimeout struct{ d time.Duration }

func (e *attemptTimeout) Error() string        { return fmt.Sprintf("no progress within %s", e.d) }
func (e *attemptTimeout) Is(target error) bool { return target == context.DeadlineExceeded }
func (e *attemptTimeout) Timeout() bool        { return true }

// errTooLarge marks a body or record over its bound; it is never retried.
var errTooLarge = errors.New("response exceeds size bound")

// exchange is one HTTP attempt: request, response, and the body reader that
// keeps the attempt's timer alive while bytes flow.
type exchange struct {
	c        *Client
	endpoint string
	start    time.Time
	ctx      context.Context
	cancel   context.CancelCauseFunc
	timer    *time.Timer
	gotConn  atomic.Bool
	resp     *http.Response
	body     *bodyReader
}

// roundTrip sends one request. Options.Timeout bounds the wait for the
// response headers and each stall while the body is read, not the whole
// transfer: a million-record history may take longer than one timeout to
// stream, but never stalls that long. The returned exchange is never nil; on
// a nil error the caller reads ex.body and calls ex.finish.
func (c *Client) roundTrip(ctx context.Context, method, endpoint, target string, body []byte) (*exchange, error) {
	ex := &exchange{c: c, endpoint: endpoint, start: time.Now()}
	ex.ctx, ex.cancel = context.WithCancelCause(ctx)
	timeout := c.opts.Timeout
	ex.timer = time.AfterFunc(timeout, func() { ex.cancel(&attemptTimeout{timeout}) })
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { ex.gotConn.Store(true) }}
	rctx := httptrace.WithClientTrace(ex.ctx, trace)

	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(rctx, method, c.opts.BaseURL+target, rd)
	if err != nil {
		ex.end("error")
		return ex, fmt.Errorf("astra %s %s: build request: %w", method, endpoint, err)
	}
	req.Header.Set(APIKeyHeader, c.opts.APIKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")

	resp, err := c.http.Do(req)
	if err != nil {
		ex.end("error")
		return ex, fmt.Errorf("astra %s %s: %w", method, endpoint, ex.cause(unwrapURL(err)))
	}
	ex.resp = resp
	ex.body = &bodyReader{ex: ex, r: resp.Body}
	return ex, nil
}

// cause replaces a cancellation caused by the attempt timer with the timeout.
func (ex *exchange) cause(err error) error {
	var t *attemptTimeout
	if errors.As(context.Cause(ex.ctx), &t) {
		return t
	}
	return err
}

// finish drains a little of the body for connection reuse, closes it and
// reports the attempt.
func (ex *exchange) finish() {
	ex.timer.Stop()
	_, _ = io.CopyN(io.Discard, ex.resp.Body, drainLimit)
	ex.resp.Body.Close()
	ex.end(strconv.Itoa(ex.resp.StatusCode))
}

func (ex *exchange) end(code string) {
	ex.timer.Stop()
	ex.cancel(context.Canceled)
	ex.c.observe(ex.endpoint, code, time.Since(ex.start))
}

// bodyReader feeds a response body to a decoder. Each read that brings bytes
// re-arms the attempt timer; bytes since the last mark are bounded by limit.
type bodyReader struct {
	ex    *exchange
	r     io.Reader
	limit int64 // 0: unbounded
	since int64
}

func (b *bodyReader) mark() { b.since = 0 }

func (b *bodyReader) Read(p []byte) (int, error) {
	if len(p) > readChunk {
		p = p[:readChunk]
	}
	n, err := b.r.Read(p)
	if n > 0 {
		b.ex.timer.Reset(b.ex.c.opts.Timeout)
	}
	b.since += int64(n)
	if b.limit > 0 && b.since > b.limit {
		return n, fmt.Errorf("%w (%d bytes)", errTooLarge, b.limit)
	}
	if err != nil && err != io.EOF {
		err = b.ex.cause(err)
	}
	return n, err
}

// readAll reads a whole small body, up to limit bytes.
func (b *bodyReader) readAll(limit int64) ([]byte, error) {
	b.limit = limit
	b.mark()
	return io.ReadAll(b)
}

// unwrapURL drops net/http's *url.Error layer: its text repeats the method
// and URL, which the client's own prefix already names.
func unwrapURL(err error) error {
	if u, ok := errors.AsType[*url.Error](err); ok {
		return u.Err
	}
	return err
}

// apiError builds the APIError of a non-2xx response from its first
// maxErrorBody bytes.
func (c *Client) apiError(ex *exchange) *APIError {
	raw, _ := ex.body.readAll(maxErrorBody)
	return &APIError{Endpoint: ex.endpoint, Status: ex.resp.StatusCode, Message: c.redact(deskMessage(raw))}
}

// deskMessage is the message field of a JSON error body ("message", "error"
// or "detail", the first that is present), or else the body text, cut to
// maxMessage bytes.
func deskMessage(raw []byte) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) == nil {
		for _, k := range []string{"message", "error", "detail"} {
			v, ok := fields[k]
			if !ok || string(v) == "null" {
				continue
			}
			var s string
			if json.Unmarshal(v, &s) == nil {
				return truncate(s)
			}
			return truncate(string(v)) // an object or number: its JSON text
		}
	}
	return truncate(strings.TrimSpace(string(raw)))
}

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// redact removes the API key from text that came from the desk: a desk (or
// a proxy) that echoes the request header must not carry it into an error.
func (c *Client) redact(s string) string {
	if c.opts.APIKey == "" {
		return s
	}
	return strings.ReplaceAll(s, c.opts.APIKey, "[redacted]")
}

// scrub hides the API key in an error whose text would carry it (a desk
// that echoes the header into a message or a record). The chain is kept for
// errors.Is and errors.As.
func (c *Client) scrub(err error) error {
	if err == nil || c.opts.APIKey == "" || !strings.Contains(err.Error(), c.opts.APIKey) {
		return err
	}
	return &scrubbed{err: err, text: c.redact(err.Error())}
}

type scrubbed struct {
	err  error
	text string
}

func (s *scrubbed) Error() string { return s.text }
func (s *scrubbed) Unwrap() error { return s.err }

// retryAfter reads Retry-After as seconds or an HTTP date; 0 when absent.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		if s > int64(24*time.Hour/time.Second) {
			return 24 * time.Hour
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// backoff is the full-jitter wait before retry number attempt+1: uniform in
// [0, min(cap, base·2^attempt)).
func (c *Client) backoff(attempt int) time.Duration {
	ceil := c.opts.RetryCap
	if attempt < 32 {
		if d := c.opts.RetryBase << attempt; d > 0 && d < ceil {
			ceil = d
		}
	}
	return rand.N(ceil)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// permanent marks a read error that a retry cannot cure (the desk sent
// something that does not decode, or a record that is wrong).
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// callerError carries an error returned by the caller's fn unchanged.
type callerError struct{ err error }

func (e *callerError) Error() string { return e.err.Error() }
func (e *callerError) Unwrap() error { return e.err }

// get performs a GET of target with retries. read consumes the body of a 2xx
// answer; restartable reports whether its work can still be redone (false
// once a streamed list has handed a record to the caller). Network errors,
// timeouts, 429 and 5xx are retried up to MaxAttempts with full-jitter
// backoff, and never sooner than a 429/503's Retry-After.
func (c *Client) get(ctx context.Context, endpoint, target string, read func(*bodyReader) error, restartable func() bool) error {
	err := c.getAttempts(ctx, endpoint, target, read, restartable)
	if ce, ok := err.(*callerError); ok {
		return ce.err // fn's own error, unchanged
	}
	return c.scrub(err)
}

func (c *Client) getAttempts(ctx context.Context, endpoint, target string, read func(*bodyReader) error, restartable func() bool) error {
	for attempt := 1; ; attempt++ {
		ex, err := c.roundTrip(ctx, http.MethodGet, endpoint, target, nil)
		var wait time.Duration
		if err == nil {
			status := ex.resp.StatusCode
			switch {
			case status >= 200 && status < 300:
				err = read(ex.body)
				ex.finish()
				if err == nil {
					return nil
				}
				if _, ok := err.(*callerError); ok {
					return err
				}
				if p, ok := err.(*permanent); ok {
					return p.err
				}
				if !restartable() {
					return err
				}
			default:
				apiErr := c.apiError(ex)
				ex.finish()
				err = apiErr
				if status != http.StatusTooManyRequests && status < 500 {
					return err
				}
				if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
					wait = retryAfter(ex.resp.Header, time.Now())
				}
			}
		}
		if ctx.Err() != nil {
			return err
		}
		if attempt >= c.opts.MaxAttempts {
			return fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
		}
		if wait > c.opts.MaxRetryAfter {
			return fmt.Errorf("%w (Retry-After %s is beyond %s)", err, wait, c.opts.MaxRetryAfter)
		}
		if serr := sleep(ctx, max(wait, c.backoff(attempt-1))); serr != nil {
			return fmt.Errorf("%w (retry abandoned: %w)", err, serr)
		}
	}
}

// post sends body once and classifies the outcome. A nil error means a 2xx;
// its body (up to maxObjectBody) is returned, with readErr set when it could
// not be read whole. A 4xx is an *APIError. Anything that may have reached
// the desk without a definite answer wraps ErrUnknownOutcome.
func (c *Client) post(ctx context.Context, endpoint, target string, body []byte) (resp []byte, readErr, err error) {
	resp, readErr, err = c.postOnce(ctx, endpoint, target, body)
	return resp, c.scrub(readErr), c.scrub(err)
}

func (c *Client) postOnce(ctx context.Context, endpoint, target string, body []byte) (resp []byte, readErr, err error) {
	ex, err := c.roundTrip(ctx, http.MethodPost, endpoint, target, body)
	if err != nil {
		if notSent(ex, err) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w (%w)", err, ErrUnknownOutcome)
	}
	defer ex.finish()
	status := ex.resp.StatusCode
	switch {
	case status >= 200 && status < 300:
		raw, rerr := ex.body.readAll(maxObjectBody)
		if rerr != nil {
			rerr = fmt.Errorf("astra POST %s: read answer: %w", endpoint, rerr)
		}
		return raw, rerr, nil
	case status >= 400 && status < 500:
		return nil, nil, c.apiError(ex)
	default:
		// 5xx, and a 1xx/3xx the client does not follow: the desk may have
		// acted before it failed.
		return nil, nil, fmt.Errorf("%w (%w)", c.apiError(ex), ErrUnknownOutcome)
	}
}

// notSent reports whether a failed POST certainly never left: no connection
// was obtained and the failure was the dial itself. Anything else (a write
// error, a reset, a timeout after the connection was up, an unfamiliar error)
// may have reached the desk.
func notSent(ex *exchange, err error) bool {
	if ex.gotConn.Load() {
		return false
	}
	op, ok := errors.AsType[*net.OpError](err)
	return ok && op.Op == "dial"
}
