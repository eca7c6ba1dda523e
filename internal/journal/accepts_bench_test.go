package journal

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds cpu-ns/op: the process's CPU time per op since start. On a
// shared, busy machine it varies far less than ns/op, which counts the time
// spent waiting for a CPU too.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(processCPU(b)-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkInsertAccept measures what journaling an accept before it is sent
// costs the caller (SPEC 8: microseconds): one InsertAccept, committed with
// synchronous=NORMAL, per op. "callers=N" runs N goroutines inserting at
// once, as N programs accepting together do; ns/op is then the journal's
// throughput per accept, and each caller waits at most one batch. cpu-ns/op
// is the CPU time per accept, background checkpoints included.
func BenchmarkInsertAccept(b *testing.B) { benchInsertAccept(b) }

// BenchmarkInsertAcceptPostgres is BenchmarkInsertAccept on the PostgreSQL
// journal (TREASURYD_TEST_POSTGRES_DSN), with a leadership term, so each
// insert also reads the fencing term in its transaction. Its cost is the
// round trips to the server, not CPU: read ns/op beside cpu-ns/op.
func BenchmarkInsertAcceptPostgres(b *testing.B) { b.Run("postgres", benchInsertAccept) }

func benchInsertAccept(b *testing.B) {
	benchCallers(b, []int{1, 8, 50}, func(ctx context.Context, j *Journal, a Accept) error {
		_, err := j.InsertAccept(ctx, a)
		return err
	})
}

// benchCallers runs op b.N times in all, shared among each number of
// concurrent callers (a sub-benchmark each), every caller with its own
// program's accept, and reports the process's CPU per op.
func benchCallers(b *testing.B, callerCounts []int, op func(context.Context, *Journal, Accept) error) {
	for _, callers := range callerCounts {
		b.Run("callers="+strconv.Itoa(callers), func(b *testing.B) {
			j, _ := openTemp(b)
			ctx := context.Background()
			accepts := make([]Accept, callers)
			for i := range accepts {
				accepts[i] = sampleAccept(b, fmt.Sprintf("p%02d", i), t0)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU(b)
			var wg sync.WaitGroup
			errs := make(chan error, callers)
			for g := range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a := accepts[g]
					for next.Add(1) <= int64(b.N) {
						if err := op(ctx, j, a); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			reportCPU(b, cpu)
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkInsertAcceptAndResult is the whole journal cost of one accept on
// the accept path: the insert before the POST and the result after, each in
// a transaction of its own, as for a lone program. With one caller no insert
// ever comes to take the result along, so the result's linger
// (resultLinger) is turned off here: it would only add its wait, and the
// CPU an idle process spends waking up, to every op. BenchmarkAcceptPath has
// programs accepting together, results riding on inserts.
func BenchmarkInsertAcceptAndResult(b *testing.B) {
	j, _ := openTemp(b)
	j.group.linger = 0
	ctx := context.Background()
	a := sampleAccept(b, "p", t0)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU(b)
	for range b.N {
		id, err := j.InsertAccept(ctx, a)
		if err != nil {
			b.Fatal(err)
		}
		if err := j.SetAcceptResult(ctx, id, AcceptOK, "", t0); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportCPU(b, cpu)
}

// BenchmarkAcceptPath is the journal's part of the accept path with
// several programs accepting at once, as under SPEC 8's side-by-side load:
// each of "callers" goroutines journals an accept, then its result, over and
// over. cpu-ns/op is the CPU time per accept (insert and result).
func BenchmarkAcceptPath(b *testing.B) { benchAcceptPath(b) }

// BenchmarkAcceptPathPostgres is BenchmarkAcceptPath on the PostgreSQL
// journal (TREASURYD_TEST_POSTGRES_DSN), with a leadership term.
func BenchmarkAcceptPathPostgres(b *testing.B) { b.Run("postgres", benchAcceptPath) }

func benchAcceptPath(b *testing.B) {
	benchCallers(b, []int{8, 50}, func(ctx context.Context, j *Journal, a Accept) error {
		id, err := j.InsertAccept(ctx, a)
		if err == nil {
			err = j.SetAcceptResult(ctx, id, AcceptOK, "", t0)
		}
		return err
	})
}
