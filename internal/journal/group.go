package journal

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Group commit of the accept path's writes (InsertAccept, SetAcceptResult),
// leader/follower style, as databases commit their logs.
//
// The caller commits its own write: when no batch is forming it becomes the
// leader, takes the writer slot and commits its row in a BEGIN IMMEDIATE
// transaction on the NORMAL pool, with no hand-off to another goroutine and
// nothing to wait for but SQLite. Callers that arrive while a leader is
// waiting for the slot or committing queue behind it as followers; when the
// leader is done it makes the first of them the next leader, which commits
// every write queued by then (up to maxBatch) in one transaction and answers
// the others. Before that the leader commits itself what queued behind it
// while it was committing — once if its own write is an accept insert (whose
// POST waits), up to leadRounds batches if it is a result (SetAcceptResult,
// after the POST) — sparing them the wait for a new leader to be scheduled.
// So with 200 programs accepting at once each accept waits at most
// for the transaction under way and its own, not for one transaction per
// program. A caller returns only after the transaction holding its row has
// committed, so "journaled before it is sent" still holds; each gets its own
// id and error.
//
// A result that finds no leader, while accepts are being journaled (an
// insert came within lingerWhileInsertsWithin), does not lead at once: it
// lingers, queued, up to resultLinger for an accept insert, whose leader
// takes it into its own transaction. Under load an accept then costs one commit rather than
// two (each commit takes SQLite's locks and writes the pages it touched to
// the WAL: most of a row's cost), and only the result waits, after its POST,
// never an accept before it. A result that no insert came for leads itself.
//
// An op's state, guarded by group.mu, moves queued → leading (its caller was
// made leader) → taken (in a batch whose transaction is under way) → done, or
// from queued or leading to abandoned when its caller's ctx ends, or its
// journal closes, before it was taken. An abandoned op is never written; a
// taken one is always answered, so its caller then waits for the commit
// whatever its ctx says.

const (
	// maxBatch bounds the rows of one group-commit transaction, so that the
	// writer slot is never held for long by one batch (at some 10 µs a row,
	// 128 rows are about a millisecond) and a batch's memory is bounded.
	// Under SPEC 8's load (200 programs, each with at most one accept write
	// outstanding) a batch stays well below it.
	maxBatch = 128
	// queueLen bounds the accept writes in progress (leader and queued).
	// Each program has at most one accept write outstanding, so 1,024 covers
	// five times SPEC 8's 200 programs; a caller beyond it waits for room,
	// honouring its ctx.
	queueLen = 1024
	// leadRounds bounds the batches one leader commits (see lead), and so
	// how long it holds the writer slot: 8 batches of the few rows SPEC 8's
	// load queues take well under a millisecond of CPU.
	leadRounds = 8
	// insertLeadRounds: a leader whose own write is an accept insert commits
	// one batch after its own, delaying its POST by one commit (tens of µs)
	// to spare the callers behind it a hand-off.
	insertLeadRounds = 2
	// resultLinger bounds how long a result with no leader to follow waits
	// for an accept insert to share its commit. Its accept was sent already,
	// so it delays no POST; it only keeps its program's accept in flight
	// that much longer, a small part of a quote stream's interval (40 ms at
	// SPEC 8's 25 quotes/s). With SPEC 8's 1,000 and more accepts a second
	// most results find an insert within it.
	resultLinger = time.Millisecond
	// lingerWhileInsertsWithin: a result lingers only if an accept insert
	// came within this long. Then others are likely to follow; otherwise
	// (one quiet program, or the last results of a shutdown, written after
	// the streams stopped) none is, and waiting would only delay it.
	lingerWhileInsertsWithin = 10 * time.Millisecond
)

type opKind uint8

const (
	opInsert opKind = iota // InsertAccept
	opResult               // SetAcceptResult
)

type opState uint8

const (
	opQueued    opState = iota // waiting in group.queue behind a leader
	opLeading                  // its caller leads the next batch (still in group.queue)
	opTaken                    // in a batch being committed
	opDone                     // answered: outID and err hold the result
	opAbandoned                // its caller gave up before it was taken: never written
)

// op is one accept write and, once done, its answer.
type op struct {
	kind opKind

	a      Accept // opInsert
	sentAt int64

	id      int64 // opResult
	result  string
	message string
	at      int64

	state opState       // guarded by group.mu
	wake  chan struct{} // followers only: one token when made leader or answered
	outID int64
	err   error
}

// group is the accept path's commit queue.
type group struct {
	// admit bounds the writes in progress (queueLen).
	admit chan struct{}

	// linger is resultLinger, 0 to make a result lead at once, and
	// lingerWithin lingerWhileInsertsWithin (tests change them).
	linger, lingerWithin time.Duration

	mu sync.Mutex
	// leading: some caller leads (waits for the writer slot or commits). It
	// holds whenever queue holds an op that is not a lingering result, so
	// every such op has a leader ahead of it that will answer it or pass
	// the lead on; a lingering result leads itself when its time is up.
	leading bool
	// lastInsert is when the last accept insert was submitted (Unix
	// nanoseconds).
	lastInsert int64
	// queue holds the ops not yet taken, oldest first; a leader's own op is
	// its first.
	queue []*op
	// batch is the leader's buffer, used by one leader at a time.
	batch []*op
}

func newGroup() group {
	return group{admit: make(chan struct{}, queueLen), batch: make([]*op, 0, maxBatch),
		linger: resultLinger, lingerWithin: lingerWhileInsertsWithin}
}

// submit writes o, leading a batch or following one, and returns its answer.
// It returns ctx.Err() or ErrClosed only when o was not and will never be
// written.
func (j *Journal) submit(ctx context.Context, o *op) error {
	if j.readOnly {
		return ErrReadOnly
	}
	if j.isClosed() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	g := &j.group
	select {
	case g.admit <- struct{}{}:
	default:
		select {
		case g.admit <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		case <-j.closed:
			return ErrClosed
		}
	}
	defer func() { <-g.admit }()

	now := time.Now().UnixNano()
	g.mu.Lock()
	j.stats.enqueued.Add(1)
	if o.kind == opInsert {
		g.lastInsert = now
	}
	if !g.leading && (o.kind == opInsert || g.linger <= 0 || now-g.lastInsert > int64(g.lingerWithin)) {
		// Ahead of the lingering results queued, if any: its batch takes
		// them along, and its own row is in its first.
		g.pushFront(o)
		g.leading = true
		o.state = opLeading
		g.mu.Unlock()
		return j.lead(ctx, o)
	}
	g.queue = append(g.queue, o)
	o.state = opQueued
	o.wake = make(chan struct{}, 1)
	if !g.leading {
		g.mu.Unlock()
		return j.linger(ctx, o)
	}
	g.mu.Unlock()
	return j.follow(ctx, o)
}

// linger waits, as a result queued with no leader, up to g.linger for an
// insert's leader to take it; then, if it is still queued and no one leads,
// it leads itself. Otherwise it follows whoever leads now.
func (j *Journal) linger(ctx context.Context, o *op) error {
	g := &j.group
	t := time.NewTimer(g.linger)
	defer t.Stop()
	select {
	case <-o.wake:
		// Made leader or answered: follow reads which (the token is
		// consumed; put it back for it).
		o.wake <- struct{}{}
	case <-ctx.Done():
	case <-j.closed:
	case <-t.C:
		j.stats.lingered.Add(1)
		g.mu.Lock()
		if o.state == opQueued && !g.leading {
			g.remove(o)
			g.pushFront(o) // its own row in its first batch
			g.leading = true
			o.state = opLeading
			g.mu.Unlock()
			return j.lead(ctx, o)
		}
		g.mu.Unlock()
	}
	return j.follow(ctx, o)
}

// follow waits, as a follower, until o is answered or its caller is made
// leader.
func (j *Journal) follow(ctx context.Context, o *op) error {
	g := &j.group
	var giveUp error
	select {
	case <-o.wake:
	case <-ctx.Done():
		giveUp = ctx.Err()
	case <-j.closed:
		giveUp = ErrClosed
	}
	g.mu.Lock()
	switch o.state {
	case opQueued: // only with giveUp: a follower is woken when leading or done
		g.remove(o)
		o.state = opAbandoned
		g.mu.Unlock()
		return giveUp
	case opLeading:
		g.mu.Unlock()
		if giveUp != nil {
			return j.resign(o, giveUp)
		}
		return j.lead(ctx, o)
	case opTaken: // only with giveUp: its batch will answer
		g.mu.Unlock()
		<-o.wake
		return o.err
	default: // opDone
		g.mu.Unlock()
		return o.err
	}
}

// lead commits, as the leader, o and every op queued behind it (up to
// maxBatch) in one transaction, answers them, commits what queued meanwhile
// (insertLeadRounds or leadRounds batches in all), and passes the lead on.
func (j *Journal) lead(ctx context.Context, o *op) error {
	select {
	case j.wsem <- struct{}{}:
	default:
		select {
		case j.wsem <- struct{}{}:
		case <-ctx.Done():
			return j.resign(o, ctx.Err())
		case <-j.closed:
			return j.resign(o, ErrClosed)
		}
	}
	// Close takes the writer slot after closing j.closed, to wait for the
	// batch under way; a leader that got the slot first must not start one.
	if j.isClosed() {
		<-j.wsem
		return j.resign(o, ErrClosed)
	}

	g := &j.group
	for round := 1; ; round++ {
		g.mu.Lock()
		n := min(len(g.queue), maxBatch)
		batch := append(g.batch[:0], g.queue[:n]...) // in round 1, g.queue[0] is o
		for _, b := range batch {
			b.state = opTaken
		}
		rest := copy(g.queue, g.queue[n:])
		clear(g.queue[rest:])
		g.queue = g.queue[:rest]
		g.mu.Unlock()

		if n > 0 {
			j.stats.taken.Add(int64(n))
			j.commitBatch(batch)
			j.stats.batches.Add(1)
		}

		g.mu.Lock()
		for i, b := range batch {
			b.state = opDone
			if b != o {
				b.wake <- struct{}{}
			}
			batch[i] = nil
		}
		g.batch = batch[:0]
		// The leader commits what queued behind it while it committed:
		// handing that to a follower would make them all wait until that
		// goroutine gets a CPU, which on a busy machine takes longer than
		// the commit. A leader whose own write is a result (its accept was
		// sent already) keeps doing so up to leadRounds batches; one whose
		// own write is an accept does it once, and only for an accept
		// queued (results alone wait for no POST: they are not worth
		// delaying its own), then passes the lead on so that its accept is
		// sent.
		more := n > 0 && len(g.queue) > 0 && !j.isClosed()
		if o.kind == opInsert {
			more = more && round < insertLeadRounds && g.insertQueued()
		} else {
			more = more && round < leadRounds
		}
		if more {
			j.stats.continued.Add(1)
			g.mu.Unlock()
			continue
		}
		g.mu.Unlock()
		<-j.wsem
		g.mu.Lock()
		g.passLead()
		g.mu.Unlock()
		return o.err
	}
}

// resign gives up the lead without writing o (its caller's ctx ended or the
// journal closed before it was taken) and returns err.
func (j *Journal) resign(o *op, err error) error {
	g := &j.group
	g.mu.Lock()
	g.remove(o)
	o.state = opAbandoned
	g.passLead()
	g.mu.Unlock()
	return err
}

// passLead makes the oldest queued op's caller the leader, or ends the lead
// when none waits. Called with mu held by the leader that is done.
func (g *group) passLead() {
	if len(g.queue) == 0 {
		g.leading = false
		return
	}
	next := g.queue[0]
	next.state = opLeading
	next.wake <- struct{}{}
}

// insertQueued reports whether an accept insert is queued. Called with mu
// held.
func (g *group) insertQueued() bool {
	for _, q := range g.queue {
		if q.kind == opInsert {
			return true
		}
	}
	return false
}

// pushFront queues o first: a new leader's own op. Called with mu held.
func (g *group) pushFront(o *op) {
	g.queue = append(g.queue, nil)
	copy(g.queue[1:], g.queue)
	g.queue[0] = o
}

// remove drops o from the queue. Called with mu held.
func (g *group) remove(o *op) {
	for i, q := range g.queue {
		if q == o {
			copy(g.queue[i:], g.queue[i+1:])
			g.queue[len(g.queue)-1] = nil
			g.queue = g.queue[:len(g.queue)-1]
			return
		}
	}
}

// commitBatch writes batch in one transaction. A row's own refusal (not
// found, transition) is that op's error and does not stop the others. If a
// statement fails, the transaction is rolled back whole and each op is
// written again in a transaction of its own, so only the failing one's
// caller gets the error. A failed COMMIT fails every op of the batch: none
// is retried, since it is not known that nothing was committed.
func (j *Journal) commitBatch(batch []*op) {
	ctx := context.Background() // taken ops are answered whatever their callers' ctx
	atCommit, err := j.writeBatch(ctx, batch)
	switch {
	case err == nil:
	case atCommit || len(batch) == 1:
		for _, o := range batch {
			o.outID, o.err = 0, err
		}
	default:
		for _, o := range batch {
			if _, err := j.writeBatch(ctx, []*op{o}); err != nil {
				o.outID, o.err = 0, err
			}
		}
	}
}

// writeBatch runs batch in one BEGIN IMMEDIATE transaction on j.w, setting
// each op's id and own error (writeOp). It returns a statement or commit
// error, with atCommit=true when that error came from COMMIT.
//
// The transaction is driven at the driver level, with every statement,
// BEGIN and COMMIT included, prepared once per connection (batchTx): a
// database/sql transaction starts a goroutine per transaction and the driver
// parses BEGIN and COMMIT each time, which together cost about as much as
// the row itself.
func (j *Journal) writeBatch(ctx context.Context, batch []*op) (atCommit bool, err error) {
	// The audit entries of a batch count once it committed; otherwise the
	// chain head in memory goes back to (or, after a failed COMMIT, is read
	// again from) the journal.
	defer func() {
		j.auditSettle(err == nil)
		j.settlePendingAccepts(err == nil)
	}()
	conn, err := j.w.Conn(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		t, err := j.stmts.on(ctx, dc)
		if err != nil {
			return err
		}
		if _, err := t.exec(stBegin); err != nil {
			return err
		}
		// On PostgreSQL the fencing term is read once per batch holding an
		// accept insert; fenced inserts are refused (never written),
		// results of sent accepts still are.
		fenced, err := j.fenceBatch(ctx, dc, batch)
		if err != nil {
			t.rollback()
			return err
		}
		for _, o := range batch {
			o.outID, o.err = 0, nil
			if fenced != nil && o.kind == opInsert {
				o.err = fenced
				continue
			}
			if err := j.writeOp(t, o); err != nil {
				t.rollback()
				return err
			}
		}
		if _, err := t.exec(stCommit); err != nil {
			atCommit = true
			// As database/sql expects of a failed COMMIT: leave no
			// transaction open on the connection.
			t.rollback()
			return err
		}
		return nil
	})
	return atCommit, err
}

// writeOp does every write of one accept-path op inside its batch's
// transaction t: the accept row, or its result. Whatever else must commit
// atomically with an accept row (such as an audit record of it) is written
// here, with t's statements (add its SQL to stmtSQL). A refusal of this op
// alone (not found, transition) is set as o.err; a returned error fails the
// statement and so the transaction.
func (j *Journal) writeOp(t *batchTx, o *op) error {
	switch o.kind {
	case opInsert:
		a := &o.a
		res, err := t.exec(stInsertAccept,
			a.Program, a.QuoteID, nonNil(a.RawQuote), a.BaseAsset, a.QuoteAsset, a.Side,
			a.BaseQty.String(), a.QuoteQty.String(), a.ExpiryMicros, o.sentAt, AcceptPending)
		if err != nil {
			return err
		}
		if o.outID, err = res.LastInsertId(); err != nil {
			return err
		}
		// Its audit entry, from the values bound above (no read back).
		return j.auditAcceptInsert(t.ctx, t, o.outID, a, o.sentAt)
	case opResult:
		res, err := t.exec(stSetResult, o.result, o.message, o.at, o.id, AcceptPending)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 1 {
			return j.auditBatchAcceptResult(t, o.id, o.result, o.message, o.at)
		}
		// Not a pending accept: say why.
		cur, found, err := t.queryString(stAcceptResult, o.id)
		switch {
		case err != nil:
			return err
		case !found:
			o.err = ErrNotFound
		default:
			o.err = fmt.Errorf("%w: %s → %s (only a pending accept gets a result)", ErrTransition, cur, o.result)
		}
	}
	return nil
}
