package journal

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// fillReads journals n accepts, withdrawals and frames, one second apart.
func fillReads(t *testing.T, j *Journal, n int) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		at := t0.Add(time.Duration(i) * time.Second)
		_, err := j.InsertAccept(ctx, sampleAccept(t, "p", at))
		mustNil(t, err)
		_, err = j.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, "r", at))
		mustNil(t, err)
		mustNil(t, j.RecordFrames(ctx, []Frame{{Program: "p", ReceivedAt: at, Balance: decimal.NewFromInt(1)}}))
	}
}

func TestReadWalksStopAtTheCallersErrorAndReturnItAsIs(t *testing.T) {
	forBackends(t, testReadWalksStopAtTheCallersErrorAndReturnItAsIs)
}

func testReadWalksStopAtTheCallersErrorAndReturnItAsIs(t *testing.T) {
	j, _ := openTemp(t)
	fillReads(t, j, 4)
	stop := errors.New("caller stops here")
	tests := []struct {
		name string
		walk func(ctx context.Context, fn func() error) error
	}{
		{"frames", func(ctx context.Context, fn func() error) error {
			return j.Frames(ctx, time.Time{}, "", func(Frame) error { return fn() })
		}},
		{"audit entries", func(ctx context.Context, fn func() error) error {
			return j.AuditEntries(ctx, time.Time{}, func(AuditEntry) error { return fn() })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := tt.walk(context.Background(), func() error {
				calls++
				if calls == 2 {
					return stop
				}
				return nil
			})
			if err != stop { // as is: not even wrapped
				t.Errorf("walk returned %v, want the callback's own error", err)
			}
			if calls != 2 {
				t.Errorf("callback ran %d times, want 2 (the walk goes on after an error)", calls)
			}
		})
	}
}

func TestReadWalkStopsWhenItsContextIsCancelled(t *testing.T) {
	forBackends(t, testReadWalkStopsWhenItsContextIsCancelled)
}

func testReadWalkStopsWhenItsContextIsCancelled(t *testing.T) {
	j, _ := openTemp(t)
	fillReads(t, j, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	err := j.Frames(ctx, time.Time{}, "", func(Frame) error {
		calls++
		cancel() // the caller gives up after the first frame
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Frames after cancel: %v, want context.Canceled", err)
	}
	if !strings.Contains(err.Error(), "read frames") {
		t.Errorf("error %q does not say what was being read", err)
	}
	if calls != 1 {
		t.Errorf("callback ran %d times after its context was cancelled, want 1", calls)
	}
}

// TestReadErrorsNameWhatWasRead: every read through the shared helper wraps
// its error with the read it was, and keeps the cause for errors.Is.
func TestReadErrorsNameWhatWasRead(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	fillReads(t, j, 1)
	mustNil(t, j.Close())
	tests := []struct {
		name, naming string
		read         func() error
	}{
		{"accepts", "journal: list accepts: ", func() error { _, err := j.Accepts(ctx, AcceptFilter{}); return err }},
		{"last accept", "journal: last accept of p: ", func() error { _, _, err := j.LastAccept(ctx, "p"); return err }},
		{"accept by id", "journal: accept 7: ", func() error { _, err := j.AcceptByID(ctx, 7); return err }},
		{"withdrawals", "journal: list withdrawals: ", func() error { _, err := j.OpenWithdrawals(ctx); return err }},
		{"withdrawal by id", "journal: withdrawal 7: ", func() error { _, err := j.WithdrawalByID(ctx, 7); return err }},
		{"authority changes", "journal: read authority changes: ", func() error { _, err := j.AuthorityChanges(ctx); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.read()
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("read after Close: %v, want ErrClosed", err)
			}
			if !strings.HasPrefix(err.Error(), tt.naming) {
				t.Errorf("error %q does not start with %q", err, tt.naming)
			}
		})
	}
}

// TestVerifyAuditNamesAnEditedRowOnEveryBackend: a row edited outside
// treasuryd is reported as a problem naming the field, on PostgreSQL too,
// where checking it reads its entry while the transaction's one connection
// has just walked the table.
func TestVerifyAuditNamesAnEditedRowOnEveryBackend(t *testing.T) {
	forBackends(t, testVerifyAuditNamesAnEditedRowOnEveryBackend)
}

func testVerifyAuditNamesAnEditedRowOnEveryBackend(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	fillReads(t, j, 3)
	if _, err := j.w.ExecContext(ctx, `UPDATE accepts SET message = 'edited' WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	v, err := j.VerifyAudit(ctx)
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	if len(v.Problems) != 1 {
		t.Fatalf("VerifyAudit found %d problems, want 1: %v", len(v.Problems), v.Problems)
	}
	if p := v.Problems[0]; p.Table != "accepts" || p.Row != 2 || !strings.Contains(p.Problem, `message is "edited" in the journal`) {
		t.Errorf("problem %+v does not name accepts row 2's edited message", p)
	}
}
