package quotes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/metrics"
)

// Defaults of Options.
const (
	// DefaultStaleAfter: the desk quotes about once a second, so 15 quiet
	// seconds mean the connection is dead even if TCP has not noticed.
	DefaultStaleAfter = 15 * time.Second
	// DefaultMaxFrameBytes: a quote frame is about 400 bytes; 64 KiB leaves
	// room for growth and still stops a runaway peer from costing memory.
	DefaultMaxFrameBytes = 64 << 10
	DefaultBackoffBase   = 250 * time.Millisecond
	DefaultBackoffMax    = 30 * time.Second
	// DefaultStableAfter: a connection that lived this long was healthy, so
	// the next failure starts backing off from the base again.
	DefaultStableAfter = 60 * time.Second
	// badFrameLogEvery: bad frames are logged at most once per this period
	// per stream; the log line carries how many were suppressed in between.
	badFrameLogEvery = 10 * time.Second
)

// Event is one frame delivered to a Handler.
type Event struct {
	Program string
	// Quote is the decoded quote, valid only during the handler call (the
	// stream reuses it); nil when the frame did not decode.
	Quote *astra.Quote
	// Frame is the raw frame, a fresh buffer per frame: the handler owns it
	// after the call (Quote.Raw aliases it).
	Frame      []byte
	ReceivedAt time.Time
	// Err is the decode or validation error; the decision outcome is then
	// "invalid". With a validation error Quote is set.
	Err error
}

// Handler receives every frame of a stream, synchronously on the stream's
// reader goroutine, one frame at a time. The *Event itself is reused: it is
// valid only during the call.
type Handler func(ev *Event)

// Dialer opens a quote stream. *astra.Client satisfies it.
type Dialer interface {
	DialQuotes(ctx context.Context, r astra.StreamRequest) (*websocket.Conn, error)
}

// Options configure a Stream. Zero durations take the defaults above.
type Options struct {
	Dialer        Dialer
	Log           *zap.Logger
	Metrics       *metrics.Metrics // quotes_received, stream_up, stream_reconnects, stream_bad_frames (label program)
	Now           func() time.Time
	StaleAfter    time.Duration // no frame for this long: tear down and reconnect (default 15s)
	MaxFrameBytes int64         // a larger frame closes the connection (default 64 KiB)
	// Exponential backoff with full jitter, reset after a connection stayed up
	// for StableAfter (defaults 250ms, 30s, 60s).
	BackoffBase, BackoffMax, StableAfter time.Duration
}

// StreamStatus is a snapshot of a stream for /status.
type StreamStatus struct {
	Up          bool
	Since       time.Time // when the stream last went up or down
	LastFrameAt time.Time // zero before the first frame
	Reconnects  uint64
	BadFrames   uint64
	Received    uint64
	LastError   string // the last dial, read or frame error ("" if none yet)
}

// Stream is one program's supervised quote stream.
type Stream struct {
	req Request
	h   Handler
	o   Options
	log *zap.Logger

	mReceived, mBad, mReconnects prometheus.Counter
	mUp                          prometheus.Gauge

	// Test hooks: randN draws the jitter in [0, n), sleep waits d or until ctx
	// is done (false).
	randN func(n int64) int64
	sleep func(ctx context.Context, d time.Duration) bool

	mu      sync.Mutex
	state   int // 0 new, 1 started, 2 stopped
	cancel  context.CancelFunc
	done    chan struct{}
	up      bool
	since   time.Time
	lastErr string

	received, bad, reconnects atomic.Uint64
	lastFrame                 atomic.Int64 // Unix nanoseconds

	// Owned by the supervisor goroutine.
	q       astra.Quote
	dec     astra.QuoteDecoder // the stream's frame layout
	ev      Event
	buf     bytes.Buffer
	badLog  limiter
	dialLog limiter
}

// NewStream builds the stream of r, delivering to h. It does no I/O.
func NewStream(r Request, h Handler, o Options) *Stream {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New("")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfter
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = DefaultBackoffBase
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.BackoffMax < o.BackoffBase {
		o.BackoffMax = o.BackoffBase
	}
	if o.StableAfter <= 0 {
		o.StableAfter = DefaultStableAfter
	}
	return &Stream{
		req:         r,
		h:           h,
		o:           o,
		log:         o.Log.With(zap.String("program", r.Program)),
		mReceived:   o.Metrics.QuotesReceived.WithLabelValues(r.Program),
		mBad:        o.Metrics.StreamBadFrames.WithLabelValues(r.Program),
		mReconnects: o.Metrics.StreamReconnects.WithLabelValues(r.Program),
		mUp:         o.Metrics.StreamUp.WithLabelValues(r.Program),
		randN:       rand.Int64N,
		sleep:       sleepCtx,
		badLog:      limiter{every: badFrameLogEvery},
		dialLog:     limiter{every: badFrameLogEvery},
	}
}

// Request is what the stream asks the desk for.
func (s *Stream) Request() Request { return s.req }

// Start starts the supervisor goroutine and returns at once. The goroutine
// outlives ctx (a start hook's context ends when starting is done); Stop ends
// it.
func (s *Stream) Start(ctx context.Context) error {
	if s.o.Dialer == nil {
		return errors.New("quotes: stream " + s.req.Program + ": no dialer")
	}
	if s.h == nil {
		return errors.New("quotes: stream " + s.req.Program + ": no handler")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != 0 {
		return errors.New("quotes: stream " + s.req.Program + ": already started")
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.state, s.cancel, s.done = 1, cancel, make(chan struct{})
	s.since = s.o.Now()
	s.mUp.Set(0)
	go s.run(runCtx)
	return nil
}

// Stop closes the connection and waits for the supervisor goroutine, or for
// ctx. Safe to call twice, and before Start.
func (s *Stream) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.state == 0 {
		s.state = 2
		s.mu.Unlock()
		return nil
	}
	s.state = 2
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("quotes: stop stream %s: %w", s.req.Program, ctx.Err())
	}
}

// Status is a snapshot of the stream.
func (s *Stream) Status() StreamStatus {
	s.mu.Lock()
	st := StreamStatus{Up: s.up, Since: s.since, LastError: s.lastErr}
	s.mu.Unlock()
	st.Received, st.BadFrames, st.Reconnects = s.received.Load(), s.bad.Load(), s.reconnects.Load()
	if ns := s.lastFrame.Load(); ns != 0 {
		st.LastFrameAt = time.Unix(0, ns)
	}
	return st
}

func (s *Stream) run(ctx context.Context) {
	defer close(s.done)
	attempt := 0
	connected := false
	for ctx.Err() == nil {
		conn, err := s.o.Dialer.DialQuotes(ctx, s.req.Stream)
		if ctx.Err() != nil {
			if conn != nil {
				conn.Close()
			}
			return
		}
		if err != nil {
			s.setErr(err)
			if ok, suppressed := s.dialLog.allow(s.o.Now()); ok {
				s.log.Warn("quote stream dial failed", zap.Error(err), zap.Int("attempt", attempt+1),
					zap.Uint64("suppressed", suppressed))
			}
		} else {
			if connected {
				s.reconnects.Add(1)
				s.mReconnects.Inc()
			}
			connected = true
			began := s.o.Now()
			err = s.session(ctx, conn)
			if ctx.Err() != nil {
				return
			}
			s.setErr(err)
			upFor := s.o.Now().Sub(began)
			if upFor >= s.o.StableAfter {
				attempt = 0
			}
			s.log.Info("quote stream lost; reconnecting", zap.Error(err), zap.Duration("up_for", upFor))
		}
		d := backoff(attempt, s.o.BackoffBase, s.o.BackoffMax, s.randN)
		if attempt < 62 {
			attempt++
		}
		if !s.sleep(ctx, d) {
			return
		}
	}
}

// errStale ends a session that received nothing for StaleAfter.
var errStale = errors.New("stream stale: no frame received")

// session reads frames from conn until it fails or ctx ends. It returns why
// the connection ended.
func (s *Stream) session(ctx context.Context, conn *websocket.Conn) error {
	// Closing the connection is what unblocks a read on Stop.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	conn.SetReadLimit(s.o.MaxFrameBytes)
	s.setUp(true)
	defer s.setUp(false)
	s.log.Info("quote stream connected")
	for {
		// Deadlines are wall-clock, whatever clock decisions use.
		if err := conn.SetReadDeadline(time.Now().Add(s.o.StaleAfter)); err != nil {
			return err
		}
		_, r, err := conn.NextReader()
		if err == nil {
			s.buf.Reset()
			_, err = s.buf.ReadFrom(r)
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.Is(err, websocket.ErrReadLimit):
				err = fmt.Errorf("frame over %d bytes", s.o.MaxFrameBytes)
				s.badFrame(err, s.o.Now())
			case errors.As(err, &ne) && ne.Timeout():
				err = fmt.Errorf("%w for %s", errStale, s.o.StaleAfter)
			}
			return err
		}
		frame := make([]byte, s.buf.Len())
		copy(frame, s.buf.Bytes())
		s.deliver(frame)
	}
}

// deliver decodes, validates and hands one frame to the handler.
func (s *Stream) deliver(frame []byte) {
	now := s.o.Now()
	s.received.Add(1)
	s.lastFrame.Store(now.UnixNano())
	s.mReceived.Inc()
	ev := &s.ev
	*ev = Event{Program: s.req.Program, Frame: frame, ReceivedAt: now}
	if err := s.dec.Decode(frame, &s.q); err != nil {
		ev.Err = err
	} else {
		ev.Quote = &s.q
		ev.Err = Validate(&s.req, &s.q, now)
	}
	if ev.Err != nil {
		s.badFrame(ev.Err, now)
	}
	s.h(ev)
	*ev = Event{}
}

// badFrame counts a bad frame and logs it at a limited rate.
func (s *Stream) badFrame(err error, now time.Time) {
	s.bad.Add(1)
	s.mBad.Inc()
	s.setErr(err)
	if ok, suppressed := s.badLog.allow(now); ok {
		s.log.Warn("bad quote frame", zap.Error(err), zap.Uint64("suppressed", suppressed))
	}
}

func (s *Stream) setUp(up bool) {
	s.mu.Lock()
	s.up, s.since = up, s.o.Now()
	s.mu.Unlock()
	if up {
		s.mUp.Set(1)
	} else {
		s.mUp.Set(0)
	}
}

func (s *Stream) setErr(err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	s.lastErr = err.Error()
	s.mu.Unlock()
}

// backoff is the delay before retry number attempt (0-based): uniformly
// random in [0, min(max, base·2^attempt)] ("full jitter", so many streams
// that failed together do not retry together).
func backoff(attempt int, base, max time.Duration, randN func(int64) int64) time.Duration {
	ceil := max
	if attempt < 62 {
		if c := base << attempt; c > 0 && c>>attempt == base && c < max {
			ceil = c
		}
	}
	return time.Duration(randN(int64(ceil) + 1))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// limiter is a token bucket of one token refilled every period: it lets one
// event through per period and counts the ones it suppressed.
type limiter struct {
	every      time.Duration
	next       time.Time
	suppressed uint64
}

// allow reports whether an event at now may be logged and, if so, how many
// were suppressed since the last one.
func (l *limiter) allow(now time.Time) (bool, uint64) {
	if now.Before(l.next) {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.suppressed, l.next = 0, now.Add(l.every)
	return true, n
}
