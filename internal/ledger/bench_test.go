package ledger_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/astra"
	"treasuryd/internal/journal"
	"treasuryd/internal/ledger"
	"treasuryd/internal/sim"
)

// SPEC 8: a 1,000,000-transaction history reconciles in under 5 s with a
// peak RSS under 150 MB.
const (
	benchTransactions = 1_000_000
	benchPeakRSSBytes = 150 << 20
)

// startMillionDesk starts a simulator whose history holds at least
// benchTransactions transactions. SeedHistory(n) books n balanced pairs
// (2n transactions) generated on the fly, so the simulator itself holds a
// few bytes, not the list.
func startMillionDesk(tb testing.TB) *sim.Desk {
	tb.Helper()
	desk, err := sim.NewDesk(sim.DeskConfig{
		AccountID: account,
		APIKey:    apiKey,
		Seed:      11,
		Balances:  map[string]decimal.Decimal{"BTC": dec("5"), "USD": dec("250000"), "ETH": dec("40")},
		Prices:    map[string]decimal.Decimal{"BTC-USD": dec("65000"), "ETH-USD": dec("3200")},
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := desk.Start("127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { desk.Close() })
	desk.SeedHistory(benchTransactions / 2)
	return desk
}

// newMillionReconciler builds the production pieces against a desk URL: the
// astra client, a fresh journal in dir, and the reconciler.
func newMillionReconciler(tb testing.TB, baseURL, dir string) *ledger.Reconciler {
	tb.Helper()
	client, err := astra.New(astra.Options{BaseURL: baseURL, WSURL: "ws://127.0.0.1:1", APIKey: apiKey, AccountID: account, Timeout: 10 * time.Second})
	if err != nil {
		tb.Fatal(err)
	}
	j, err := journal.Open(filepath.Join(dir, "journal.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { j.Close() })
	return ledger.New(ledger.Deps{Desk: client, Journal: j, Epoch: j.Epoch})
}

// checkMillionReport fails unless the run read the whole history and found
// it clean.
func checkMillionReport(tb testing.TB, rep *ledger.Report, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("reconcile: %v", err)
	}
	if !rep.Clean() {
		tb.Fatalf("report has %d breaks, first: %+v", len(rep.Breaks), rep.Breaks[0])
	}
	if rep.Transactions < benchTransactions {
		tb.Fatalf("report read %d transactions, want >= %d", rep.Transactions, benchTransactions)
	}
}

// peakSampler records the highest heap-in-use plus stack-in-use seen while
// it runs, read every 10ms through runtime/metrics (which, unlike
// runtime.ReadMemStats, does not stop the world).
type peakSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak uint64
}

var peakMetrics = []string{
	"/memory/classes/heap/objects:bytes", // with heap/unused: HeapInuse
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/stacks:bytes", // StackInuse
}

func startPeakSampler() *peakSampler {
	s := &peakSampler{stop: make(chan struct{})}
	samples := make([]rtmetrics.Sample, len(peakMetrics))
	for i, name := range peakMetrics {
		samples[i].Name = name
	}
	read := func() {
		rtmetrics.Read(samples)
		var sum uint64
		for _, m := range samples {
			if m.Value.Kind() == rtmetrics.KindUint64 {
				sum += m.Value.Uint64()
			}
		}
		s.peak = max(s.peak, sum)
	}
	read()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				read()
				return
			case <-t.C:
				read()
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peak in MB.
func (s *peakSampler) Stop() float64 {
	close(s.stop)
	s.wg.Wait()
	return float64(s.peak) / (1 << 20)
}

// BenchmarkReconcile1M reconciles a 1,000,000-transaction history, one full
// run per iteration, over loopback from the simulator. peak-heap-MB is the
// whole process's heap and stacks in use, simulator included; see
// TestReconcile1MFromSeparateProcess for the reconciler's RSS alone.
func BenchmarkReconcile1M(b *testing.B) {
	desk := startMillionDesk(b)
	rec := newMillionReconciler(b, desk.BaseURL(), b.TempDir())
	ctx := context.Background()
	runtime.GC()
	sampler := startPeakSampler()
	b.ReportAllocs()
	for b.Loop() {
		rep, err := rec.Run(ctx)
		checkMillionReport(b, rep, err)
	}
	b.ReportMetric(sampler.Stop(), "peak-heap-MB")
}

// Environment of TestReconcile1MFromSeparateProcess.
const (
	benchRSSEnv      = "TREASURYD_BENCH_RSS"      // "1": run it
	benchChildURLEnv = "TREASURYD_BENCH_DESK_URL" // set in the child: the parent's simulator
)

// TestReconcile1MFromSeparateProcess measures SPEC 8's peak RSS for the
// reconciler alone: the simulator runs here, and a child process (this test
// binary, re-run in child mode) builds the client, journal and reconciler
// and reconciles the 1,000,000-transaction history once. The child's peak
// RSS comes from its rusage. Opt-in (TREASURYD_BENCH_RSS=1): it is a
// measurement, not a unit test, and takes seconds. Build without -race, whose
// shadow memory multiplies RSS.
func TestReconcile1MFromSeparateProcess(t *testing.T) {
	if url := os.Getenv(benchChildURLEnv); url != "" {
		reconcileChild(t, url)
		return
	}
	if os.Getenv(benchRSSEnv) != "1" {
		t.Skip(benchRSSEnv + "=1 runs this measurement")
	}
	desk := startMillionDesk(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestReconcile1MFromSeparateProcess$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), benchChildURLEnv+"="+desk.BaseURL())
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall := time.Since(start)
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatalf("no rusage for the child on %s", runtime.GOOS)
	}
	rssBytes := ru.Maxrss * 1024 // Linux reports kilobytes
	var runTook time.Duration
	var txs int64
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, found := strings.CutPrefix(line, "RECONCILE "); found {
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "took":
					runTook, _ = time.ParseDuration(v)
				case "transactions":
					txs, _ = strconv.ParseInt(v, 10, 64)
				}
			}
		}
	}
	if txs < benchTransactions {
		t.Fatalf("child reported %d transactions, want >= %d\n%s", txs, benchTransactions, out)
	}
	t.Logf("reconciler in a child process: %d transactions, run %s (child wall %s incl. start-up), peak RSS %.1f MB, user CPU %s, sys CPU %s",
		txs, runTook, wall, float64(rssBytes)/(1<<20),
		time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()))
	if rssBytes >= benchPeakRSSBytes {
		t.Errorf("peak RSS %.1f MB, SPEC 8 allows under %d MB", float64(rssBytes)/(1<<20), benchPeakRSSBytes>>20)
	}
}

// reconcileChild is the child's side: one reconciliation against the
// parent's simulator, reported on stdout for the parent to read.
func reconcileChild(t *testing.T, url string) {
	rec := newMillionReconciler(t, url, t.TempDir())
	start := time.Now()
	rep, err := rec.Run(context.Background())
	took := time.Since(start)
	checkMillionReport(t, rep, err)
	fmt.Printf("RECONCILE transactions=%d took=%s\n", rep.Transactions, took)
}
