package journal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// One running treasuryd holds a journal (SPEC 5.6). The hold is an flock on
// a sidecar file, <path>.lock, never on the database file itself: SQLite
// keeps POSIX locks on the database, and POSIX locks belong to the process,
// so opening and closing the database file from Go would drop SQLite's own
// locks (see lock_test.go). An flock belongs to the open file description:
// the kernel releases it when the holder exits, however it exits (kill -9
// included), so a restart is never refused by a dead holder. Only the daemon
// takes the hold: the one-shot subcommands (reconcile, replay, audit,
// addresses) read and write through SQLite's own locking beside it.

// maxHolderInfo bounds what is read from a lock file to name its holder: the
// daemon writes one short line; anything longer is not ours.
const maxHolderInfo = 256

// HeldError: the journal is held by another running treasuryd.
type HeldError struct {
	Path   string // the journal
	Holder string // "pid 123, started 2026-01-02T03:04:05Z", as the holder wrote it
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("journal %s is held by another running treasuryd (%s); stop it first "+
		"(the one-shot subcommands work beside it)", e.Path, e.Holder)
}

// Hold is this process's hold on a journal.
type Hold struct {
	f *os.File
}

// LockPath is the sidecar lock file of the journal at path.
func LockPath(path string) string { return path + ".lock" }

// Acquire takes the hold on the journal at path without waiting: a journal
// another process holds is a *HeldError naming it. The lock file gets this
// process's pid and start time for that message.
func Acquire(path string) (*Hold, error) {
	lp := LockPath(path)
	// os.OpenFile opens with O_CLOEXEC: a child process never inherits the
	// hold and keeps it alive after we die.
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: lock %s: %w", lp, err)
	}
	if err := flock(f); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &HeldError{Path: path, Holder: holderInfo(f)}
		}
		return nil, fmt.Errorf("journal: lock %s: %w", lp, err)
	}
	info := fmt.Sprintf("pid %d, started %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(info), 0)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: lock %s: write holder: %w", lp, err)
	}
	return &Hold{f: f}, nil
}

// flock takes an exclusive flock on f without blocking, retrying on EINTR.
func flock(f *os.File) error {
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// holderInfo is what the holder wrote into its lock file, or a placeholder.
func holderInfo(f *os.File) string {
	b, err := io.ReadAll(io.LimitReader(f, maxHolderInfo))
	s := strings.TrimSpace(string(b))
	if err != nil || s == "" || !strings.HasPrefix(s, "pid ") {
		return "holder unknown"
	}
	if _, err := strconv.Atoi(strings.TrimPrefix(strings.SplitN(s, ",", 2)[0], "pid ")); err != nil {
		return "holder unknown"
	}
	return s
}

// Release lets the journal go; safe twice and on nil. The lock file stays:
// removing it could let two processes lock two different files of one name.
func (h *Hold) Release() error {
	if h == nil || h.f == nil {
		return nil
	}
	err := h.f.Close()
	h.f = nil
	return err
}
