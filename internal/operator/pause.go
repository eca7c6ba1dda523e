package operator

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"treasuryd/internal/metrics"
)

// ReasonOperator is the pause reason of a pause by POST /pause.
const ReasonOperator = "operator"

// PauseStore is the durable home of the kill switch (*journal.Journal).
type PauseStore interface {
	Paused(ctx context.Context) (bool, error)
	PauseReason(ctx context.Context) (string, error)
	SetPause(ctx context.Context, paused bool, by, reason string) error
}

// Switch is the kill switch: while engaged, no accept and no withdrawal. Its
// state is persisted before it changes in memory, so a restart finds it as it
// was; readers see an atomic flag and never touch the disk.
type Switch struct {
	store   PauseStore
	metrics *metrics.Metrics
	log     *zap.Logger
	paused  atomic.Bool

	mu     sync.Mutex // serialises changes; guards reason
	reason string
}

// NewSwitch builds a switch that starts engaged until Load has read the
// journal: nothing moves on a half-known state.
func NewSwitch(store PauseStore, m *metrics.Metrics) *Switch {
	s := &Switch{store: store, metrics: m, log: zap.NewNop(), reason: "not loaded"}
	s.paused.Store(true)
	return s
}

// SetLogger sets where Halt logs; by default nowhere.
func (s *Switch) SetLogger(log *zap.Logger) {
	if log != nil {
		s.log = log
	}
}

// Load reads the persisted flag and its reason.
func (s *Switch) Load(ctx context.Context) error {
	p, err := s.store.Paused(ctx)
	if err != nil {
		return fmt.Errorf("load pause flag: %w", err)
	}
	reason, err := s.store.PauseReason(ctx)
	if err != nil {
		return fmt.Errorf("load pause reason: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set(p, reason)
	return nil
}

// Paused reports whether the kill switch is engaged.
func (s *Switch) Paused() bool { return s.paused.Load() }

// Reason is why the switch is engaged ("" when it is not).
func (s *Switch) Reason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.paused.Load() {
		return ""
	}
	return s.reason
}

// Set is an operator's pause or resume: it persists the flag, then applies
// it. A resume clears whatever reason the pause had; a pause of a switch
// already engaged keeps its reason (a withdrawal_mismatch stays visible).
func (s *Switch) Set(ctx context.Context, paused bool, by string) error {
	return s.SetWithNote(ctx, paused, by, "")
}

// SetWithNote is Set with the operator's own words for a pause: the reason
// becomes "operator: <note>". A note never replaces the reason of a switch
// already engaged (a withdrawal_mismatch stays visible).
func (s *Switch) SetWithNote(ctx context.Context, paused bool, by, note string) error {
	reason := ""
	if paused {
		reason = ReasonOperator
		if note != "" {
			reason = ReasonOperator + ": " + note
		}
		if r := s.Reason(); r != "" {
			reason = r
		}
	}
	return s.change(ctx, paused, by, reason)
}

// Halt is treasuryd pausing itself for reason (e.g. "withdrawal_mismatch"):
// persisted first, so it survives a restart, and only an operator's resume
// clears it. If the journal cannot persist it, the switch is engaged in
// memory all the same (fail closed) and the error returned.
func (s *Switch) Halt(ctx context.Context, reason string) error {
	if err := s.change(ctx, true, "treasuryd", reason); err != nil {
		s.mu.Lock()
		s.set(true, reason)
		s.mu.Unlock()
		s.log.Error("treasuryd paused itself, but the pause is not persisted", zap.String("reason", reason), zap.Error(err))
		return err
	}
	s.log.Error("treasuryd paused itself: no accept and no withdrawal until an operator resumes",
		zap.String("reason", reason))
	return nil
}

func (s *Switch) change(ctx context.Context, paused bool, by, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.store.SetPause(ctx, paused, by, reason); err != nil {
		return fmt.Errorf("persist pause flag: %w", err)
	}
	s.set(paused, reason)
	return nil
}

// set applies the flag in memory. Called with s.mu held.
func (s *Switch) set(p bool, reason string) {
	s.paused.Store(p)
	s.reason = reason
	if s.metrics != nil {
		v := 0.0
		if p {
			v = 1
		}
		s.metrics.Paused.Set(v)
	}
}
