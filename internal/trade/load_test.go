package trade

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/shopspring/decimal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"treasuryd/internal/astra"
	"treasuryd/internal/balances"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/metrics"
	"treasuryd/internal/sim"
	"treasuryd/internal/strategy"
)

// The SPEC 8 load scenarios against the simulator. They are slow and
// heavy, so they run only with TREASURYD_LOAD=1:
//
//	TREASURYD_LOAD=1 go test -run '^$' -bench BenchmarkLoad200Programs -benchtime 1x ./internal/trade/
//	TREASURYD_LOAD=1 go test -run '^Test1000Streams$' -v ./internal/trade/
//
// TREASURYD_LOAD_SECONDS sets how long the 200-program run lasts (default
// 20). TestLoadHarnessTimesEveryAccept runs the same harness briefly in CI.

const loadEnv = "TREASURYD_LOAD"

func needLoad(tb testing.TB) {
	tb.Helper()
	if os.Getenv(loadEnv) != "1" {
		tb.Skipf("load scenario: set %s=1 to run it (SPEC 8)", loadEnv)
	}
}

// loadPrograms are n programs with distinct names on two pairs, every one
// crossing its limit on every quote the simulator sends (sell BTC at 1 USD or
// better, buy ETH at up to a billion), with no cooldown, target, cap or
// reserve: each accepts every quote that arrives while it has no accept in
// flight.
func loadPrograms(n int) []config.Program {
	ps := make([]config.Program, n)
	for i := range ps {
		if i%2 == 0 {
			ps[i] = config.Program{Name: fmt.Sprintf("sell-btc-%04d", i), Base: "BTC", Quote: "USD",
				Side: config.SideSell, Size: dec("0.001"), LimitPrice: dec("1"), MinValidity: 200 * time.Millisecond}
		} else {
			ps[i] = config.Program{Name: fmt.Sprintf("buy-eth-%04d", i), Base: "ETH", Quote: "USD",
				Side: config.SideBuy, Notional: dec("100"), LimitPrice: dec("1000000000"), MinValidity: 200 * time.Millisecond}
		}
	}
	return ps
}

// loadDesk starts a simulated desk with balances no load run can exhaust.
func loadDesk(tb testing.TB, interval time.Duration) *sim.Desk {
	tb.Helper()
	desk, err := sim.NewDesk(sim.DeskConfig{
		AccountID: testAccount, APIKey: testAPIKey, Seed: 8,
		Balances: map[string]decimal.Decimal{"BTC": dec("1000000000"), "ETH": dec("1000000000"),
			"USD": dec("1000000000000000")},
		Prices:        map[string]decimal.Decimal{"BTC-USD": dec("65000"), "ETH-USD": dec("3200")},
		VolatilityBps: dec("20"),
		QuoteInterval: interval,
		QuoteTTL:      5 * time.Second,
	})
	if err != nil {
		tb.Fatal(err)
	}
	if err := desk.Start("127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { desk.Close() })
	return desk
}

// productionLogger is the daemon's logger (cmd/treasuryd: JSON, unbuffered,
// locked, with callers) writing to a file instead of stderr, so the accept
// path pays for its log lines as it does in production.
func productionLogger(tb testing.TB) *zap.Logger {
	tb.Helper()
	f, err := os.Create(filepath.Join(tb.TempDir(), "treasuryd.log"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.Lock(zapcore.AddSync(f)), zap.InfoLevel)
	return zap.New(core, zap.AddCaller()).Named("strategy")
}

// quoteIDOf finds the quote id in a frame or a raw quote without decoding it.
func quoteIDOf(b []byte) string {
	const key = `"quoteId"`
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return ""
	}
	rest := b[i+len(key):]
	open := bytes.IndexByte(rest, '"')
	if open < 0 {
		return ""
	}
	rest = rest[open+1:]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return ""
	}
	return string(rest[:end])
}

// probe times the accept path from outside the runner. The Recorder
// hook gives each frame's read time (Event.ReceivedAt, taken by the stream
// right after the whole frame was read off the socket) and the decision; a
// wrapper of the desk notes when the runner hands the accept to the client;
// an http.RoundTripper notes when net/http has written the accept request to
// the connection (httptrace WroteRequest, after the flush). Nothing in the
// runner is changed to measure it.
type probe struct {
	read sync.Map // quote id -> time.Time the frame was read

	mu       sync.Mutex
	decided  []time.Duration // frame read -> decision made, decisions other than accept
	handoff  []time.Duration // frame read -> Desk.AcceptQuote called
	sent     []time.Duration // frame read -> accept request written to the socket
	insert   []time.Duration // InsertAccept call, waiting for the connection included
	result   []time.Duration // SetAcceptResult call
	outcomes map[string]int
	missing  int // accepts written whose frame was not seen (must stay 0)
	// phases counts frames by when in the desk's quote cycle they were
	// read, in 1 ms slots: how bursty the arrivals are.
	phases []int
	cycle  time.Duration

	newConns, reusedConns atomic.Int64
}

func newProbe() *probe { return &probe{outcomes: map[string]int{}} }

// record is the runner's Recorder.
func (p *probe) record(_ string, frame []byte, at time.Time, _ strategy.Env, outcome string) {
	took := time.Since(at)
	if outcome == strategy.OutcomeAccepted {
		p.read.Store(quoteIDOf(frame), at)
	}
	p.mu.Lock()
	if len(p.phases) > 0 {
		p.phases[at.UnixNano()%int64(p.cycle)/int64(time.Millisecond)]++
	}
	p.outcomes[outcome]++
	if outcome != strategy.OutcomeAccepted {
		p.decided = append(p.decided, took)
	}
	p.mu.Unlock()
}

func (p *probe) since(rawQuote []byte) (time.Duration, bool) {
	v, ok := p.read.Load(quoteIDOf(rawQuote))
	if !ok {
		return 0, false
	}
	return time.Since(v.(time.Time)), true
}

// probeDesk is the runner's Desk with the hand-off to the client timed.
type probeDesk struct {
	Desk
	p *probe
}

func (d probeDesk) AcceptQuote(ctx context.Context, rawQuote []byte) error {
	if took, ok := d.p.since(rawQuote); ok {
		d.p.mu.Lock()
		d.p.handoff = append(d.p.handoff, took)
		d.p.mu.Unlock()
	}
	return d.Desk.AcceptQuote(ctx, rawQuote)
}

// probeJournal is the runner's journal with the accept writes timed.
type probeJournal struct {
	Journal
	p *probe
}

func (j probeJournal) InsertAccept(ctx context.Context, a journal.Accept) (int64, error) {
	start := time.Now()
	id, err := j.Journal.InsertAccept(ctx, a)
	took := time.Since(start)
	j.p.mu.Lock()
	j.p.insert = append(j.p.insert, took)
	j.p.mu.Unlock()
	return id, err
}

func (j probeJournal) SetAcceptResult(ctx context.Context, id int64, result, message string, at time.Time) error {
	start := time.Now()
	err := j.Journal.SetAcceptResult(ctx, id, result, message, at)
	took := time.Since(start)
	j.p.mu.Lock()
	j.p.result = append(j.p.result, took)
	j.p.mu.Unlock()
	return err
}

// probeTransport times when each accept request has been written.
type probeTransport struct {
	next http.RoundTripper
	p    *probe
}

func (t probeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || !strings.Contains(req.URL.Path, "/accept-quote/") || req.GetBody == nil {
		return t.next.RoundTrip(req)
	}
	body, err := req.GetBody()
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	v, ok := t.p.read.Load(quoteIDOf(raw))
	trace := &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) {
			if i.Reused {
				t.p.reusedConns.Add(1)
			} else {
				t.p.newConns.Add(1)
			}
		},
		WroteRequest: func(i httptrace.WroteRequestInfo) {
			took := time.Duration(0)
			if ok {
				took = time.Since(v.(time.Time))
			}
			t.p.mu.Lock()
			defer t.p.mu.Unlock()
			switch {
			case i.Err != nil:
			case !ok:
				t.p.missing++
			default:
				t.p.sent = append(t.p.sent, took)
			}
		},
	}
	return t.next.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
}

// loadRun is one load scenario.
type loadRun struct {
	programs     int
	interval     time.Duration // the desk's quote interval per stream
	duration     time.Duration // measured time, after every stream is up
	balanceEvery time.Duration // 0: the runner's default
	idlePerHost  int           // the client transport's MaxIdleConnsPerHost; 0: the astra client's default transport
	logger       *zap.Logger   // nil: no logging
	// spread starts the programs' streams one by one across a quote
	// interval (through Apply), so that their quotes arrive spread over the
	// cycle instead of in one burst: the simulator's per-stream ticker
	// starts when the stream connects.
	spread bool
	// until, when set, ends the measured time early once it holds.
	until func(*probe) bool
}

// loadResult is what a run measured.
type loadResult struct {
	p                   *probe
	desk                *sim.Desk
	accepted            float64 // accepts_total over all results
	quotes              int     // frames the desk sent during the measured time
	gcs                 uint32
	gcPause, gcMaxPause time.Duration
	wall                time.Duration
	cpuUser, cpuSys     time.Duration
	heapInuse           uint64
}

func (lr loadRun) run(tb testing.TB) loadResult {
	tb.Helper()
	desk := loadDesk(tb, lr.interval)
	p := newProbe()
	// The astra client's own default is a clone of http.DefaultTransport.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if lr.idlePerHost > 0 {
		tr.MaxIdleConnsPerHost = lr.idlePerHost
	}
	var inner http.RoundTripper = tr
	client, err := astra.New(astra.Options{BaseURL: desk.BaseURL(), WSURL: desk.WSURL(), APIKey: testAPIKey,
		AccountID: testAccount, HTTPClient: &http.Client{Transport: probeTransport{next: inner, p: p}}})
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	if d := os.Getenv("TREASURYD_LOAD_DIR"); d != "" {
		// e.g. /dev/shm, to take the disk out of the figures
		if dir, err = os.MkdirTemp(d, "treasuryd-load-"); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
	}
	j, err := journal.Open(filepath.Join(dir, "treasuryd.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { j.Close() })
	m := metrics.New("load")
	programs := loadPrograms(lr.programs)
	pol := &config.Policy{AccountID: testAccount, Programs: programs}
	if lr.spread {
		pol = &config.Policy{AccountID: testAccount}
	}
	book := balances.New(balances.Options{Log: lr.logger, Metrics: m, Desk: client, Every: lr.balanceEvery})
	if err := book.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	defer book.Stop(context.Background())
	e := New(Deps{Log: lr.logger, Metrics: m, Journal: probeJournal{Journal: j, p: p}, Desk: probeDesk{Desk: client, p: p},
		Book: book, Policy: pol, Recorder: p.record})
	if err := e.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	if lr.spread {
		step := lr.interval / time.Duration(lr.programs)
		for i := range programs {
			if err := e.Apply(&config.Policy{AccountID: testAccount, Programs: programs[:i+1]}); err != nil {
				tb.Fatal(err)
			}
			for n := time.Now(); desk.OpenStreams() <= i || time.Since(n) < step; {
				time.Sleep(step / 4)
			}
		}
	}
	stopped := false
	stopEngine := func() {
		if stopped {
			return
		}
		stopped = true
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.Stop(ctx); err != nil {
			tb.Errorf("stop: %v", err)
		}
	}
	tb.Cleanup(stopEngine)
	deadline := time.Now().Add(30 * time.Second)
	for desk.OpenStreams() < lr.programs || !book.Ready() {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d streams open, ready %v after 30s", desk.OpenStreams(), lr.programs, book.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Measure from here: drop what the start-up produced.
	p.mu.Lock()
	p.decided, p.handoff, p.sent, p.insert, p.result = nil, nil, nil, nil, nil
	p.outcomes, p.missing = map[string]int{}, 0
	p.cycle, p.phases = lr.interval, make([]int, max(1, lr.interval/time.Millisecond))
	p.mu.Unlock()
	quotes0 := desk.QuotesSent()
	accepted0 := acceptsTotal(m, lr.programs)
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTimes()
	start := time.Now()
	for time.Since(start) < lr.duration { // the load runs for its time
		if lr.until != nil && lr.until(p) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopEngine()
	wall := time.Since(start)
	cpu1 := cpuTimes()
	runtime.ReadMemStats(&ms1)
	res := loadResult{p: p, desk: desk, quotes: desk.QuotesSent() - quotes0, wall: wall,
		gcs: ms1.NumGC - ms0.NumGC, gcPause: time.Duration(ms1.PauseTotalNs - ms0.PauseTotalNs),
		cpuUser: cpu1[0] - cpu0[0], cpuSys: cpu1[1] - cpu0[1], heapInuse: ms1.HeapInuse}
	for i := ms0.NumGC; i < ms1.NumGC; i++ {
		res.gcMaxPause = max(res.gcMaxPause, time.Duration(ms1.PauseNs[i%256]))
	}
	res.accepted = acceptsTotal(m, lr.programs) - accepted0
	return res
}

// acceptsTotal is accepts_total over the load programs and every result.
func acceptsTotal(m *metrics.Metrics, programs int) float64 {
	var n float64
	for _, pr := range loadPrograms(programs) {
		for _, r := range []string{journal.AcceptOK, journal.AcceptRejected, journal.AcceptError, journal.AcceptUnknown} {
			n += testutil.ToFloat64(m.Accepts.WithLabelValues(pr.Name, r))
		}
	}
	return n
}

// cpuTimes is this process's user and system CPU time so far.
func cpuTimes() [2]time.Duration {
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return [2]time.Duration{}
	}
	// Fields after the command name (which is in parentheses): utime and
	// stime are the 12th and 13th, in clock ticks (100 per second on Linux).
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		return [2]time.Duration{}
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return [2]time.Duration{time.Duration(u) * 10 * time.Millisecond, time.Duration(s) * 10 * time.Millisecond}
}

// percentile is the q-quantile (0..1) of ds by nearest rank; ds is sorted in
// place.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func summary(ds []time.Duration) string {
	if len(ds) == 0 {
		return "n=0"
	}
	return fmt.Sprintf("n=%d p50=%s p90=%s p99=%s p99.9=%s max=%s", len(ds),
		percentile(ds, 0.50), percentile(ds, 0.90), percentile(ds, 0.99), percentile(ds, 0.999), percentile(ds, 1))
}

func (r loadResult) report(tb testing.TB) {
	tb.Helper()
	p := r.p
	p.mu.Lock()
	defer p.mu.Unlock()
	busiest, frames := 0, 0
	for _, n := range p.phases {
		busiest, frames = max(busiest, n), frames+n
	}
	tb.Logf("over %s: %d quotes sent by the desk, decisions %v; %.1f%% of frames arrive in the busiest 1 ms of the %s cycle",
		r.wall.Round(time.Millisecond), r.quotes, p.outcomes, 100*float64(busiest)/float64(max(frames, 1)), p.cycle)
	tb.Logf("frame read -> accept request written: %s", summary(p.sent))
	tb.Logf("frame read -> AcceptQuote called:     %s", summary(p.handoff))
	tb.Logf("frame read -> decision (non-accepts): %s", summary(p.decided))
	tb.Logf("journal InsertAccept:                 %s", summary(p.insert))
	tb.Logf("journal SetAcceptResult:              %s", summary(p.result))
	tb.Logf("accept connections: %d new, %d reused; GC: %d cycles, %s paused (max %s); CPU %s user + %s sys (%.0f%% of a core); heap in use %d MiB",
		p.newConns.Load(), p.reusedConns.Load(), r.gcs, r.gcPause, r.gcMaxPause,
		r.cpuUser, r.cpuSys, 100*float64(r.cpuUser+r.cpuSys)/float64(r.wall), r.heapInuse>>20)
}

// BenchmarkLoad200Programs is SPEC 8's end-to-end target: 200 programs at 10
// quotes/s each on loopback, frame read to accept sent p99 under 1 ms. Each
// sub-benchmark runs the scenario once whatever b.N is and reports the
// latency percentiles of every accept as metrics:
//
//   - phases=aligned: every stream connects at once, so the simulator sends
//     the 200 programs' quotes in one burst every 100 ms (as a desk that
//     pushes a price update to all subscribers would);
//   - phases=spread: the streams connect one by one over 100 ms, so quotes
//     arrive evenly (2,000/s).
//
// Knobs (environment): TREASURYD_LOAD_SECONDS (default 20),
// TREASURYD_LOAD_IDLE_CONNS (the HTTP transport's MaxIdleConnsPerHost;
// default: the astra client's own transport), TREASURYD_LOAD_NOLOG=1 (no
// logger instead of the daemon's JSON logger), TREASURYD_LOAD_DIR (where the
// journal lives, e.g. /dev/shm).
func BenchmarkLoad200Programs(b *testing.B) {
	needLoad(b)
	secs := 20
	if s, err := strconv.Atoi(os.Getenv("TREASURYD_LOAD_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	for _, spread := range []bool{false, true} {
		name := "phases=aligned"
		if spread {
			name = "phases=spread"
		}
		b.Run(name, func(b *testing.B) {
			lr := loadRun{programs: 200, interval: 100 * time.Millisecond, duration: time.Duration(secs) * time.Second,
				logger: productionLogger(b), spread: spread}
			if n, err := strconv.Atoi(os.Getenv("TREASURYD_LOAD_IDLE_CONNS")); err == nil {
				lr.idlePerHost = n
			}
			if os.Getenv("TREASURYD_LOAD_NOLOG") == "1" {
				lr.logger = nil
			}
			res := lr.run(b)
			res.report(b)
			p := res.p
			p.mu.Lock()
			defer p.mu.Unlock()
			if len(p.sent) == 0 {
				b.Fatal("no accept was sent")
			}
			b.ReportMetric(float64(len(p.sent))/res.wall.Seconds(), "accepts/s")
			b.ReportMetric(float64(percentile(p.sent, 0.5).Microseconds()), "p50-µs")
			b.ReportMetric(float64(percentile(p.sent, 0.99).Microseconds()), "p99-µs")
			b.ReportMetric(float64(percentile(p.sent, 1).Microseconds()), "max-µs")
			b.ReportMetric(float64(percentile(p.decided, 0.99).Microseconds()), "decide-p99-µs")
		})
	}
}

// TestLoadHarnessTimesEveryAccept runs the load harness briefly (8 programs,
// 20 quotes/s each) so CI proves it measures what it claims: every accept
// the desk received has one latency, taken from its own frame's read time.
func TestLoadHarnessTimesEveryAccept(t *testing.T) {
	const programs = 8
	res := loadRun{programs: programs, interval: 50 * time.Millisecond, duration: 20 * time.Second,
		until: func(p *probe) bool { p.mu.Lock(); defer p.mu.Unlock(); return len(p.sent) >= 40 }}.run(t)
	res.report(t)
	p := res.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.sent) < 40 || p.missing != 0 {
		t.Fatalf("accepts timed %d, written without a timed frame %d", len(p.sent), p.missing)
	}
	// The samples were reset once every stream was up: an accept under way
	// then is counted on one side only, at most one per program.
	within := func(a, b int) bool { return a-b <= programs && b-a <= programs }
	if !within(len(p.sent), int(res.accepted)) || !within(len(p.sent), p.outcomes[strategy.OutcomeAccepted]) ||
		!within(len(p.sent), len(p.handoff)) {
		t.Errorf("%d accepts timed, %d hand-offs, %d accepted decisions, accepts_total %v",
			len(p.sent), len(p.handoff), p.outcomes[strategy.OutcomeAccepted], res.accepted)
	}
	for _, d := range p.sent {
		if d <= 0 || d > 10*time.Second {
			t.Fatalf("implausible frame-to-sent latency %s", d)
		}
	}
	decided := 0
	for o, n := range p.outcomes {
		if o != strategy.OutcomeAccepted {
			decided += n
		}
	}
	if len(p.decided) != decided {
		t.Errorf("%d of %d other decisions timed", len(p.decided), decided)
	}
}

// Environment of Test1000Streams's child process.
const (
	streamsChildEnv = "TREASURYD_LOAD_CHILD"
	streamsBaseEnv  = "TREASURYD_LOAD_BASE_URL"
	streamsWSEnv    = "TREASURYD_LOAD_WS_URL"
	streamsCount    = 1000
	rssTarget       = 200 << 20
)

// Test1000Streams is SPEC 8's memory target: 1,000 open streams in one
// process under 200 MB RSS. The runner runs in a child process (this test
// binary re-executed) against a simulated desk in this one, quoting every
// stream once a second; once every stream is open and quotes flow, the
// child's VmRSS is sampled for 10 s and the largest sample is the figure.
func Test1000Streams(t *testing.T) {
	if os.Getenv(streamsChildEnv) == "1" {
		streamsChild(t)
		return
	}
	needLoad(t)
	desk := loadDesk(t, time.Second)
	cmd := exec.Command(os.Args[0], "-test.run=^Test1000Streams$", "-test.v")
	cmd.Env = append(os.Environ(), streamsChildEnv+"=1", streamsBaseEnv+"="+desk.BaseURL(), streamsWSEnv+"="+desk.WSURL())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("child output:\n%s", out.String())
		}
	}()

	started := time.Now()
	deadline := started.Add(60 * time.Second)
	for desk.OpenStreams() < streamsCount {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d streams open after 60s", desk.OpenStreams(), streamsCount)
		}
		time.Sleep(20 * time.Millisecond)
	}
	allOpen := time.Since(started)
	// Quotes flow: two rounds of every stream.
	q0 := desk.QuotesSent()
	for desk.QuotesSent()-q0 < 2*streamsCount {
		if time.Now().After(deadline) {
			t.Fatalf("only %d quotes in the first rounds", desk.QuotesSent()-q0)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var maxRSS int64
	q1, sampleStart := desk.QuotesSent(), time.Now()
	for time.Since(sampleStart) < 10*time.Second {
		rss, _ := procStatusKB(cmd.Process.Pid)
		maxRSS = max(maxRSS, rss<<10)
		time.Sleep(100 * time.Millisecond)
	}
	quotes := desk.QuotesSent() - q1
	_, hwm := procStatusKB(cmd.Process.Pid)
	open := desk.OpenStreams()

	stdin.Close() // the child stops its runner and exits
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("child: %v", waitErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("child did not exit within 60s of its stdin closing")
	}
	stats := ""
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "stats ") {
			stats = line
		}
	}
	t.Logf("%d streams open after %s; %d quotes in the 10s sampled (%.0f/s); child max VmRSS %.1f MiB, VmHWM %.1f MiB (target < %d MiB); last child %s",
		open, allOpen.Round(time.Millisecond), quotes, float64(quotes)/10, float64(maxRSS)/(1<<20), float64(hwm<<10)/(1<<20),
		rssTarget>>20, stats)
	if open != streamsCount {
		t.Errorf("%d streams open at the end of sampling; want %d", open, streamsCount)
	}
	if maxRSS == 0 || maxRSS >= rssTarget {
		t.Errorf("child RSS %d bytes; SPEC 8 wants under %d", maxRSS, rssTarget)
	}
}

// streamsChild runs 1,000 programs against the parent's desk until its
// stdin closes, printing the Go runtime's memory figures every 2 s.
func streamsChild(t *testing.T) {
	client, err := astra.New(astra.Options{BaseURL: os.Getenv(streamsBaseEnv), WSURL: os.Getenv(streamsWSEnv),
		APIKey: testAPIKey, AccountID: testAccount})
	if err != nil {
		t.Fatal(err)
	}
	j, err := journal.Open(filepath.Join(t.TempDir(), "treasuryd.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	// Every program crosses its limit; a 10 s cooldown keeps the accept path
	// busy (about 100 accepts/s) without making this a throughput test.
	programs := loadPrograms(streamsCount)
	for i := range programs {
		programs[i].Cooldown = 10 * time.Second
	}
	m := metrics.New("load")
	book := balances.New(balances.Options{Log: productionLogger(t), Metrics: m, Desk: client})
	if err := book.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer book.Stop(context.Background())
	e := New(Deps{Log: productionLogger(t), Metrics: m, Journal: j, Desk: client, Book: book,
		Policy: &config.Policy{AccountID: testAccount, Programs: programs}})
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-tick.C:
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("stats goroutines=%d heap_inuse=%dMiB heap_sys=%dMiB stack_inuse=%dMiB sys=%dMiB gc=%d\n",
				runtime.NumGoroutine(), ms.HeapInuse>>20, ms.HeapSys>>20, ms.StackInuse>>20, ms.Sys>>20, ms.NumGC)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// procStatusKB reads VmRSS and VmHWM (kB) of a process.
func procStatusKB(pid int) (rss, hwm int64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}

// lockedBuffer is a bytes.Buffer safe for a child's stdout and stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
