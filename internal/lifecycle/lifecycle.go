// Package lifecycle is the one start/stop pattern of every component that
// runs goroutines: a Group owns them, so each goroutine's owner and end are
// visible in one place. Start opens the group, Go runs a goroutine under the
// group's context, Stop cancels that context and waits for every goroutine,
// bounded by its own context; Stop is safe to call twice, and before Start.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrStarted is returned by Start on a group that was started (or stopped)
// before: a group runs once.
var ErrStarted = errors.New("already started")

// Group owns a set of goroutines. The zero value is ready to Start.
type Group struct {
	name string

	mu     sync.Mutex
	state  int // 0 new, 1 running, 2 stopped
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a group; name appears in its errors.
func New(name string) *Group { return &Group{name: name} }

// Start opens the group. Its goroutines' context is not derived from any
// start context (that one ends with the start); only Stop ends it.
func (g *Group) Start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != 0 {
		return fmt.Errorf("%s: %w", g.name, ErrStarted)
	}
	g.state = 1
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return nil
}

// Go runs f on a goroutine of the group, with the group's context. It
// reports false, running nothing, when the group is not running.
func (g *Group) Go(f func(ctx context.Context)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state != 1 {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f(g.ctx)
	}()
	return true
}

// Running reports whether the group has started and not stopped.
func (g *Group) Running() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state == 1
}

// Stop cancels the group's context and waits for its goroutines until ctx
// is done; then it returns ctx's error, the goroutines still ending on
// their own. Safe to call twice, and before Start.
func (g *Group) Stop(ctx context.Context) error {
	g.mu.Lock()
	if g.state == 1 {
		g.cancel()
	}
	g.state = 2
	g.mu.Unlock()
	return g.Wait(ctx)
}

// Wait waits for the group's goroutines until ctx is done, without
// cancelling them.
func (g *Group) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: goroutines still running: %w", g.name, ctx.Err())
	}
}
