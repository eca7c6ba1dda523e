package journal

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
)

// Group commit of the accept path's writes (InsertAccept, SetAcceptResult).
//
// With 200 programs accepting at once, one transaction per row made every
// accept wait behind the other programs' transactions on the single writer.
// Instead each call queues an op and waits; one committer goroutine, owned by
// the Journal, takes the writer slot, takes every op queued by then (up to
// maxBatch) and writes them in one BEGIN IMMEDIATE transaction on the NORMAL
// pool. A caller returns only after the transaction holding its row has
// committed, so "journaled before it is sent" still holds; each gets its own
// id and error.
//
// An op moves queued → taken (by the committer, just before its transaction)
// or queued → abandoned (by its caller, whose ctx ended or whose journal
// closed while it waited). Exactly one of the two CASes wins: an abandoned op
// is never written, and a taken one is always answered, so the caller then
// waits for the commit whatever its ctx says.

const (
	// maxBatch bounds the rows of one group-commit transaction, so that the
	// writer slot is never held for long by one batch (at some 10 µs a row,
	// 128 rows are about a millisecond) and a batch's memory is bounded.
	// Under SPEC 8's load (200 programs, each with at most one accept write
	// outstanding) a batch stays well below it.
	maxBatch = 128
	// queueLen bounds the accept writes waiting for the committer. Each
	// program has at most one accept write outstanding, so 1,024 covers five
	// times SPEC 8's 200 programs; a caller beyond it waits to enqueue,
	// honouring its ctx.
	queueLen = 1024
)

type opKind uint8

const (
	opInsert opKind = iota // InsertAccept
	opResult               // SetAcceptResult
)

const (
	opQueued int32 = iota
	opTaken
	opAbandoned
)

// op is one queued accept write and, once done is closed, its answer.
type op struct {
	kind opKind

	a      Accept // opInsert
	sentAt int64

	id      int64 // opResult
	result  string
	message string
	at      int64

	state atomic.Int32
	done  chan struct{}
	outID int64
	err   error
}

// submit queues o for the committer and waits for its answer. It returns
// ctx.Err() or ErrClosed only when o was not and will never be written.
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
	o.done = make(chan struct{})
	select {
	case j.ops <- o:
		j.stats.enqueued.Add(1)
	case <-ctx.Done():
		return ctx.Err()
	case <-j.closed:
		return ErrClosed
	}
	select {
	case <-o.done:
		return o.err
	case <-ctx.Done():
		if o.state.CompareAndSwap(opQueued, opAbandoned) {
			return ctx.Err()
		}
	case <-j.closed:
		if o.state.CompareAndSwap(opQueued, opAbandoned) {
			return ErrClosed
		}
	}
	// Taken: its transaction is under way and will answer.
	<-o.done
	return o.err
}

// commitLoop is the committer goroutine. It stops when the journal closes,
// after answering every op it took; ops still queued are abandoned by their
// callers, who see the journal closed.
func (j *Journal) commitLoop() {
	defer j.bg.Done()
	batch := make([]*op, 0, maxBatch)
	for {
		var first *op
		select {
		case first = <-j.ops:
		case <-j.closed:
			return
		}
		select {
		case j.wsem <- struct{}{}:
		case <-j.closed:
			return
		}
		// Holding the writer slot: take first and whatever queued meanwhile.
		batch = batch[:0]
		if first.state.CompareAndSwap(opQueued, opTaken) {
			batch = append(batch, first)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case o := <-j.ops:
				if o.state.CompareAndSwap(opQueued, opTaken) {
					batch = append(batch, o)
				}
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			j.stats.taken.Add(int64(len(batch)))
			j.commitBatch(batch)
			j.stats.batches.Add(1)
		}
		<-j.wsem
		for i, o := range batch {
			close(o.done)
			batch[i] = nil
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
// each op's id and own error. It returns a statement or commit error, with
// atCommit=true when that error came from COMMIT.
func (j *Journal) writeBatch(ctx context.Context, batch []*op) (atCommit bool, err error) {
	tx, err := j.w.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil && !atCommit {
			_ = tx.Rollback()
		}
		j.auditSettle(err == nil)
	}()
	for _, o := range batch {
		o.outID, o.err = 0, nil
		switch o.kind {
		case opInsert:
			a := o.a
			res, err := tx.ExecContext(ctx, `INSERT INTO accepts
				(program, quote_id, raw_quote, base_asset, quote_asset, side, base_qty, quote_qty, expiry_micros, sent_at, result)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				a.Program, a.QuoteID, nonNil(a.RawQuote), a.BaseAsset, a.QuoteAsset, a.Side,
				a.BaseQty.String(), a.QuoteQty.String(), a.ExpiryMicros, o.sentAt, AcceptPending)
			if err != nil {
				return false, err
			}
			if o.outID, err = res.LastInsertId(); err != nil {
				return false, err
			}
			if err := j.auditAcceptInsert(ctx, tx, o.outID, a, o.sentAt); err != nil {
				return false, err
			}
		case opResult:
			cur, err := acceptResultTx(ctx, tx, o.id)
			switch {
			case errors.Is(err, ErrNotFound):
				o.err = err
				continue
			case err != nil:
				return false, err
			case cur != AcceptPending:
				o.err = fmt.Errorf("%w: %s → %s (only a pending accept gets a result)", ErrTransition, cur, o.result)
				continue
			}
			if _, err := tx.ExecContext(ctx, `UPDATE accepts SET result = ?, message = ?, result_at = ? WHERE id = ?`,
				o.result, o.message, o.at, o.id); err != nil {
				return false, err
			}
			if err := j.auditAcceptRow(ctx, tx, AuditAcceptResult, o.id); err != nil {
				return false, err
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return true, err
	}
	return false, nil
}
