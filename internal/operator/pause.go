package operator

import (
	"context"
	"fmt"
	"sync/atomic"

	"treasuryd/internal/metrics"
)

// PauseStore is the durable home of the kill switch (*journal.Journal).
type PauseStore interface {
	Paused(ctx context.Context) (bool, error)
	SetPaused(ctx context.Context, paused bool, by string) error
}

// Switch is the kill switch: while engaged, no accept and no withdrawal. Its
// state is persisted before it changes in memory, so a restart finds it as it
// was; readers see an atomic flag and never touch the disk.
type Switch struct {
	store   PauseStore
	metrics *metrics.Metrics
	paused  atomic.Bool
}

// NewSwitch builds a switch that starts engaged until Load has read the
// journal: nothing moves on a half-known state.
func NewSwitch(store PauseStore, m *metrics.Metrics) *Switch {
	s := &Switch{store: store, metrics: m}
	s.paused.Store(true)
	return s
}

// Load reads the persisted flag.
func (s *Switch) Load(ctx context.Context) error {
	p, err := s.store.Paused(ctx)
	if err != nil {
		return fmt.Errorf("load pause flag: %w", err)
	}
	s.set(p)
	return nil
}

// Paused reports whether the kill switch is engaged.
func (s *Switch) Paused() bool { return s.paused.Load() }

// Set persists the flag, then applies it.
func (s *Switch) Set(ctx context.Context, paused bool, by string) error {
	if err := s.store.SetPaused(ctx, paused, by); err != nil {
		return fmt.Errorf("persist pause flag: %w", err)
	}
	s.set(paused)
	return nil
}

func (s *Switch) set(p bool) {
	s.paused.Store(p)
	if s.metrics != nil {
		v := 0.0
		if p {
			v = 1
		}
		s.metrics.Paused.Set(v)
	}
}
