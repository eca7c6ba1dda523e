package journal

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdWriterSlot takes the process's writer slot, so that the first accept
// write submitted leads and waits for it, and everything submitted after it
// queues behind, until release is called.
func holdWriterSlot(j *Journal) (release func()) {
	j.wsem <- struct{}{}
	var once sync.Once
	return func() { once.Do(func() { <-j.wsem }) }
}

// lockFileForWriting takes SQLite's write lock on the file from a connection
// outside the journal, so a leader, once it has taken a batch, waits in
// BEGIN IMMEDIATE (busy_timeout) until release.
func lockFileForWriting(t *testing.T, path string) (release func()) {
	t.Helper()
	dsn, err := fileURI(path, "_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			conn.Close()
			db.Close()
		})
	}
	t.Cleanup(release)
	return release
}

func TestConcurrentInsertAcceptGetsDistinctIDsThatSurviveReopen(t *testing.T) {
	forBackends(t, testConcurrentInsertAcceptGetsDistinctIDsThatSurviveReopen)
}

func testConcurrentInsertAcceptGetsDistinctIDsThatSurviveReopen(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	const goroutines, each = 64, 5
	ids := make([][]int64, goroutines)
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				a := sampleAccept(t, fmt.Sprintf("p%02d", g), t0.Add(time.Duration(i)*time.Second))
				a.QuoteID = fmt.Sprintf("q-%02d-%d", g, i)
				id, err := j.InsertAccept(ctx, a)
				if err != nil {
					errs <- err
					return
				}
				ids[g] = append(ids[g], id)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if b, n := j.stats.batches.Load(), j.stats.taken.Load(); n != goroutines*each || b > n {
		t.Errorf("%d rows taken in %d batches", n, b)
	}

	j2 := reopen(t, j)
	seen := map[int64]string{}
	for g, gids := range ids {
		if len(gids) != each {
			t.Fatalf("goroutine %d got %d ids", g, len(gids))
		}
		for i, id := range gids {
			want := fmt.Sprintf("q-%02d-%d", g, i)
			if prev, dup := seen[id]; dup {
				t.Fatalf("id %d given to %s and %s", id, prev, want)
			}
			seen[id] = want
			a, err := j2.AcceptByID(ctx, id)
			if err != nil {
				t.Fatalf("accept %d (%s) after reopen: %v", id, want, err)
			}
			if a.QuoteID != want || a.Program != fmt.Sprintf("p%02d", g) || a.Result != AcceptPending {
				t.Errorf("accept %d after reopen is %s/%s/%s, want %s", id, a.Program, a.QuoteID, a.Result, want)
			}
		}
	}
	all, err := j2.Accepts(ctx, AcceptFilter{})
	mustNil(t, err)
	if len(all) != goroutines*each {
		t.Errorf("%d accepts after reopen, want %d", len(all), goroutines*each)
	}
}

func TestQueuedAcceptWritesCommitInOneTransaction(t *testing.T) {
	forBackends(t, testQueuedAcceptWritesCommitInOneTransaction)
}

func testQueuedAcceptWritesCommitInOneTransaction(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	release := holdWriterSlot(j)
	defer release()
	const n = 64
	var wg sync.WaitGroup
	ids := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = j.InsertAccept(ctx, sampleAccept(t, "p", t0))
		}()
	}
	waitFor(t, "64 queued inserts", func() bool { return j.stats.enqueued.Load() == n })
	batches := j.stats.batches.Load()
	release()
	wg.Wait()
	for i, err := range errs {
		if err != nil || ids[i] == 0 {
			t.Fatalf("insert %d: id %d, %v", i, ids[i], err)
		}
	}
	if got := j.stats.batches.Load() - batches; got != 1 {
		t.Errorf("64 inserts queued together committed in %d transactions, want 1", got)
	}
}

// SQLite only: it reads the file directly (a trigger, or the rows of a
// transaction in progress).
func TestFailingRowInABatchFailsOnlyItsCaller(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	var pending []int64
	for range 4 {
		id, err := j.InsertAccept(ctx, sampleAccept(t, "p", t0))
		mustNil(t, err)
		pending = append(pending, id)
	}
	done, err := j.InsertAccept(ctx, sampleAccept(t, "p", t0))
	mustNil(t, err)
	mustNil(t, j.SetAcceptResult(ctx, done, AcceptOK, "", t0))
	// A row the database itself refuses: a statement error rolls back the
	// batch's transaction, and the others must still commit.
	_, err = j.w.ExecContext(ctx, `CREATE TEMP TRIGGER poison BEFORE INSERT ON accepts
		WHEN NEW.quote_id = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END`)
	mustNil(t, err)

	type call struct {
		name    string
		run     func() error
		wantErr error // nil: must succeed; errAny: any error
	}
	errAny := errors.New("any error")
	var insertedID int64
	calls := []call{
		{"result on an accept that already has one", func() error { return j.SetAcceptResult(ctx, done, AcceptRejected, "", t0) }, ErrTransition},
		{"result on a missing accept", func() error { return j.SetAcceptResult(ctx, 999999, AcceptOK, "", t0) }, ErrNotFound},
		{"insert the database refuses", func() error {
			a := sampleAccept(t, "p", t0)
			a.QuoteID = "poison"
			_, err := j.InsertAccept(ctx, a)
			return err
		}, errAny},
		{"good insert", func() error {
			var err error
			insertedID, err = j.InsertAccept(ctx, sampleAccept(t, "fresh", t0))
			return err
		}, nil},
	}
	for i, id := range pending {
		result := []string{AcceptOK, AcceptRejected, AcceptError, AcceptUnknown}[i]
		calls = append(calls, call{"good result " + result, func() error { return j.SetAcceptResult(ctx, id, result, "m", t0) }, nil})
	}

	base := j.stats.enqueued.Load()
	release := holdWriterSlot(j)
	defer release()
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.run() }()
	}
	waitFor(t, "every call queued", func() bool { return j.stats.enqueued.Load() == base+int64(len(calls)) })
	release()
	wg.Wait()
	for i, c := range calls {
		switch {
		case c.wantErr == nil && errs[i] != nil:
			t.Errorf("%s: %v, want success", c.name, errs[i])
		case c.wantErr == errAny && errs[i] == nil:
			t.Errorf("%s: succeeded, want an error", c.name)
		case c.wantErr != nil && c.wantErr != errAny && !errors.Is(errs[i], c.wantErr):
			t.Errorf("%s: %v, want %v", c.name, errs[i], c.wantErr)
		}
	}
	for i, id := range pending {
		a, err := j.AcceptByID(ctx, id)
		mustNil(t, err)
		if want := []string{AcceptOK, AcceptRejected, AcceptError, AcceptUnknown}[i]; a.Result != want || a.Message != "m" {
			t.Errorf("accept %d is %s %q, want %s", id, a.Result, a.Message, want)
		}
	}
	if a, err := j.AcceptByID(ctx, done); err != nil || a.Result != AcceptOK {
		t.Errorf("accept that had a result: %+v %v", a, err)
	}
	if a, err := j.AcceptByID(ctx, insertedID); err != nil || a.Program != "fresh" {
		t.Errorf("good insert of the batch: %+v %v", a, err)
	}
	as, err := j.Accepts(ctx, AcceptFilter{})
	mustNil(t, err)
	if len(as) != len(pending)+2 {
		t.Errorf("%d accepts, want %d (the refused insert must leave nothing)", len(as), len(pending)+2)
	}
}

func TestAcceptWriteCancelledWhileQueuedWritesNothing(t *testing.T) {
	forBackends(t, testAcceptWriteCancelledWhileQueuedWritesNothing)
}

func testAcceptWriteCancelledWhileQueuedWritesNothing(t *testing.T) {
	j, _ := openTemp(t)
	release := holdWriterSlot(j)
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := j.InsertAccept(ctx, sampleAccept(t, "cancelled", t0))
		errc <- err
	}()
	waitFor(t, "the insert queued", func() bool { return j.stats.enqueued.Load() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled queued insert: %v, want context.Canceled", err)
	}
	release()
	// A write after it commits: the cancelled one left nothing behind.
	_, err := j.InsertAccept(context.Background(), sampleAccept(t, "after", t0))
	mustNil(t, err)
	as, err := j.Accepts(context.Background(), AcceptFilter{})
	mustNil(t, err)
	if len(as) != 1 || as[0].Program != "after" {
		t.Errorf("accepts %+v, want only the one after the cancelled insert", as)
	}
}

// SQLite only: it reads the file directly (a trigger, or the rows of a
// transaction in progress).
func TestAcceptWriteCancelledAfterItWasTakenStillReturnsItsCommit(t *testing.T) {
	j, path := openTemp(t)
	unlock := lockFileForWriting(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	type res struct {
		id  int64
		err error
	}
	rc := make(chan res, 1)
	go func() {
		id, err := j.InsertAccept(ctx, sampleAccept(t, "taken", t0))
		rc <- res{id, err}
	}()
	// Its caller leads: it has the insert in its batch and waits for the
	// file lock.
	waitFor(t, "the insert taken into a batch", func() bool { return j.stats.taken.Load() == 1 })
	cancel()
	unlock()
	r := <-rc
	if r.err != nil || r.id == 0 {
		t.Fatalf("insert cancelled after it was taken: id %d, %v; want its id", r.id, r.err)
	}
	if a, err := j.AcceptByID(context.Background(), r.id); err != nil || a.Program != "taken" {
		t.Errorf("its row: %+v %v", a, err)
	}
}

// SQLite only: it reads the file directly (a trigger, or the rows of a
// transaction in progress).
func TestCloseAnswersInFlightBatchAndRefusesQueuedWrites(t *testing.T) {
	ctx := context.Background()
	j, path := openTemp(t)
	unlock := lockFileForWriting(t, path)
	type res struct {
		id  int64
		err error
	}
	inFlight := make(chan res, 1)
	go func() {
		id, err := j.InsertAccept(ctx, sampleAccept(t, "in-flight", t0))
		inFlight <- res{id, err}
	}()
	waitFor(t, "the first insert taken into a batch", func() bool { return j.stats.taken.Load() == 1 })
	queued := make(chan error, 1)
	go func() {
		_, err := j.InsertAccept(ctx, sampleAccept(t, "queued", t0))
		queued <- err
	}()
	waitFor(t, "the second insert queued", func() bool { return j.stats.enqueued.Load() == 2 })
	closed := make(chan error, 1)
	go func() { closed <- j.Close() }()
	if err := <-queued; !errors.Is(err, ErrClosed) {
		t.Errorf("insert queued at Close: %v, want ErrClosed", err)
	}
	unlock()
	r := <-inFlight
	if r.err != nil || r.id == 0 {
		t.Errorf("insert in flight at Close: id %d, %v; want committed", r.id, r.err)
	}
	mustNil(t, <-closed)

	j2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	as, err := j2.Accepts(ctx, AcceptFilter{})
	mustNil(t, err)
	if len(as) != 1 || as[0].ID != r.id || as[0].Program != "in-flight" {
		t.Errorf("after Close and reopen: %+v, want only the in-flight insert", as)
	}
}

func TestLeaderCancelledWhileWaitingPassesTheLeadOn(t *testing.T) {
	forBackends(t, testLeaderCancelledWhileWaitingPassesTheLeadOn)
}

func testLeaderCancelledWhileWaitingPassesTheLeadOn(t *testing.T) {
	j, _ := openTemp(t)
	release := holdWriterSlot(j)
	defer release()
	lctx, cancel := context.WithCancel(context.Background())
	leader := make(chan error, 1)
	go func() {
		_, err := j.InsertAccept(lctx, sampleAccept(t, "leader", t0))
		leader <- err
	}()
	waitFor(t, "the leader queued", func() bool { return j.stats.enqueued.Load() == 1 })
	follower := make(chan error, 2)
	for _, p := range []string{"f1", "f2"} {
		go func() {
			_, err := j.InsertAccept(context.Background(), sampleAccept(t, p, t0))
			follower <- err
		}()
	}
	waitFor(t, "two followers queued", func() bool { return j.stats.enqueued.Load() == 3 })
	cancel()
	if err := <-leader; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader cancelled while waiting for the writer slot: %v, want context.Canceled", err)
	}
	release()
	for range 2 {
		if err := <-follower; err != nil {
			t.Errorf("follower of a cancelled leader: %v", err)
		}
	}
	as, err := j.Accepts(context.Background(), AcceptFilter{})
	mustNil(t, err)
	if len(as) != 2 || as[0].Program == "leader" || as[1].Program == "leader" {
		t.Errorf("accepts %+v, want the two followers' only", as)
	}
	if b := j.stats.batches.Load(); b != 1 {
		t.Errorf("the two followers committed in %d transactions, want 1", b)
	}
}

func TestFollowerCancelledWhileQueuedWritesNothing(t *testing.T) {
	forBackends(t, testFollowerCancelledWhileQueuedWritesNothing)
}

func testFollowerCancelledWhileQueuedWritesNothing(t *testing.T) {
	j, _ := openTemp(t)
	release := holdWriterSlot(j)
	defer release()
	leader := make(chan error, 1)
	go func() {
		_, err := j.InsertAccept(context.Background(), sampleAccept(t, "leader", t0))
		leader <- err
	}()
	waitFor(t, "the leader queued", func() bool { return j.stats.enqueued.Load() == 1 })
	fctx, cancel := context.WithCancel(context.Background())
	follower := make(chan error, 1)
	go func() {
		_, err := j.InsertAccept(fctx, sampleAccept(t, "follower", t0))
		follower <- err
	}()
	waitFor(t, "the follower queued", func() bool { return j.stats.enqueued.Load() == 2 })
	cancel()
	if err := <-follower; !errors.Is(err, context.Canceled) {
		t.Fatalf("follower cancelled while queued: %v, want context.Canceled", err)
	}
	release()
	mustNil(t, <-leader)
	as, err := j.Accepts(context.Background(), AcceptFilter{})
	mustNil(t, err)
	if len(as) != 1 || as[0].Program != "leader" {
		t.Errorf("accepts %+v, want only the leader's", as)
	}
}

// SQLite only: it reads the file directly (a trigger, or the rows of a
// transaction in progress).
func TestWritesQueuedBehindACommitShareTheNextTransaction(t *testing.T) {
	ctx := context.Background()
	j, path := openTemp(t)
	unlock := lockFileForWriting(t, path)
	first := make(chan error, 1)
	go func() {
		_, err := j.InsertAccept(ctx, sampleAccept(t, "first", t0))
		first <- err
	}()
	// The first caller leads alone: it took its own insert into a batch
	// and waits in BEGIN IMMEDIATE for the file lock.
	waitFor(t, "the first insert taken into a batch", func() bool { return j.stats.taken.Load() == 1 })
	const queued = 8
	rest := make(chan error, queued)
	for i := range queued {
		go func() {
			_, err := j.InsertAccept(ctx, sampleAccept(t, fmt.Sprintf("q%d", i), t0))
			rest <- err
		}()
	}
	waitFor(t, "the others queued", func() bool { return j.stats.enqueued.Load() == 1+queued })
	unlock()
	mustNil(t, <-first)
	// The leader committed what queued behind it before returning.
	if as, err := j.Accepts(ctx, AcceptFilter{}); err != nil || len(as) != 1+queued {
		t.Errorf("%d accepts (%v) when the leader returned, want %d", len(as), err, 1+queued)
	}
	for range queued {
		mustNil(t, <-rest)
	}
	if b, c := j.stats.batches.Load(), j.stats.continued.Load(); b != 2 || c != 1 {
		t.Errorf("1 + %d inserts committed in %d transactions (%d by a continuing leader), want 2 (the leader's, then the queued ones together, by the leader)", queued, b, c)
	}
	// Uncontended, a caller commits alone.
	_, err := j.InsertAccept(ctx, sampleAccept(t, "alone", t0))
	mustNil(t, err)
	if b, n := j.stats.batches.Load(), j.stats.taken.Load(); b != 3 || n != 2+queued {
		t.Errorf("after one more insert: %d rows in %d transactions, want %d in 3", n, b, 2+queued)
	}
}

func TestAcceptStatementsArePreparedAgainOnAReplacedConnection(t *testing.T) {
	forBackends(t, testAcceptStatementsArePreparedAgainOnAReplacedConnection)
}

func testAcceptStatementsArePreparedAgainOnAReplacedConnection(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	first, err := j.InsertAccept(ctx, sampleAccept(t, "before", t0))
	mustNil(t, err)
	old := j.stmts.dc
	// database/sql discards a connection that reports driver.ErrBadConn and
	// opens a new one for the next user.
	conn, err := j.w.Conn(ctx)
	mustNil(t, err)
	if err := conn.Raw(func(any) error { return driver.ErrBadConn }); !errors.Is(err, driver.ErrBadConn) {
		t.Fatalf("Raw: %v", err)
	}
	conn.Close()
	second, err := j.InsertAccept(ctx, sampleAccept(t, "after", t0))
	if err != nil {
		t.Fatalf("insert on the replaced connection: %v", err)
	}
	mustNil(t, j.SetAcceptResult(ctx, first, AcceptOK, "", t0))
	if j.stmts.dc == old {
		t.Errorf("the statements still belong to the discarded connection")
	}
	for id, want := range map[int64]string{first: AcceptOK, second: AcceptPending} {
		if a, err := j.AcceptByID(ctx, id); err != nil || a.Result != want {
			t.Errorf("accept %d: %+v %v, want %s", id, a, err, want)
		}
	}
}

// SQLite only: it reads the file directly (a trigger, or the rows of a
// transaction in progress).
func TestResultLeaderCommitsTheWritesQueuedBehindIt(t *testing.T) {
	ctx := context.Background()
	j, path := openTemp(t)
	pending, err := j.InsertAccept(ctx, sampleAccept(t, "sent", t0))
	mustNil(t, err)
	unlock := lockFileForWriting(t, path)
	result := make(chan error, 1)
	go func() { result <- j.SetAcceptResult(ctx, pending, AcceptOK, "", t0) }()
	// The result's caller leads: it has taken its write and waits for the
	// file lock in BEGIN IMMEDIATE.
	waitFor(t, "the result taken into a batch", func() bool { return j.stats.taken.Load() == 2 })
	const queued = 4
	inserts := make(chan error, queued)
	for i := range queued {
		go func() {
			_, err := j.InsertAccept(ctx, sampleAccept(t, fmt.Sprintf("q%d", i), t0))
			inserts <- err
		}()
	}
	waitFor(t, "the inserts queued", func() bool { return j.stats.enqueued.Load() == 2+queued })
	unlock()
	mustNil(t, <-result)
	// The result's leader committed the queued inserts before returning.
	as, err := j.Accepts(ctx, AcceptFilter{})
	mustNil(t, err)
	if len(as) != 1+queued {
		t.Errorf("%d accepts when the result's call returned, want %d: the queued inserts were handed on", len(as), 1+queued)
	}
	for range queued {
		mustNil(t, <-inserts)
	}
	if c, b := j.stats.continued.Load(), j.stats.batches.Load(); c != 1 || b != 3 {
		t.Errorf("%d continued leads in %d transactions, want 1 in 3 (insert, result, the queued inserts)", c, b)
	}
}

// TestResultWaitsForAnInsertAndSharesItsCommit: a result with no leader to
// follow lingers, uncommitted and unanswered, until an accept insert comes;
// the insert's leader commits both in one transaction.
func TestResultWaitsForAnInsertAndSharesItsCommit(t *testing.T) {
	forBackends(t, testResultWaitsForAnInsertAndSharesItsCommit)
}

func testResultWaitsForAnInsertAndSharesItsCommit(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	j.group.linger = time.Minute // only the insert can end its wait here
	j.group.lingerWithin = time.Hour
	sent, err := j.InsertAccept(ctx, sampleAccept(t, "sent", t0))
	mustNil(t, err)
	batches := j.stats.batches.Load()
	result := make(chan error, 1)
	go func() { result <- j.SetAcceptResult(ctx, sent, AcceptOK, "", t0) }()
	waitFor(t, "the result queued", func() bool { return j.stats.enqueued.Load() == 2 })
	select {
	case err := <-result:
		t.Fatalf("the result returned (%v) before any commit took it", err)
	default:
	}
	if a, err := j.AcceptByID(ctx, sent); err != nil || a.Result != AcceptPending {
		t.Fatalf("lingering result: accept is %+v (%v), want still pending", a.Result, err)
	}
	next, err := j.InsertAccept(ctx, sampleAccept(t, "next", t0))
	mustNil(t, err)
	// The insert's return means its transaction committed: the result's too.
	for id, want := range map[int64]string{sent: AcceptOK, next: AcceptPending} {
		if a, err := j.AcceptByID(ctx, id); err != nil || a.Result != want {
			t.Errorf("accept %d: %s (%v), want %s", id, a.Result, err, want)
		}
	}
	mustNil(t, <-result)
	if b := j.stats.batches.Load() - batches; b != 1 {
		t.Errorf("the result and the insert committed in %d transactions, want 1", b)
	}
	if n := j.stats.lingered.Load(); n != 0 {
		t.Errorf("%d results led after lingering, want 0", n)
	}
	requireIntact(t, j)
}

// TestLingeringResultCommitsAloneWhenNoInsertComes: with no insert within
// its linger, a result leads and commits itself.
func TestLingeringResultCommitsAloneWhenNoInsertComes(t *testing.T) {
	forBackends(t, testLingeringResultCommitsAloneWhenNoInsertComes)
}

func testLingeringResultCommitsAloneWhenNoInsertComes(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	j.group.linger, j.group.lingerWithin = 5*time.Millisecond, time.Hour
	id, err := j.InsertAccept(ctx, sampleAccept(t, "p", t0))
	mustNil(t, err)
	batches := j.stats.batches.Load()
	mustNil(t, j.SetAcceptResult(ctx, id, AcceptRejected, "no", t0))
	if a, err := j.AcceptByID(ctx, id); err != nil || a.Result != AcceptRejected {
		t.Errorf("accept: %s (%v), want rejected", a.Result, err)
	}
	if b, n := j.stats.batches.Load()-batches, j.stats.lingered.Load(); b != 1 || n != 1 {
		t.Errorf("%d transactions, %d lingered results; want 1 and 1", b, n)
	}
	requireIntact(t, j)
}

// TestCloseRefusesALingeringResult: a result still lingering when the
// journal closes is never written; its accept stays pending (unknown at the
// next start), as a queued write's.
func TestCloseRefusesALingeringResult(t *testing.T) {
	forBackends(t, testCloseRefusesALingeringResult)
}

func testCloseRefusesALingeringResult(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	j.group.linger, j.group.lingerWithin = time.Minute, time.Hour
	id, err := j.InsertAccept(ctx, sampleAccept(t, "p", t0))
	mustNil(t, err)
	result := make(chan error, 1)
	go func() { result <- j.SetAcceptResult(ctx, id, AcceptOK, "", t0) }()
	waitFor(t, "the result queued", func() bool { return j.stats.enqueued.Load() == 2 })
	mustNil(t, j.Close())
	if err := <-result; !errors.Is(err, ErrClosed) {
		t.Fatalf("lingering result at Close: %v, want ErrClosed", err)
	}
	other := openOther(t, j)
	if a, err := other.AcceptByID(ctx, id); err != nil || a.Result != AcceptPending {
		t.Errorf("accept after Close: %s (%v), want pending", a.Result, err)
	}
}

// TestInsertLeaderLeavesQueuedResultsToTheNextLeader: an accept insert's
// leader commits what queued behind it only if an insert is among it;
// results alone (whose POSTs are done) go to the next leader, so the
// insert's own POST waits for no commit of theirs. SQLite only: it locks
// the file directly.
func TestInsertLeaderLeavesQueuedResultsToTheNextLeader(t *testing.T) {
	ctx := context.Background()
	j, path := openTemp(t)
	var sent []int64
	for i := range 3 {
		id, err := j.InsertAccept(ctx, sampleAccept(t, fmt.Sprintf("s%d", i), t0))
		mustNil(t, err)
		sent = append(sent, id)
	}
	unlock := lockFileForWriting(t, path)
	first := make(chan error, 1)
	go func() {
		_, err := j.InsertAccept(ctx, sampleAccept(t, "first", t0))
		first <- err
	}()
	waitFor(t, "the insert taken into a batch", func() bool { return j.stats.taken.Load() == 4 })
	results := make(chan error, len(sent))
	for _, id := range sent {
		go func() { results <- j.SetAcceptResult(ctx, id, AcceptOK, "", t0) }()
	}
	waitFor(t, "the results queued", func() bool { return j.stats.enqueued.Load() == 4+int64(len(sent)) })
	unlock()
	mustNil(t, <-first)
	for range sent {
		mustNil(t, <-results)
	}
	if c, b := j.stats.continued.Load(), j.stats.batches.Load(); c != 0 || b != 5 {
		t.Errorf("%d continued leads, %d transactions; want 0 and 5 (3 inserts, the insert, the results together)", c, b)
	}
}

// TestResultCommitsAtOnceWhenNoInsertCameLately: with no accept insert
// within lingerWithin (a quiet program, a shutdown's last results) a result
// does not wait for one.
func TestResultCommitsAtOnceWhenNoInsertCameLately(t *testing.T) {
	forBackends(t, testResultCommitsAtOnceWhenNoInsertCameLately)
}

func testResultCommitsAtOnceWhenNoInsertCameLately(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	j.group.linger, j.group.lingerWithin = time.Minute, time.Millisecond
	id, err := j.InsertAccept(ctx, sampleAccept(t, "p", t0))
	mustNil(t, err)
	time.Sleep(20 * time.Millisecond) // past lingerWithin
	done := make(chan error, 1)
	go func() { done <- j.SetAcceptResult(ctx, id, AcceptOK, "", t0) }()
	select {
	case err := <-done:
		mustNil(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the result waited for an insert though none came lately")
	}
	if n := j.stats.lingered.Load(); n != 0 {
		t.Errorf("%d results lingered, want 0", n)
	}
}
