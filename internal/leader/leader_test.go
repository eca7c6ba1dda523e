package leader

import (
	"context"
	"testing"
	"time"

	"treasuryd/internal/pgtest"
)

// The lock is per server and key, not per schema: each test takes its own
// database so that tests running at once do not compete for one lock.
func lockDSN(t *testing.T) string {
	t.Helper()
	return pgtest.Database(t)
}

func TestOneLeaderAtATimeAndTheStandbyTakesOverOnRelease(t *testing.T) {
	dsn := lockDSN(t)
	const lease = 2 * time.Second
	a, b := New(dsn, lease, nil), New(dsn, lease, nil)
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	if !a.Confident() {
		t.Fatal("a holds the lock but is not confident")
	}
	short, cancelShort := context.WithTimeout(ctx, lease)
	watchCtx, stopWatch := context.WithCancel(ctx)
	lost := make(chan error, 1)
	go func() { lost <- a.Watch(watchCtx) }()
	if err := b.Campaign(short); err == nil {
		t.Fatal("b became leader while a holds and confirms the lock")
	}
	cancelShort()
	if b.Confident() {
		t.Fatal("b is confident without the lock")
	}
	stopWatch()
	if err := <-lost; err != nil {
		t.Fatalf("watch ended with %v, want nil on cancel", err)
	}
	a.Close()
	if a.Confident() {
		t.Fatal("a is confident after Close")
	}
	if err := b.Campaign(ctx); err != nil {
		t.Fatalf("b after a let go: %v", err)
	}
}

// A leader that stops confirming (a paused process) loses the lock on the
// server's clock, and counts itself deposed before the server frees it.
func TestSilentLeaderLosesTheLockAfterTheLease(t *testing.T) {
	dsn := lockDSN(t)
	const lease = 1500 * time.Millisecond
	a, b := New(dsn, lease, nil), New(dsn, lease, nil)
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Now()
	// a is "paused": no Watch, no statement on its session.
	if err := b.Campaign(ctx); err != nil {
		t.Fatalf("b never took over from a silent leader: %v", err)
	}
	if waited := time.Since(took); waited < lease {
		t.Fatalf("b took over after %s, before the lease %s", waited, lease)
	}
	if a.Confident() {
		t.Fatal("the silent leader still counts itself leader after the server freed its lock")
	}
	// a wakes: its watch reports the loss at its first tick.
	if err := a.Watch(ctx); err == nil {
		t.Fatal("the woken leader's watch did not report the loss")
	}
}
