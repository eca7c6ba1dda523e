package journal

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// openTuned opens a journal whose checkpointer runs every `every`, with the
// given WAL limit and truncate retry, logging to an observer.
func openTuned(t *testing.T, every, retry time.Duration, limit int64) (*Journal, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	j := New(filepath.Join(t.TempDir(), "journal.db"))
	j.SetLogger(zap.New(core))
	j.ckEvery, j.ckRetry, j.ckLimit = every, retry, limit
	if err := j.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, logs
}

func walSize(t *testing.T, j *Journal) int64 {
	t.Helper()
	fi, err := os.Stat(j.path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// insertAccepts writes n accepts from n goroutines (so, batched).
func insertAccepts(t *testing.T, j *Journal, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := j.InsertAccept(context.Background(), sampleAccept(t, "p", t0)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestBackgroundCheckpointsKeepTheWALFromGrowing(t *testing.T) {
	j, _ := openTuned(t, 2*time.Millisecond, time.Hour, 1<<40)
	const rounds = 20
	var first int64
	for r := range rounds {
		for range 20 { // many transactions: the WAL would grow by each
			insertAccepts(t, j, 4)
		}
		if r == 0 {
			first = walSize(t, j)
		}
		// A checkpoint that started after these writes has copied them all.
		after := j.stats.checkpoints.Load() + 1
		waitFor(t, "a complete checkpoint", func() bool { return j.stats.checkpoints.Load() > after })
	}
	// Without checkpoints (the write connections never run one) the WAL
	// holds every round; with them each round reuses the same space.
	if got := walSize(t, j); got > 3*first {
		t.Errorf("WAL is %d bytes after %d rounds, %d after the first: checkpoints are not keeping it short", got, rounds, first)
	}
	as, err := j.Accepts(context.Background(), AcceptFilter{})
	mustNil(t, err)
	if len(as) != rounds*20*4 {
		t.Errorf("%d accepts, want %d", len(as), rounds*20*4)
	}
}

func TestWALPastItsLimitIsTruncatedOnceReadersLetGo(t *testing.T) {
	ctx := context.Background()
	const limit = 64 << 10
	j, logs := openTuned(t, 2*time.Millisecond, 5*time.Millisecond, limit)
	insertAccepts(t, j, 1)

	// A reader holding an old snapshot keeps every checkpoint from
	// finishing, so the WAL grows past the limit.
	conn, err := j.r.Conn(ctx)
	mustNil(t, err)
	defer conn.Close()
	_, err = conn.ExecContext(ctx, "BEGIN")
	mustNil(t, err)
	var n int
	mustNil(t, conn.QueryRowContext(ctx, "SELECT count(*) FROM accepts").Scan(&n))
	for walSize(t, j) <= 2*limit {
		insertAccepts(t, j, 8)
	}
	waitFor(t, "a failed truncating checkpoint logged", func() bool {
		return logs.FilterMessage("journal: WAL past its limit and a truncating checkpoint failed; retrying later").Len() > 0
	})
	// The reader still sees its snapshot: no checkpoint went past it.
	var again int
	mustNil(t, conn.QueryRowContext(ctx, "SELECT count(*) FROM accepts").Scan(&again))
	if again != n {
		t.Errorf("reader's snapshot changed from %d to %d rows", n, again)
	}

	truncates := j.stats.truncates.Load()
	_, err = conn.ExecContext(ctx, "COMMIT")
	mustNil(t, err)
	waitFor(t, "the WAL truncated", func() bool { return j.stats.truncates.Load() > truncates })
	if got := walSize(t, j); got > limit {
		t.Errorf("WAL is %d bytes after the truncating checkpoint, limit %d", got, limit)
	}
	if logs.FilterMessage("journal: WAL was past its limit; truncated it").Len() == 0 {
		t.Error("the truncation was not logged")
	}
	as, err := j.Accepts(ctx, AcceptFilter{})
	mustNil(t, err)
	if len(as) < 2 {
		t.Errorf("%d accepts after the truncation", len(as))
	}
}
