package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// heldLocks counts the POSIX locks this process holds on the file at path,
// from /proc/locks.
func heldLocks(t *testing.T, path string) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Skipf("no /proc/locks here: %v", err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	// Fields: "1: POSIX  ADVISORY  READ  1234 08:01:5678 128 128"
	suffix := fmt.Sprintf(":%d", st.Ino)
	pid := fmt.Sprint(os.Getpid())
	n := 0
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[4] == pid && strings.HasSuffix(f[5], suffix) {
			n++
		}
	}
	return n
}

// TestCheckpointsKeepSQLitesLockOnTheDatabase: the background checkpointer
// must never open and close the database file itself, which would drop the
// shared lock SQLite holds there and let another process delete the live WAL.
func TestCheckpointsKeepSQLitesLockOnTheDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.SetPaused(t.Context(), true, "test"); err != nil {
		t.Fatal(err)
	}
	if heldLocks(t, path) == 0 {
		t.Fatal("no lock on the database file right after opening: the check below would prove nothing")
	}
	start := j.stats.checkpoints.Load()
	deadline := time.Now().Add(10 * time.Second)
	for j.stats.checkpoints.Load() < start+2 && time.Now().Before(deadline) {
		if err := j.SetPaused(t.Context(), false, "test"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if j.stats.checkpoints.Load() < start+2 {
		t.Fatal("no checkpoint ran")
	}
	if n := heldLocks(t, path); n == 0 {
		t.Fatal("the process holds no lock on the database file after a checkpoint")
	}
}
