package quotes

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"treasuryd/internal/astra"
	"treasuryd/internal/metrics"
	"treasuryd/internal/sim"
)

const testKey = "sk-live-TESTKEY-0123456789abcdef"

// recorder is a Handler that keeps what it was given.
type recorder struct {
	mu     sync.Mutex
	events []recorded
}

type recorded struct {
	err      error
	quoteID  string // "" when Quote was nil
	frame    []byte
	received time.Time
}

func (r *recorder) handle(ev *Event) {
	rec := recorded{err: ev.Err, frame: ev.Frame, received: ev.ReceivedAt}
	if ev.Quote != nil {
		rec.quoteID = ev.Quote.QuoteID
	}
	r.mu.Lock()
	r.events = append(r.events, rec)
	r.mu.Unlock()
}

func (r *recorder) snapshot() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.events...)
}

// valid counts events without error from index from on.
func (r *recorder) valid(from int) int {
	n := 0
	for _, e := range r.snapshot()[min(from, len(r.snapshot())):] {
		if e.err == nil {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startDesk starts a simulated desk quoting BTC-USD every 50ms.
func startDesk(t *testing.T) *sim.Desk {
	t.Helper()
	desk, err := sim.NewDesk(sim.DeskConfig{
		AccountID:     testAccount,
		APIKey:        testKey,
		Seed:          7,
		Balances:      map[string]decimal.Decimal{"BTC": d("5"), "USD": d("250000")},
		Prices:        map[string]decimal.Decimal{"BTC-USD": d("65000")},
		VolatilityBps: d("20"),
		QuoteInterval: 50 * time.Millisecond,
		QuoteTTL:      5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := desk.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { desk.Close() })
	return desk
}

func client(t *testing.T, wsURL, key string) *astra.Client {
	t.Helper()
	c, err := astra.New(astra.Options{BaseURL: "http://127.0.0.1:1", WSURL: wsURL, APIKey: key, AccountID: testAccount, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startStream starts a stream of the sell-btc program and stops it at cleanup.
func startStream(t *testing.T, r Request, o Options) (*Stream, *recorder) {
	t.Helper()
	rec := &recorder{}
	if o.BackoffBase == 0 {
		o.BackoffBase, o.BackoffMax = 5*time.Millisecond, 50*time.Millisecond
	}
	s := NewStream(r, rec.handle, o)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s, rec
}

func TestStreamDeliversValidatedQuotesFromTheDesk(t *testing.T) {
	desk := startDesk(t)
	m := metrics.New("test")
	r := sellRequest()
	s, rec := startStream(t, r, Options{Dialer: client(t, desk.WSURL(), testKey), Metrics: m})

	waitFor(t, "5 valid quotes", func() bool { return rec.valid(0) >= 5 })
	for _, e := range rec.snapshot()[:5] {
		if e.err != nil || e.quoteID == "" || e.received.IsZero() {
			t.Errorf("event %+v", e)
		}
		// The frame is the handler's own copy and holds the quote.
		var q astra.Quote
		if err := astra.DecodeQuoteFrame(e.frame, &q); err != nil || q.QuoteID != e.quoteID {
			t.Errorf("kept frame %q decodes to %q, %v; want id %q", e.frame, q.QuoteID, err, e.quoteID)
		}
	}
	st := s.Status()
	if !st.Up || st.Received < 5 || st.BadFrames != 0 || st.LastFrameAt.IsZero() {
		t.Errorf("status = %+v", st)
	}
	if v := testutil.ToFloat64(m.StreamUp.WithLabelValues("sell-btc")); v != 1 {
		t.Errorf("stream_up = %v, want 1", v)
	}
	if v := testutil.ToFloat64(m.QuotesReceived.WithLabelValues("sell-btc")); v < 5 {
		t.Errorf("quotes_received = %v, want >= 5", v)
	}

	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if v := testutil.ToFloat64(m.StreamUp.WithLabelValues("sell-btc")); v != 0 {
		t.Errorf("stream_up after Stop = %v, want 0", v)
	}
	waitFor(t, "the desk to see the stream closed", func() bool { return desk.OpenStreams() == 0 })
	// Stop returned only once the reader goroutine, the handler's only
	// caller, had ended.
	select {
	case <-s.done:
	default:
		t.Error("Stop returned before the supervisor goroutine ended")
	}
}

func TestStreamReconnectsAfterTheDeskDropsIt(t *testing.T) {
	desk := startDesk(t)
	m := metrics.New("test")
	s, rec := startStream(t, sellRequest(), Options{Dialer: client(t, desk.WSURL(), testKey), Metrics: m})
	waitFor(t, "first quotes", func() bool { return rec.valid(0) >= 2 })

	desk.DropStreams()
	waitFor(t, "a reconnect", func() bool { return s.Status().Reconnects >= 1 })
	after := len(rec.snapshot())
	waitFor(t, "quotes after the reconnect", func() bool { return rec.valid(after) >= 3 })
	if v := testutil.ToFloat64(m.StreamReconnects.WithLabelValues("sell-btc")); v < 1 {
		t.Errorf("stream_reconnects_total = %v, want >= 1", v)
	}
	if st := s.Status(); !st.Up || st.BadFrames != 0 {
		t.Errorf("status = %+v", st)
	}
}

func TestStreamTearsDownAStalledConnectionAndReconnects(t *testing.T) {
	desk := startDesk(t)
	s, rec := startStream(t, sellRequest(), Options{Dialer: client(t, desk.WSURL(), testKey), StaleAfter: 300 * time.Millisecond})
	waitFor(t, "first quotes", func() bool { return rec.valid(0) >= 2 })

	desk.StallStreams(time.Minute) // the old connection stays open and silent
	waitFor(t, "a reconnect after the stall", func() bool { return s.Status().Reconnects >= 1 })
	if st := s.Status(); !strings.Contains(st.LastError, "stale") {
		t.Errorf("LastError = %q, want it to say stale", st.LastError)
	}
	after := len(rec.snapshot())
	waitFor(t, "quotes after the reconnect", func() bool { return rec.valid(after) >= 3 })
}

func TestStreamCountsMalformedFramesAndKeepsGoing(t *testing.T) {
	desk := startDesk(t)
	m := metrics.New("test")
	core, logs := observer.New(zapcore.DebugLevel)
	s, rec := startStream(t, sellRequest(), Options{Dialer: client(t, desk.WSURL(), testKey), Metrics: m, Log: zap.New(core)})
	waitFor(t, "first quotes", func() bool { return rec.valid(0) >= 1 })

	desk.MalformNextFrames(4)
	waitFor(t, "4 bad frames", func() bool { return s.Status().BadFrames >= 4 })
	after := len(rec.snapshot())
	waitFor(t, "valid quotes after the bad frames", func() bool { return rec.valid(after) >= 3 })

	bad := 0
	for _, e := range rec.snapshot() {
		if e.err != nil {
			bad++
			var fe *astra.FrameError
			if !errors.As(e.err, &fe) || e.quoteID != "" {
				t.Errorf("bad frame event: err %v, quote %q; want a decode error and no quote", e.err, e.quoteID)
			}
			if len(e.frame) == 0 {
				t.Error("a bad frame's bytes were not handed to the handler")
			}
		}
	}
	if bad != 4 {
		t.Errorf("handler saw %d bad frames, want 4", bad)
	}
	if v := testutil.ToFloat64(m.StreamBadFrames.WithLabelValues("sell-btc")); v != 4 {
		t.Errorf("stream_bad_frames_total = %v, want 4", v)
	}
	if st := s.Status(); st.Reconnects != 0 {
		t.Errorf("bad frames caused %d reconnects", st.Reconnects)
	}
	// Rate-limited: four bad frames within a second make one log line.
	if n := logs.FilterMessage("bad quote frame").Len(); n != 1 {
		t.Errorf("%d bad-frame log lines, want 1 (rate limited)", n)
	}
}

func TestStreamReportsQuotesForAnotherRequestAsInvalid(t *testing.T) {
	desk := startDesk(t)
	r := sellRequest()
	r.AccountID = "00000000-0000-4000-8000-000000000000" // the desk quotes testAccount
	s, rec := startStream(t, r, Options{Dialer: client(t, desk.WSURL(), testKey)})
	waitFor(t, "3 frames", func() bool { return len(rec.snapshot()) >= 3 })
	for _, e := range rec.snapshot() {
		if !errors.Is(e.err, ErrWrongAccount) || e.quoteID == "" {
			t.Errorf("event err %v quote %q, want ErrWrongAccount with the decoded quote", e.err, e.quoteID)
		}
	}
	if st := s.Status(); st.BadFrames < 3 || st.Reconnects != 0 {
		t.Errorf("status = %+v", st)
	}
}

// quoteServer is a WebSocket server that runs conn(i, c) for the i-th
// connection (0-based) and closes it when that returns.
func quoteServer(t *testing.T, conn func(i int, c *websocket.Conn)) *httptest.Server {
	t.Helper()
	var n atomic.Int64
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		conn(int(n.Add(1)-1), c)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// wsDialer dials a fixed URL.
type wsDialer struct{ url string }

func (w wsDialer) DialQuotes(ctx context.Context, _ astra.StreamRequest) (*websocket.Conn, error) {
	c, resp, err := websocket.DefaultDialer.DialContext(ctx, w.url, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	return c, err
}

func wsURL(srv *httptest.Server) string { return "ws" + strings.TrimPrefix(srv.URL, "http") }

func validFrame(i int) []byte {
	return fmt.Appendf(nil, `{"quote":{"quoteId":"q-%d","accountId":"%s","fromAsset":"USD","toAsset":"BTC",`+
		`"fromAssetQuantity":32500.%d,"toAssetQuantity":0.5,"expiryTime":%d,"signature":"s"}}`,
		i, testAccount, i, time.Now().Add(time.Minute).UnixMicro())
}

func TestStreamClosesTheConnectionOnAnOversizedFrameAndReconnects(t *testing.T) {
	const limit = 1024
	srv := quoteServer(t, func(i int, c *websocket.Conn) {
		if i == 0 {
			big := append(validFrame(0)[:0:0], `{"quote":{"pad":"`...)
			big = append(big, strings.Repeat("x", 2*limit)...)
			big = append(big, `"}}`...)
			if c.WriteMessage(websocket.TextMessage, big) != nil {
				return
			}
			// The client must close on its own; wait for it.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}
		for j := 0; ; j++ {
			if c.WriteMessage(websocket.TextMessage, validFrame(j)) != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	m := metrics.New("test")
	s, rec := startStream(t, sellRequest(), Options{Dialer: wsDialer{wsURL(srv)}, MaxFrameBytes: limit, Metrics: m})

	waitFor(t, "valid quotes on a new connection", func() bool { return rec.valid(0) >= 3 })
	st := s.Status()
	if st.Reconnects < 1 || st.BadFrames != 1 {
		t.Errorf("status = %+v, want one reconnect and one bad frame", st)
	}
	for _, e := range rec.snapshot() {
		if e.err != nil || len(e.frame) > limit {
			t.Errorf("the oversized frame reached the handler: err %v, %d bytes", e.err, len(e.frame))
		}
	}
	if v := testutil.ToFloat64(m.StreamBadFrames.WithLabelValues("sell-btc")); v != 1 {
		t.Errorf("stream_bad_frames_total = %v, want 1", v)
	}
}

func TestBackoffCeilingDoublesUpToTheMaximum(t *testing.T) {
	ceiling := func(n int64) int64 { return n - 1 }
	base, max := 100*time.Millisecond, 5*time.Second
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i, w := range want {
		if got := backoff(i, base, max, ceiling); got != w*time.Millisecond {
			t.Errorf("backoff(%d) ceiling = %v, want %v", i, got, w*time.Millisecond)
		}
	}
	for _, attempt := range []int{61, 62, 63, 1000} { // no overflow past the cap
		if got := backoff(attempt, base, max, ceiling); got != max {
			t.Errorf("backoff(%d) = %v, want %v", attempt, got, max)
		}
	}
	// Full jitter: anywhere in [0, ceiling], drawn from the whole range.
	var lo, hi bool
	randN := NewStream(Request{}, nil, Options{}).randN // the production jitter source
	for i := 0; i < 2000; i++ {
		got := backoff(3, base, max, randN)
		if got < 0 || got > 800*time.Millisecond {
			t.Fatalf("backoff(3) = %v outside [0, 800ms]", got)
		}
		lo = lo || got < 200*time.Millisecond
		hi = hi || got > 600*time.Millisecond
	}
	if !lo || !hi {
		t.Error("jitter does not spread over the range")
	}
}

// scriptDialer fails, or dials url, per its script; past the script it fails.
type scriptDialer struct {
	mu     sync.Mutex
	url    string
	script []bool // true: connect
	calls  int
}

func (s *scriptDialer) DialQuotes(ctx context.Context, r astra.StreamRequest) (*websocket.Conn, error) {
	s.mu.Lock()
	i := s.calls
	s.calls++
	s.mu.Unlock()
	if i < len(s.script) && s.script[i] {
		return wsDialer{s.url}.DialQuotes(ctx, r)
	}
	return nil, &astra.APIError{Endpoint: "/ws/stream-otc-quotes/{account_id}", Status: 503, Message: "websocket handshake refused"}
}

func TestStreamBacksOffWhileDialsFailAndResetsAfterAStableConnection(t *testing.T) {
	// The server accepts and closes at once: each connection lives briefly.
	srv := quoteServer(t, func(int, *websocket.Conn) {})
	tests := []struct {
		name        string
		script      []bool
		stableAfter time.Duration
		want        []time.Duration // ceilings, in ms
	}{
		{"failing dialer: doubling, capped", nil, time.Hour, []time.Duration{10, 20, 40, 80, 160, 200, 200, 200}},
		{"short-lived connection keeps backing off", []bool{false, false, true}, time.Hour, []time.Duration{10, 20, 40, 80, 160}},
		{"stable connection resets the backoff", []bool{false, false, true}, time.Nanosecond, []time.Duration{10, 20, 10, 20, 40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dialer := &scriptDialer{url: wsURL(srv), script: tt.script}
			s := NewStream(sellRequest(), func(*Event) {}, Options{Dialer: dialer, BackoffBase: 10 * time.Millisecond,
				BackoffMax: 200 * time.Millisecond, StableAfter: tt.stableAfter})
			var delays []time.Duration
			s.randN = func(n int64) int64 { return n - 1 } // always the ceiling
			s.sleep = func(_ context.Context, d time.Duration) bool {
				delays = append(delays, d)
				return len(delays) < len(tt.want) // then end the supervisor
			}
			if err := s.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the supervisor to finish", func() bool {
				select {
				case <-s.done:
					return true
				default:
					return false
				}
			})
			if err := s.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			for i := range tt.want {
				tt.want[i] *= time.Millisecond
			}
			if fmt.Sprint(delays) != fmt.Sprint(tt.want) {
				t.Errorf("delays = %v, want %v", delays, tt.want)
			}
			if st := s.Status(); st.Up || !strings.Contains(st.LastError, "503") {
				t.Errorf("status = %+v", st)
			}
		})
	}
}

func TestStreamNeverLogsTheAPIKey(t *testing.T) {
	desk := startDesk(t)
	tests := []struct {
		name  string
		wsURL string
		key   string
		wait  func(s *Stream) bool
	}{
		{"handshake refused with 401", desk.WSURL(), testKey + "-wrong", func(s *Stream) bool { return strings.Contains(s.Status().LastError, "401") }},
		{"nothing listening", "ws://127.0.0.1:1/v2", testKey, func(s *Stream) bool { return s.Status().LastError != "" }},
		{"connected then dropped", desk.WSURL(), testKey, func(s *Stream) bool {
			if s.Status().Received > 0 {
				desk.DropStreams()
			}
			return s.Status().Reconnects >= 1
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			s, _ := startStream(t, sellRequest(), Options{Dialer: client(t, tt.wsURL, tt.key), Log: zap.New(core)})
			waitFor(t, "the case to happen", func() bool { return tt.wait(s) })
			if err := s.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			if logs.Len() == 0 {
				t.Fatal("nothing was logged: the test proves nothing")
			}
			for _, e := range logs.All() {
				line := e.Message + fmt.Sprint(e.ContextMap())
				if strings.Contains(line, "TESTKEY") {
					t.Errorf("log line holds the API key: %s", line)
				}
			}
			if st := s.Status(); strings.Contains(st.LastError, "TESTKEY") {
				t.Errorf("status holds the API key: %q", st.LastError)
			}
		})
	}
}

func TestStreamStartStopLifecycle(t *testing.T) {
	s := NewStream(sellRequest(), func(*Event) {}, Options{Dialer: &scriptDialer{}})
	if err := s.Stop(context.Background()); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("Start after Stop succeeded")
	}
	if err := NewStream(sellRequest(), func(*Event) {}, Options{}).Start(context.Background()); err == nil {
		t.Error("Start without a dialer succeeded")
	}
	s2 := NewStream(sellRequest(), func(*Event) {}, Options{Dialer: &scriptDialer{}})
	ctx, cancel := context.WithCancel(context.Background())
	if err := s2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel() // a start hook's context ending does not stop the stream
	if err := s2.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	select {
	case <-s2.done:
		t.Error("the stream ended with its Start context")
	case <-time.After(20 * time.Millisecond):
	}
	if err := s2.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestLimiterLetsOneThroughPerPeriodAndCountsTheRest(t *testing.T) {
	l := limiter{every: 10 * time.Second}
	t0 := testNow
	steps := []struct {
		at         time.Duration
		ok         bool
		suppressed uint64
	}{
		{0, true, 0}, {time.Second, false, 0}, {9 * time.Second, false, 0},
		{10 * time.Second, true, 2}, {11 * time.Second, false, 0}, {30 * time.Second, true, 1},
	}
	for _, st := range steps {
		ok, n := l.allow(t0.Add(st.at))
		if ok != st.ok || n != st.suppressed {
			t.Errorf("at %v: allow = %v, %d; want %v, %d", st.at, ok, n, st.ok, st.suppressed)
		}
	}
}

// BenchmarkStreamDeliver is the stream's whole per-frame work after the read:
// decode, validate, count and call the handler (a no-op here).
func BenchmarkStreamDeliver(b *testing.B) {
	s := NewStream(sellRequest(), func(*Event) {}, Options{Now: func() time.Time { return testNow }})
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = fmt.Appendf(nil, `{"quote":{"quoteId":"6f1c2a3b-9d8e-4f70-8a1b-2c3d4e5f%04d","accountId":"%s",`+
			`"fromAsset":"USD","toAsset":"BTC","fromAssetQuantity":%d.%02d,"toAssetQuantity":0.5,`+
			`"expiryTime":%d,"signature":"6932874cf486617239c7d27100e911903ccbee05c8b07fe3f4299e047f46%04d"}}`,
			i, testAccount, 32000+i, i, testNow.Add(5*time.Second).UnixMicro(), i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.deliver(frames[i%len(frames)])
	}
	if st := s.Status(); st.BadFrames != 0 {
		b.Fatalf("bad frames: %+v", st)
	}
}
