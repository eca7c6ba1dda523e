package journal

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Authority change kinds and states (SPEC 10). A widening change is journaled
// AuthorityPending when first seen, then becomes AuthorityMatured (in force)
// or AuthorityCancelled (gone from the policy file before it matured).
const (
	AuthorityKindAllowlist  = "allowlist"
	AuthorityKindCompliance = "compliance"

	AuthorityPending   = "pending"
	AuthorityMatured   = "matured"
	AuthorityCancelled = "cancelled"
)

// AuthorityChange is one widening policy change and what became of it.
type AuthorityChange struct {
	ID          int64
	Kind        string // AuthorityKindAllowlist or AuthorityKindCompliance
	Item        string // names the change and its new value; unique among pending changes
	Diff        string // for people: what the change does
	FirstSeen   time.Time
	EffectiveAt time.Time
	State       string
	ResolvedAt  time.Time // zero while pending
}

// AuthorityResolve settles a pending change as matured or cancelled.
type AuthorityResolve struct {
	ID    int64
	State string // AuthorityMatured or AuthorityCancelled
	At    time.Time
}

// AuthorityUpdate is everything one admission of a policy file changes, in
// one transaction: the baseline (the settings in force; nil: unchanged), the
// changes seen for the first time (Insert; each may already be matured, with
// ResolvedAt set, when the hold is 0) and the pending ones settled (Resolve).
type AuthorityUpdate struct {
	Baseline []byte
	Insert   []AuthorityChange
	Resolve  []AuthorityResolve
}

// Empty reports whether u changes nothing.
func (u AuthorityUpdate) Empty() bool {
	return u.Baseline == nil && len(u.Insert) == 0 && len(u.Resolve) == 0
}

// AuthorityState reads the baseline (ok=false: never set, a new journal) and
// every pending change, oldest first.
func (j *Journal) AuthorityState(ctx context.Context) (baseline []byte, ok bool, pending []AuthorityChange, err error) {
	db, err := j.reader()
	if err != nil {
		return nil, false, nil, err
	}
	err = db.QueryRowContext(ctx, `SELECT body FROM authority_baseline WHERE id = 1`).Scan(&baseline)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return nil, false, nil, fmt.Errorf("journal: read authority baseline: %w", err)
	default:
		ok = true
	}
	pending, err = j.AuthorityChanges(ctx, AuthorityPending)
	if err != nil {
		return nil, false, nil, err
	}
	return baseline, ok, pending, nil
}

// AuthorityChanges lists the changes in the given states (none given: all),
// oldest first.
func (j *Journal) AuthorityChanges(ctx context.Context, states ...string) ([]AuthorityChange, error) {
	var w where
	w.in("state", states)
	q := w.query("id, kind, item, diff, first_seen, effective_at, state, resolved_at", "authority_changes", "first_seen, id")
	return readAll(ctx, j, "read authority changes", q, w.args, scanAuthorityChange)
}

// scanAuthorityChange decodes an authority_changes row as AuthorityChanges
// selects it.
func scanAuthorityChange(s scanner) (AuthorityChange, error) {
	var (
		c                  AuthorityChange
		first, eff, solved sql.NullInt64
	)
	if err := s.Scan(&c.ID, &c.Kind, &c.Item, &c.Diff, &first, &eff, &c.State, &solved); err != nil {
		return AuthorityChange{}, err
	}
	c.FirstSeen, c.EffectiveAt, c.ResolvedAt = fromNanos(first), fromNanos(eff), fromNanos(solved)
	return c, nil
}

// SaveAuthority applies u in one transaction, flushed to disk (synchronous=
// FULL): a first sighting must survive a power loss, or a restart would
// restart its clock. It returns the ids of the inserted changes, in order.
// Resolving a change that is not pending is ErrTransition, and nothing is
// written.
func (j *Journal) SaveAuthority(ctx context.Context, u AuthorityUpdate) ([]int64, error) {
	if u.Empty() {
		return nil, nil
	}
	now := time.Now().UnixNano()
	var ids []int64
	err := j.write(ctx, j.full, func(tx *sql.Tx) error {
		ids = ids[:0]
		if u.Baseline != nil {
			if _, err := tx.ExecContext(ctx, `INSERT INTO authority_baseline (id, body, updated_at) VALUES (1, ?, ?)
				ON CONFLICT (id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at`,
				string(u.Baseline), now); err != nil {
				return fmt.Errorf("baseline: %w", err)
			}
			if err := j.appendAudit(ctx, tx, AuditAuthorityBaseline, "", auditAuthorityBaseline{
				BaselineSHA256: sha256Hex(u.Baseline), UpdatedAt: auditNanos(now)}); err != nil {
				return err
			}
		}
		for _, c := range u.Insert {
			first, _, err := requiredNanos(c.FirstSeen, "first_seen")
			if err != nil {
				return err
			}
			eff, _, err := requiredNanos(c.EffectiveAt, "effective_at")
			if err != nil {
				return err
			}
			state := c.State
			if state == "" {
				state = AuthorityPending
			}
			var solved any
			if state != AuthorityPending {
				if solved, err = nanos(c.ResolvedAt, "resolved_at"); err != nil {
					return err
				}
				if solved == nil {
					solved = now
				}
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO authority_changes (kind, item, diff, first_seen, effective_at, state, resolved_at)
				VALUES (?, ?, ?, ?, ?, ?, ?)`, c.Kind, c.Item, c.Diff, first, eff, state, solved)
			if err != nil {
				return fmt.Errorf("insert change %q: %w", c.Item, err)
			}
			id, err := res.LastInsertId()
			if err != nil {
				return err
			}
			ids = append(ids, id)
			kind := map[string]string{AuthorityPending: AuditAuthorityPending, AuthorityMatured: AuditAuthorityMatured,
				AuthorityCancelled: AuditAuthorityCancelled}[state]
			if kind == "" {
				return fmt.Errorf("insert change %q: %w: state %q", c.Item, ErrTransition, state)
			}
			if err := j.appendAudit(ctx, tx, kind, "", auditAuthorityChange{Diff: c.Diff, EffectiveAt: auditNanos(eff),
				FirstSeen: auditNanos(first), ID: id, Item: c.Item, Kind: c.Kind, State: state}); err != nil {
				return err
			}
		}
		for _, r := range u.Resolve {
			if r.State != AuthorityMatured && r.State != AuthorityCancelled {
				return fmt.Errorf("change %d: %w: to %q", r.ID, ErrTransition, r.State)
			}
			at, _, err := requiredNanos(r.At, "resolved_at")
			if err != nil {
				return err
			}
			res, err := tx.ExecContext(ctx, `UPDATE authority_changes SET state = ?, resolved_at = ? WHERE id = ? AND state = 'pending'`,
				r.State, at, r.ID)
			if err != nil {
				return fmt.Errorf("resolve change %d: %w", r.ID, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n != 1 {
				return fmt.Errorf("resolve change %d: %w: not pending", r.ID, ErrTransition)
			}
			kind := AuditAuthorityMatured
			if r.State == AuthorityCancelled {
				kind = AuditAuthorityCancelled
			}
			if err := j.appendAudit(ctx, tx, kind, "", auditAuthorityResolution{ID: r.ID, ResolvedAt: auditNanos(at), State: r.State}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("journal: save authority: %w", err)
	}
	return ids, nil
}

// The audit entries of authority changes (SPEC 13), fields in the order of
// their JSON names (canonical bodies).
type auditAuthorityChange struct {
	Diff        string `json:"diff"`
	EffectiveAt string `json:"effective_at"`
	FirstSeen   string `json:"first_seen"`
	ID          int64  `json:"id"`
	Item        string `json:"item"`
	Kind        string `json:"kind"`
	State       string `json:"state"`
}

type auditAuthorityResolution struct {
	ID         int64  `json:"id"`
	ResolvedAt string `json:"resolved_at"`
	State      string `json:"state"`
}

type auditAuthorityBaseline struct {
	BaselineSHA256 string `json:"baseline_sha256"`
	UpdatedAt      string `json:"updated_at"`
}
