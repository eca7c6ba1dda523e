package journal_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"treasuryd/internal/journal"
)

func TestHoldRefusesASecondHolderAndNamesTheFirst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	h, err := journal.Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = journal.Acquire(path)
	var held *journal.HeldError
	if !errors.As(err, &held) {
		t.Fatalf("second Acquire: %v; want a *HeldError", err)
	}
	if want := fmt.Sprintf("pid %d, started ", os.Getpid()); !strings.HasPrefix(held.Holder, want) ||
		!strings.Contains(err.Error(), path) {
		t.Fatalf("refusal %q does not name the journal and holder %q", err, want)
	}

	// The one-shot subcommands open the journal beside the holder.
	j, err := journal.Open(path)
	if err != nil {
		t.Fatalf("open beside the hold: %v", err)
	}
	if err := j.SetPaused(t.Context(), true, "test"); err != nil {
		t.Fatal(err)
	}
	j.Close()
	ro, err := journal.OpenReadOnly(path)
	if err != nil {
		t.Fatalf("open read-only beside the hold: %v", err)
	}
	ro.Close()

	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if err := h.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	h2, err := journal.Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	h2.Release()
}

func TestHoldIgnoresWhatAStrangerWroteInTheLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	h, err := journal.Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	if err := os.WriteFile(journal.LockPath(path), []byte(strings.Repeat("x", 10000)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = journal.Acquire(path)
	var held *journal.HeldError
	if !errors.As(err, &held) || held.Holder != "holder unknown" {
		t.Fatalf("%v; want a *HeldError with holder unknown", err)
	}
}

func TestPauseReasonAndMismatchRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := j.SetPause(ctx, true, "treasuryd", "withdrawal_mismatch"); err != nil {
		t.Fatal(err)
	}
	if err := j.RecordMismatch(ctx, 7, "address differs"); err != nil {
		t.Fatal(err)
	}
	if err := j.RecordMismatch(ctx, 7, "again"); err != nil {
		t.Fatalf("recording a mismatch twice: %v", err)
	}
	j.Close()

	// Across a reopen (a restart).
	j, err = journal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	p, by, _, err := j.PauseState(ctx)
	reason, rerr := j.PauseReason(ctx)
	if err != nil || rerr != nil || !p || by != "treasuryd" || reason != "withdrawal_mismatch" {
		t.Fatalf("after reopen: paused %v by %q reason %q (%v, %v)", p, by, reason, err, rerr)
	}
	for id, want := range map[int64]bool{7: true, 8: false} {
		if got, err := j.MismatchRecorded(ctx, id); err != nil || got != want {
			t.Fatalf("MismatchRecorded(%d) = %v, %v; want %v", id, got, err, want)
		}
	}
	if err := j.SetPaused(ctx, false, "http 127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	if reason, _ := j.PauseReason(ctx); reason != "" {
		t.Fatalf("a resume left the reason %q", reason)
	}
}
