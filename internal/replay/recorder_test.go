package replay

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/shopspring/decimal"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/zap"

	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/strategy"
)

const testAccount = "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func openJournal(t testing.TB) *journal.Journal {
	t.Helper()
	j, err := journal.Open(filepath.Join(t.TempDir(), "treasuryd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func allFrames(t testing.TB, j *journal.Journal) []journal.Frame {
	t.Helper()
	var fs []journal.Frame
	if err := j.Frames(context.Background(), time.Time{}, "", func(f journal.Frame) error {
		fs = append(fs, f)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return fs
}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func stopRecorder(t testing.TB, r *Recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Stop(ctx); err != nil {
		t.Fatalf("recorder stop: %v", err)
	}
}

// stallingStore is a frame store whose writes block until released.
type stallingStore struct {
	release chan struct{}
	mu      sync.Mutex
	frames  int
}

func (s *stallingStore) RecordFrames(ctx context.Context, fs []journal.Frame) error {
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	s.frames += len(fs)
	s.mu.Unlock()
	return nil
}

func (s *stallingStore) PruneFrames(context.Context, time.Time) (int64, error) { return 0, nil }

func (s *stallingStore) Frames(context.Context, time.Time, string, func(journal.Frame) error) error {
	return nil
}

func TestRecordNeverBlocksAndAFullQueueDropsAndCounts(t *testing.T) {
	m := metrics.New("test")
	store := &stallingStore{release: make(chan struct{})}
	const queue = 16
	r := NewRecorder(RecorderOptions{Store: store, Retention: time.Hour, Dropped: m.RecorderDropped, QueueSize: queue})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	frame := []byte(`{"quote":{}}`)
	env := strategy.Env{GateOpen: true, Balance: dec("5"), BalanceKnown: true}
	const calls = 10000
	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		for i := 0; i < calls; i++ {
			r.Record("sell-btc", frame, time.Unix(0, int64(i+1)), env, strategy.OutcomeLimitPrice)
		}
		done <- time.Since(start)
	}()
	select {
	case took := <-done:
		t.Logf("%d Record calls with the writer stalled took %s (%s per call)", calls, took, took/calls)
	case <-time.After(10 * time.Second):
		t.Fatal("Record blocked while the writer was stalled")
	}
	dropped := int(testutil.ToFloat64(m.RecorderDropped))
	// The writer holds at most one batch in hand while stalled, the queue
	// the rest: everything else was dropped.
	if dropped < calls-queue-batchSize || dropped >= calls {
		t.Fatalf("dropped %d of %d with a queue of %d", dropped, calls, queue)
	}
	close(store.release)
	stopRecorder(t, r)
	store.mu.Lock()
	written := store.frames
	store.mu.Unlock()
	if written+dropped != calls {
		t.Fatalf("written %d + dropped %d != %d recorded: frames lost without being counted", written, dropped, calls)
	}
}

func TestStopWritesEveryQueuedFrameWithItsState(t *testing.T) {
	j := openJournal(t)
	m := metrics.New("test")
	r := NewRecorder(RecorderOptions{Store: j, Retention: time.Hour, Dropped: m.RecorderDropped})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	const n = 1500 // several batches, and a partial one left for Stop
	for i := 0; i < n; i++ {
		env := strategy.Env{Paused: i%3 == 0, GateOpen: i%5 != 0, GateReason: "no_proof", Balance: decimal.New(int64(i), -2),
			BalanceKnown: i%7 != 0, InFlight: i%11 == 0}
		r.Record(fmt.Sprintf("p%d", i%2), []byte(fmt.Sprintf(`{"n":%d}`, i)), t0.Add(time.Duration(i)*time.Microsecond), env,
			strategy.Outcomes[i%len(strategy.Outcomes)])
	}
	stopRecorder(t, r)
	if d := testutil.ToFloat64(m.RecorderDropped); d != 0 {
		t.Fatalf("dropped %v frames with an idle journal", d)
	}
	fs := allFrames(t, j)
	if len(fs) != n {
		t.Fatalf("journal holds %d frames, want %d", len(fs), n)
	}
	for i, f := range fs {
		want := journal.Frame{Program: fmt.Sprintf("p%d", i%2), ReceivedAt: t0.Add(time.Duration(i) * time.Microsecond),
			Raw: []byte(fmt.Sprintf(`{"n":%d}`, i)), Paused: i%3 == 0, GateOpen: i%5 != 0, GateReason: "no_proof",
			Balance: decimal.New(int64(i), -2), BalanceKnown: i%7 != 0, InFlight: i%11 == 0, Outcome: strategy.Outcomes[i%len(strategy.Outcomes)]}
		if f.Program != want.Program || !f.ReceivedAt.Equal(want.ReceivedAt) || string(f.Raw) != string(want.Raw) ||
			f.Paused != want.Paused || f.GateOpen != want.GateOpen || f.GateReason != want.GateReason ||
			!f.Balance.Equal(want.Balance) || f.BalanceKnown != want.BalanceKnown || f.InFlight != want.InFlight ||
			f.Outcome != want.Outcome {
			t.Fatalf("frame %d = %+v, want %+v", i, f, want)
		}
	}
	// After Stop nothing more is written, and what arrives is counted.
	r.Record("p0", []byte(`{}`), t0, strategy.Env{}, strategy.OutcomePaused)
	if d := testutil.ToFloat64(m.RecorderDropped); d != 1 {
		t.Fatalf("dropped = %v after a Record past Stop, want 1", d)
	}
	stopRecorder(t, r) // safe twice
}

func TestRecorderPrunesFramesOlderThanTheRetention(t *testing.T) {
	j := openJournal(t)
	now := time.Now()
	// 6000 old frames over an hour (several prune slices), 100 recent ones.
	var old []journal.Frame
	for i := 0; i < 6000; i++ {
		old = append(old, journal.Frame{Program: "p", ReceivedAt: now.Add(-3 * time.Hour).Add(time.Duration(i) * 600 * time.Millisecond),
			Raw: []byte(`{}`), Outcome: strategy.OutcomeLimitPrice})
	}
	for i := 0; i < 100; i++ {
		old = append(old, journal.Frame{Program: "p", ReceivedAt: now.Add(-30 * time.Minute).Add(time.Duration(i) * time.Second),
			Raw: []byte(`{}`), Outcome: strategy.OutcomeAccepted})
	}
	if err := j.RecordFrames(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	r := NewRecorder(RecorderOptions{Store: j, Retention: time.Hour, Now: func() time.Time { return now }})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer stopRecorder(t, r)
	waitFor(t, "the old frames pruned", 10*time.Second, func() bool { return len(allFrames(t, j)) == 100 })
	for _, f := range allFrames(t, j) {
		if f.ReceivedAt.Before(now.Add(-time.Hour)) || f.Outcome != strategy.OutcomeAccepted {
			t.Fatalf("frame %+v kept", f)
		}
	}
}

func TestRetentionZeroRecordsNothing(t *testing.T) {
	j := openJournal(t)
	m := metrics.New("test")
	r := NewRecorder(RecorderOptions{Store: j, Retention: time.Hour, Dropped: m.RecorderDropped})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.SetRetention(0) // a reload to quote_retention: 0
	r.Record("p", []byte(`{}`), time.Now(), strategy.Env{}, strategy.OutcomePaused)
	stopRecorder(t, r)
	if n := len(allFrames(t, j)); n != 0 {
		t.Fatalf("%d frames recorded with retention 0", n)
	}
	if d := testutil.ToFloat64(m.RecorderDropped); d != 0 {
		t.Fatalf("dropped = %v: not recording is not dropping", d)
	}
}

// TestModuleWiresTheRecorderOnlyWithARetention runs replay.Module in an fx
// app: with a retention it provides a recorder whose frames reach the journal
// by OnStop; with 0 it provides none.
func TestModuleWiresTheRecorderOnlyWithARetention(t *testing.T) {
	for _, retention := range []time.Duration{time.Hour, 0} {
		t.Run(retention.String(), func(t *testing.T) {
			j := openJournal(t)
			p := &config.Policy{AccountID: testAccount, State: config.State{QuoteRetention: retention}}
			var rec strategy.RecordFunc
			app := fxtest.New(t,
				fx.NopLogger,
				fx.Supply(p, j, metrics.New("test"), zap.NewNop()),
				fx.Provide(func() *config.Reloader { return config.NewReloader("unused.yaml", p, zap.NewNop(), nil) }),
				Module,
				fx.Populate(&rec),
			)
			app.RequireStart()
			if retention == 0 {
				if rec != nil {
					t.Fatal("a recorder was wired with quote_retention 0")
				}
				app.RequireStop()
				return
			}
			if rec == nil {
				t.Fatal("no recorder wired")
			}
			rec("p", []byte(`{}`), time.Now(), strategy.Env{}, strategy.OutcomePaused)
			app.RequireStop()
			if n := len(allFrames(t, j)); n != 1 {
				t.Fatalf("journal holds %d frames after stop, want 1", n)
			}
		})
	}
}
