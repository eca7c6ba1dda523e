// Package replay records every quote frame the daemon decides, with the
// outside state its decision saw, and replays a policy over those recordings
// (SPEC 5.6a): what a policy change would have done, beside what was done.
//
// The Recorder promises that recording never slows a decision: its callback
// only offers the frame to a bounded queue and returns; a full queue drops the
// frame and counts it in treasuryd_recorder_dropped_total. A background writer
// batches the queue into the journal and prunes frames older than
// state.quote_retention.
//
// Run promises that replaying the policy the daemon ran reproduces the
// daemon's decisions: it calls the same decode, validation and decision code
// (astra.QuoteDecoder, quotes.Validate, strategy.Program.Decide) with the
// recorded outside state, and mirrors what became of the daemon's real
// accepts.
package replay

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"treasuryd/internal/journal"
	"treasuryd/internal/strategy"
)

const (
	// QueueSize bounds the recorder's queue. At the SPEC 8 load (200
	// programs × 10 quotes/s = 2,000 frames/s) 8192 frames is four seconds of
	// recording: enough to ride out a slow fsync or a prune, small enough
	// (an entry is ~150 bytes plus its ~400-byte frame, so ~4.5 MB when full)
	// to never matter for memory.
	QueueSize = 8192
	// batchSize: the writer flushes once this many frames are waiting, or
	// every flushEvery, whichever comes first.
	batchSize  = 512
	flushEvery = 100 * time.Millisecond
	// writeChunk bounds the frames of one journal transaction. The journal
	// has one writer slot for the whole process and the accept path journals
	// through it before every accept, so a recording transaction must be
	// short: a frame insert costs about 8 µs here, so 32 frames hold the
	// slot for about a quarter of a millisecond.
	writeChunk = 32
	// pruneEvery is how often frames older than the retention are deleted.
	pruneEvery = time.Minute
	// pruneRows is the number of rows one prune transaction aims to delete,
	// for the same reason as writeChunk; the time slice of each delete
	// adapts to reach it.
	pruneRows = 512
	// pruneFirstSlice is the time span of the first delete of a prune.
	pruneFirstSlice = 10 * time.Second
	// errorLogEvery rate-limits the writer's error log lines (a broken disk
	// would otherwise log every flush).
	errorLogEvery = 10 * time.Second
)

// FrameStore is what the recorder needs of *journal.Journal.
type FrameStore interface {
	RecordFrames(ctx context.Context, frames []journal.Frame) error
	PruneFrames(ctx context.Context, before time.Time) (int64, error)
	Frames(ctx context.Context, since time.Time, program string, fn func(journal.Frame) error) error
}

// RecorderOptions configure a Recorder.
type RecorderOptions struct {
	Store     FrameStore
	Retention time.Duration      // frames older than this are pruned; must be > 0
	Dropped   prometheus.Counter // treasuryd_recorder_dropped_total; may be nil
	Log       *zap.Logger
	Now       func() time.Time // the clock of pruning (default time.Now)
	QueueSize int              // default QueueSize; tests make it tiny
}

// entry is one frame waiting to be written. It holds the frame slice itself:
// the stream hands each frame to its handler as a fresh buffer that the
// handler owns (quotes.Event), so nothing is copied on the decision path.
type entry struct {
	program string
	frame   []byte
	at      time.Time
	env     strategy.Env
	outcome string
}

// Recorder writes recorded frames to the journal off the decision path.
type Recorder struct {
	o         RecorderOptions
	log       *zap.Logger
	q         chan entry
	kick      chan struct{} // a batch is waiting (capacity 1)
	kickAt    int           // queue length that kicks the writer: a batch, or half a small queue
	retention atomic.Int64  // nanoseconds; 0 records nothing
	closed    atomic.Bool

	mu      sync.Mutex
	state   int // 0 new, 1 started, 2 stopped
	quit    chan struct{}
	done    chan struct{}
	stopCtx context.Context // the context of the final flush, set before quit closes
	cancel  context.CancelFunc
	errLog  time.Time
	errSupp int
}

// NewRecorder builds a recorder. It does no I/O.
func NewRecorder(o RecorderOptions) *Recorder {
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.QueueSize <= 0 {
		o.QueueSize = QueueSize
	}
	r := &Recorder{o: o, log: o.Log, q: make(chan entry, o.QueueSize), kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	r.kickAt = max(1, min(batchSize, o.QueueSize/2))
	r.retention.Store(int64(o.Retention))
	return r
}

// Record queues one decided frame (strategy.Deps.Recorder). It never blocks:
// when the queue is full the frame is dropped and counted.
func (r *Recorder) Record(program string, frame []byte, at time.Time, env strategy.Env, outcome string) {
	if r.retention.Load() <= 0 {
		return // recording switched off by a reload
	}
	if r.closed.Load() {
		r.drop()
		return
	}
	select {
	case r.q <- entry{program: program, frame: frame, at: at, env: env, outcome: outcome}:
		// The writer sleeps on its ticker rather than on the queue, so a
		// send does not wake a goroutine; a full batch kicks it early.
		if len(r.q) >= r.kickAt {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
	default:
		r.drop()
	}
}

func (r *Recorder) drop() {
	if r.o.Dropped != nil {
		r.o.Dropped.Inc()
	}
}

// SetRetention changes the retention (a reload); 0 stops recording new
// frames and pruning.
func (r *Recorder) SetRetention(d time.Duration) { r.retention.Store(int64(d)) }

// Start starts the writer and returns.
func (r *Recorder) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != 0 {
		return errors.New("replay: recorder already started")
	}
	if r.o.Store == nil {
		return errors.New("replay: recorder needs a frame store")
	}
	r.state = 1
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go r.run(runCtx)
	return nil
}

// Stop writes what is queued, within ctx, and stops the writer. Frames
// recorded after Stop are dropped and counted. Safe to call twice.
func (r *Recorder) Stop(ctx context.Context) error {
	r.mu.Lock()
	if r.state != 1 {
		r.state = 2
		r.closed.Store(true)
		r.mu.Unlock()
		return nil
	}
	r.state = 2
	r.closed.Store(true)
	r.stopCtx = ctx
	close(r.quit)
	r.mu.Unlock()
	select {
	case <-r.done:
		r.cancel()
		return nil
	case <-ctx.Done():
		r.cancel()
		<-r.done
		return ctx.Err()
	}
}

// run is the writer: every flushEvery, or when a batch is waiting, it
// drains the queue into the journal; every pruneEvery it prunes.
func (r *Recorder) run(ctx context.Context) {
	defer close(r.done)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	batch := make([]journal.Frame, 0, batchSize)
	nextPrune := time.Time{} // prune once at start
	for {
		select {
		case <-r.kick:
			batch = r.drain(ctx, batch)
		case <-tick.C:
			batch = r.drain(ctx, batch)
			if now := r.o.Now(); !now.Before(nextPrune) {
				r.prune(ctx, now)
				nextPrune = now.Add(pruneEvery)
			}
		case <-r.quit:
			r.mu.Lock()
			sctx := r.stopCtx
			r.mu.Unlock()
			// Stop bounds the final flush; ctx is cancelled when it gives up.
			fctx, cancel := context.WithCancel(sctx)
			stop := context.AfterFunc(ctx, cancel)
			r.drain(fctx, batch)
			stop()
			cancel()
			return
		}
	}
}

// drain writes what is queued now, batchSize frames at a time, and returns
// the emptied batch. Frames queued meanwhile wait for the next round, so a
// busy queue never keeps the writer from its ticker.
func (r *Recorder) drain(ctx context.Context, batch []journal.Frame) []journal.Frame {
	for n := len(r.q); n > 0; n-- {
		e := <-r.q
		batch = append(batch, e.toFrame())
		if len(batch) >= batchSize {
			batch = r.flush(ctx, batch)
		}
	}
	return r.flush(ctx, batch)
}

func (e *entry) toFrame() journal.Frame {
	return journal.Frame{
		Program:      e.program,
		ReceivedAt:   e.at,
		Raw:          e.frame,
		Paused:       e.env.Paused,
		GateOpen:     e.env.GateOpen,
		GateReason:   e.env.GateReason,
		Balance:      e.env.Balance,
		BalanceKnown: e.env.BalanceKnown,
		InFlight:     e.env.InFlight,
		Outcome:      e.outcome,
	}
}

// flush writes batch in transactions of at most writeChunk frames and
// returns it emptied. Frames that fail to write are lost (logged): a
// recording costs replay fidelity, never a decision.
func (r *Recorder) flush(ctx context.Context, batch []journal.Frame) []journal.Frame {
	for i := 0; i < len(batch); i += writeChunk {
		chunk := batch[i:min(i+writeChunk, len(batch))]
		if err := r.o.Store.RecordFrames(ctx, chunk); err != nil {
			r.logError("recorded frames not written", err, len(chunk))
		}
	}
	clear(batch) // let the frames' buffers go
	return batch[:0]
}

// errFirstFound stops a Frames walk after its first row.
var errFirstFound = errors.New("first frame found")

// prune deletes frames older than the retention, in time slices of about
// pruneRows frames each so that no delete holds the journal's writer for
// long.
func (r *Recorder) prune(ctx context.Context, now time.Time) {
	ret := time.Duration(r.retention.Load())
	if ret <= 0 {
		return
	}
	before := now.Add(-ret)
	var oldest time.Time
	err := r.o.Store.Frames(ctx, time.Time{}, "", func(f journal.Frame) error {
		oldest = f.ReceivedAt
		return errFirstFound
	})
	if err != nil && !errors.Is(err, errFirstFound) {
		r.logError("recorded frames not pruned", err, 0)
		return
	}
	if oldest.IsZero() || !oldest.Before(before) {
		return
	}
	var total int64
	slice := pruneFirstSlice
	for cut := oldest; cut.Before(before); {
		cut = cut.Add(slice)
		if cut.After(before) {
			cut = before
		}
		n, err := r.o.Store.PruneFrames(ctx, cut)
		if err != nil {
			r.logError("recorded frames not pruned", err, 0)
			return
		}
		total += n
		switch {
		case n < pruneRows/2 && slice < 24*time.Hour:
			slice *= 2
		case n > pruneRows && slice > time.Millisecond:
			slice /= 2
		}
		if ctx.Err() != nil {
			return
		}
	}
	r.log.Debug("recorded frames pruned", zap.Int64("frames", total), zap.Time("before", before))
}

// logError logs writer errors at most once per errorLogEvery, saying how
// many were suppressed in between.
func (r *Recorder) logError(msg string, err error, frames int) {
	now := time.Now()
	if !r.errLog.IsZero() && now.Sub(r.errLog) < errorLogEvery {
		r.errSupp++
		return
	}
	r.log.Error(msg, zap.Error(err), zap.Int("frames", frames), zap.Int("suppressed", r.errSupp))
	r.errLog, r.errSupp = now, 0
}
