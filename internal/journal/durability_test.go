package journal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	helperEnv     = "TREASURYD_JOURNAL_HELPER_PATH"
	helperModeEnv = "TREASURYD_JOURNAL_HELPER_MODE"
)

// TestHelperProcess is not a test: it is the child process of
// TestCommittedWritesSurviveKill9. It writes, reports "written", and blocks
// until killed.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		return
	}
	ctx := context.Background()
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(helperModeEnv) == "concurrent-accepts" {
		concurrentAcceptsBeforeKill(t, j)
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(3)
	}
	if _, err := j.InsertAccept(ctx, sampleAccept(t, "crash", t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := j.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, "crash-rule", t0)); err != nil {
		t.Fatal(err)
	}
	if err := j.SetPaused(ctx, true, "before-crash"); err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("written\n")
	// Block without closing the journal; the parent kills this process.
	// Reading stdin (not select{}) so the child also ends if the parent dies.
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(3)
}

// runKilledChild runs TestHelperProcess in a child process on path (in
// mode, "" for the default writes), waits for it to print "written", kills it
// with SIGKILL and returns the lines it printed before "written".
func runKilledChild(t *testing.T, path, mode string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"="+path, helperModeEnv+"="+mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lines []string
	written := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "written" {
				written <- true
				return
			}
			lines = append(lines, sc.Text())
		}
		written <- false
	}()
	select {
	case ok := <-written:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("child exited before writing: %s", stderr.String())
		}
	case <-time.After(60 * time.Second): // a deadline, not synchronisation
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child did not write within 60s: %s", stderr.String())
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no Close, no checkpoint
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child was not killed by SIGKILL: %v", cmd.ProcessState)
	}
	return lines
}

func TestCommittedWritesSurviveKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	runKilledChild(t, path, "")
	// The writes are still in the WAL (a clean close would have checkpointed
	// and removed it), so reopening really recovers them from the log.
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("no WAL left behind by the killed child: %v", err)
	}

	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	as, err := j.Accepts(ctx, AcceptFilter{Program: "crash"})
	mustNil(t, err)
	if len(as) != 1 || as[0].Result != AcceptPending || as[0].BaseQty.String() != "0.00000001" {
		t.Errorf("accepts after kill -9: %+v", as)
	}
	ws, err := j.OpenWithdrawals(ctx)
	mustNil(t, err)
	if len(ws) != 1 || ws[0].Rule != "crash-rule" || ws[0].State != WithdrawalIntent {
		t.Errorf("open withdrawals after kill -9: %+v", ws)
	}
	p, by, _, err := j.PauseState(ctx)
	mustNil(t, err)
	if !p || by != "before-crash" {
		t.Errorf("pause after kill -9 = %v by %q, want true by before-crash", p, by)
	}
	// And the start-up step turns the interrupted accept into unknown.
	n, err := j.MarkPendingAcceptsUnknown(ctx)
	mustNil(t, err)
	if n != 1 {
		t.Errorf("MarkPendingAcceptsUnknown after crash changed %d, want 1", n)
	}
}

// concurrentAcceptsBeforeKill is the child's side of
// TestGroupCommittedAcceptsSurviveKill9: 64 goroutines insert an accept each
// (so they share transactions) and give every other one a result; each
// prints its id and result as soon as its own calls have returned.
func concurrentAcceptsBeforeKill(t *testing.T, j *Journal) {
	ctx := context.Background()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := j.InsertAccept(ctx, sampleAccept(t, fmt.Sprintf("kill-%02d", g), t0))
			if err != nil {
				t.Error(err)
				return
			}
			result := AcceptPending
			if g%2 == 0 {
				if err := j.SetAcceptResult(ctx, id, AcceptOK, "", t0); err != nil {
					t.Error(err)
					return
				}
				result = AcceptOK
			}
			mu.Lock()
			fmt.Fprintf(os.Stdout, "%d %s\n", id, result)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		os.Exit(4)
	}
	os.Stdout.WriteString("written\n")
}

func TestGroupCommittedAcceptsSurviveKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	lines := runKilledChild(t, path, "concurrent-accepts")
	if len(lines) != 64 {
		t.Fatalf("child reported %d accepts, want 64: %q", len(lines), lines)
	}
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	for _, l := range lines {
		var id int64
		var want string
		if _, err := fmt.Sscanf(l, "%d %s", &id, &want); err != nil {
			t.Fatalf("child line %q: %v", l, err)
		}
		a, err := j.AcceptByID(ctx, id)
		if err != nil {
			t.Errorf("accept %d, returned before the kill: %v", id, err)
			continue
		}
		if a.Result != want {
			t.Errorf("accept %d is %s after kill -9, want %s", id, a.Result, want)
		}
	}
}

func TestMigrationsAreNumberedWithoutGaps(t *testing.T) {
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || SchemaVersion() != len(ms) {
		t.Fatalf("%d migrations, SchemaVersion %d", len(ms), SchemaVersion())
	}
}

func TestReopenDoesNotReapplyMigrations(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	id, err := j.InsertAccept(ctx, sampleAccept(t, "p", t0))
	mustNil(t, err)
	// A marker row a re-applied 0001 (DROP/CREATE or a failing CREATE) would
	// lose or trip over.
	j2 := reopen(t, j)
	j3 := reopen(t, j2)
	var v int
	mustNil(t, j3.r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v))
	if v != SchemaVersion() {
		t.Errorf("user_version %d, want %d", v, SchemaVersion())
	}
	if _, err := j3.AcceptByID(ctx, id); err != nil {
		t.Errorf("row written before reopen: %v", err)
	}
	var tables int
	mustNil(t, j3.r.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'accepts'").Scan(&tables))
	if tables != 1 {
		t.Errorf("%d accepts tables", tables)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	ctx := context.Background()
	j, path := openTemp(t)
	if _, err := j.full.ExecContext(ctx, "PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	mustNil(t, j.Close())
	if j2, err := Open(path); !errors.Is(err, ErrNewerSchema) || !strings.Contains(err.Error(), "99") {
		if j2 != nil {
			j2.Close()
		}
		t.Errorf("Open of a schema-99 journal: %v, want ErrNewerSchema naming 99", err)
	}
	if j2, err := OpenReadOnly(path); !errors.Is(err, ErrNewerSchema) {
		if j2 != nil {
			j2.Close()
		}
		t.Errorf("OpenReadOnly of a schema-99 journal: %v, want ErrNewerSchema", err)
	}
}

func TestOpenReadOnlyOfMissingFileFailsWithoutCreatingIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.db")
	if j, err := OpenReadOnly(path); err == nil {
		j.Close()
		t.Fatal("opened a journal that does not exist")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("read-only open created the file: %v", err)
	}
}

func TestReadOnlyBesideWriterSeesWholeTransactionsAndRefusesWrites(t *testing.T) {
	ctx := context.Background()
	w, path := openTemp(t)
	const batch = 10
	writeBatch := func(n int) error {
		fs := make([]Frame, batch)
		for i := range fs {
			fs[i] = Frame{Program: "p", ReceivedAt: t0.Add(time.Duration(n*batch+i) * time.Millisecond), Raw: rawQuote}
		}
		return w.RecordFrames(ctx, fs)
	}
	mustNil(t, writeBatch(0))
	_, err := w.InsertAccept(ctx, sampleAccept(t, "p", t0))
	mustNil(t, err)

	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	// The writer keeps writing batches of frames while the reader reads.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var writeErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 1; ; n++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := writeBatch(n); err != nil {
				writeErr = err
				return
			}
		}
	}()
	last, growths := 0, 0
	deadline := time.Now().Add(30 * time.Second)
	for growths < 5 && time.Now().Before(deadline) {
		var count int
		err := r.Frames(ctx, time.Time{}, "p", func(f Frame) error {
			if string(f.Raw) != string(rawQuote) {
				t.Errorf("frame raw changed")
			}
			count++
			return nil
		})
		if err != nil {
			t.Fatalf("read beside writer: %v", err)
		}
		if count%batch != 0 {
			t.Fatalf("reader saw %d frames: a part of a transaction", count)
		}
		if count < last {
			t.Fatalf("reader saw %d frames after %d", count, last)
		}
		if count > last {
			growths++
		}
		last = count
	}
	close(stop)
	wg.Wait()
	mustNil(t, writeErr)
	if growths < 5 {
		t.Fatalf("reader saw the writer's frames grow only %d times", growths)
	}
	as, err := r.Accepts(ctx, AcceptFilter{})
	mustNil(t, err)
	if len(as) != 1 || string(as[0].RawQuote) != string(rawQuote) {
		t.Errorf("read-only accepts: %+v", as)
	}

	writes := map[string]error{}
	_, writes["InsertAccept"] = r.InsertAccept(ctx, sampleAccept(t, "p", t0))
	_, writes["InsertWithdrawalIntent"] = r.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, "r", t0))
	writes["SetPaused"] = r.SetPaused(ctx, true, "x")
	writes["RecordFrames"] = r.RecordFrames(ctx, []Frame{{Program: "p", ReceivedAt: t0}})
	_, writes["PruneFrames"] = r.PruneFrames(ctx, time.Now())
	_, writes["MarkPendingAcceptsUnknown"] = r.MarkPendingAcceptsUnknown(ctx)
	for name, err := range writes {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only journal: %v, want ErrReadOnly", name, err)
		}
	}
	// Even SQL past the API cannot write through the read-only connection.
	if _, err := r.r.ExecContext(ctx, "DELETE FROM frames"); err == nil {
		t.Error("raw DELETE through the read-only pool succeeded")
	}
	n := len(allFrames(t, w, time.Time{}, ""))
	if n < last {
		t.Errorf("writer has %d frames, reader saw %d", n, last)
	}
}

func TestOpenReadOnlyAfterWriterClosed(t *testing.T) {
	ctx := context.Background()
	w, path := openTemp(t)
	mustNil(t, w.SetPaused(ctx, true, "ops"))
	mustNil(t, w.Close())
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if p, err := r.Paused(ctx); err != nil || !p {
		t.Errorf("Paused = %v %v", p, err)
	}
}

func BenchmarkInsertWithdrawalIntent(b *testing.B) {
	j, _ := openTemp(b)
	w := sampleWithdrawal(b, "bench", t0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := j.InsertWithdrawalIntent(ctx, w); err != nil {
			b.Fatal(err)
		}
	}
}
