package lifecycle

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestGroupStopsItsGoroutines(t *testing.T) {
	g := New("test")
	if g.Go(func(context.Context) {}) {
		t.Fatal("Go ran before Start")
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Start = %v, want ErrStarted", err)
	}
	ended := make(chan struct{})
	if !g.Go(func(ctx context.Context) { <-ctx.Done(); close(ended) }) {
		t.Fatal("Go refused while running")
	}
	if err := g.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	default:
		t.Fatal("Stop returned before the goroutine ended")
	}
	if err := g.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop = %v", err)
	}
	if g.Go(func(context.Context) {}) || g.Running() {
		t.Fatal("Go ran after Stop")
	}
}

func TestStopIsBoundedByItsContext(t *testing.T) {
	g := New("test")
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer close(release)
	g.Go(func(context.Context) { <-release }) // ignores cancellation
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := g.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Stop = %v, want DeadlineExceeded", err)
	}
}

func TestStopBeforeStart(t *testing.T) {
	g := New("test")
	if err := g.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); !errors.Is(err, ErrStarted) {
		t.Fatalf("Start after Stop = %v, want ErrStarted", err)
	}
}
