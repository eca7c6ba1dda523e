package sim

import (
	"bytes"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Accept latency as the desk sees it, for SPEC 8's side-by-side comparison
// of treasuryd with a bare client: per accept, the time from writing its
// quote's frame to the stream to receiving the accept. Off by default
// (MeasureAcceptLatency, astra-sim -measure-accept-latency); read with
// AcceptLatency or GET /_sim/accept-latency, and restarted (after a warm-up)
// with ResetAcceptLatency or POST /_sim/accept-latency/reset.

const (
	// latencyPendingMax bounds the quote frames waiting for an accept: SPEC
	// 8's 200 streams at 10 quotes/s for a 5 s TTL are 10,000 frames. Past
	// it, frames older than latencyPendingAge are dropped, and if that does
	// not make room the frame is not tracked (its accept counts as
	// unmatched).
	latencyPendingMax = 1 << 16
	// latencyPendingAge: a frame this old has expired (the desk's TTLs are
	// seconds), so no accept will match it.
	latencyPendingAge = time.Minute
	// latencySamplesMax bounds the samples kept, 8 bytes each: an hour of
	// 50 streams accepting 25 quotes/s is 4.5 M. Past it accepts are counted
	// as dropped.
	latencySamplesMax = 1 << 23
)

// AcceptLatency summarises the accept latencies measured since the last
// reset. Durations are nearest-rank percentiles.
type AcceptLatency struct {
	Accepts   int           `json:"accepts"`   // accepts matched to a frame written while measuring
	Unmatched int           `json:"unmatched"` // accepts of a frame not tracked (written before measuring, or not a streamed quote)
	Dropped   int           `json:"dropped"`   // matched accepts beyond the sample bound
	P50       time.Duration `json:"p50_ns"`
	P90       time.Duration `json:"p90_ns"`
	P99       time.Duration `json:"p99_ns"`
	Max       time.Duration `json:"max_ns"`
}

type acceptLatency struct {
	on   atomic.Bool
	base time.Time // monotonic origin of the stored times

	mu        sync.Mutex
	written   map[string]time.Duration // quote id → when its frame was written, since base
	samples   []time.Duration
	unmatched int
	dropped   int
}

// MeasureAcceptLatency turns the accept latency measurement on or off.
func (d *Desk) MeasureAcceptLatency(on bool) {
	d.lat.mu.Lock()
	if d.lat.base.IsZero() {
		d.lat.base = time.Now()
	}
	d.lat.mu.Unlock()
	d.lat.on.Store(on)
}

// ResetAcceptLatency forgets the samples so far (frames already written still
// match their accepts).
func (d *Desk) ResetAcceptLatency() {
	d.lat.mu.Lock()
	defer d.lat.mu.Unlock()
	d.lat.samples, d.lat.unmatched, d.lat.dropped = d.lat.samples[:0], 0, 0
}

// AcceptLatency reports the accept latencies measured since the last reset.
func (d *Desk) AcceptLatency() AcceptLatency {
	d.lat.mu.Lock()
	s := slices.Clone(d.lat.samples)
	r := AcceptLatency{Accepts: len(s), Unmatched: d.lat.unmatched, Dropped: d.lat.dropped}
	d.lat.mu.Unlock()
	if len(s) == 0 {
		return r
	}
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	r.P50, r.P90, r.P99, r.Max = rank(0.50), rank(0.90), rank(0.99), s[len(s)-1]
	return r
}

// clock is now, since base, when measuring; 0 when not.
func (l *acceptLatency) clock() time.Duration {
	if !l.on.Load() {
		return 0
	}
	return time.Since(l.base)
}

// frameWritten notes that the quote frame is about to be written now.
func (l *acceptLatency) frameWritten(frame []byte) {
	at := l.clock()
	if at == 0 {
		return
	}
	id := quoteIDOf(frame)
	if id == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.written == nil {
		l.written = make(map[string]time.Duration)
	}
	if len(l.written) >= latencyPendingMax {
		for k, w := range l.written {
			if at-w > latencyPendingAge {
				delete(l.written, k)
			}
		}
		if len(l.written) >= latencyPendingMax {
			return
		}
	}
	l.written[id] = at
}

// acceptReceived records the latency of the accept body received at at (a
// clock value taken when its request arrived).
func (l *acceptLatency) acceptReceived(body []byte, at time.Duration) {
	if at == 0 {
		return
	}
	id := quoteIDOf(body)
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.written[id]
	switch {
	case !ok:
		l.unmatched++
		return
	case len(l.samples) >= latencySamplesMax:
		l.dropped++
	default:
		l.samples = append(l.samples, at-w)
	}
	delete(l.written, id)
}

// quoteIDOf finds the quote id in a quote frame or an accept body, both
// {"quote":{"quoteId":"…",…}} as the desk writes them; "" if absent.
func quoteIDOf(b []byte) string {
	const key = `"quoteId":"`
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return ""
	}
	b = b[i+len(key):]
	j := bytes.IndexByte(b, '"')
	if j <= 0 || j > 64 {
		return ""
	}
	return string(b[:j])
}

func (d *Desk) latencyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_sim/accept-latency", func(w http.ResponseWriter, r *http.Request) {
		deskJSON(w, http.StatusOK, d.AcceptLatency())
	})
	mux.HandleFunc("POST /_sim/accept-latency/reset", func(w http.ResponseWriter, r *http.Request) {
		d.ResetAcceptLatency()
		deskJSON(w, http.StatusOK, struct{}{})
	})
}
