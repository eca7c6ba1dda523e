package journal

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestAuthorityStateSurvivesRestartAndSettlesOnce: the baseline and each
// pending change with its first sight are durable; a pending change settles
// once (matured or cancelled), and a bad settle writes nothing.
func TestAuthorityStateSurvivesRestartAndSettlesOnce(t *testing.T) {
	forBackends(t, testAuthorityStateSurvivesRestartAndSettlesOnce)
}

func testAuthorityStateSurvivesRestartAndSettlesOnce(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	if _, ok, pend, err := j.AuthorityState(ctx); err != nil || ok || len(pend) != 0 {
		t.Fatalf("new journal: baseline ok=%v pending=%v err=%v; want none", ok, pend, err)
	}
	first := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	ids, err := j.SaveAuthority(ctx, AuthorityUpdate{
		Baseline: []byte(`{"v":1}`),
		Insert: []AuthorityChange{
			{Kind: AuthorityKindAllowlist, Item: "allowlist:BTC/bitcoin/bc1q", Diff: "+ BTC", FirstSeen: first, EffectiveAt: first.Add(24 * time.Hour)},
			{Kind: AuthorityKindCompliance, Item: "compliance.enabled=false", Diff: "enabled: true -> false", FirstSeen: first.Add(time.Second), EffectiveAt: first.Add(25 * time.Hour)},
			{Kind: AuthorityKindAllowlist, Item: "allowlist:ETH/ethereum/0x1", Diff: "+ ETH", FirstSeen: first, EffectiveAt: first, State: AuthorityMatured, ResolvedAt: first},
		},
	})
	mustNil(t, err)
	if len(ids) != 3 {
		t.Fatalf("ids %v", ids)
	}
	j = reopen(t, j)
	base, ok, pend, err := j.AuthorityState(ctx)
	mustNil(t, err)
	if !ok || string(base) != `{"v":1}` || len(pend) != 2 {
		t.Fatalf("after restart: baseline %q ok=%v pending %+v", base, ok, pend)
	}
	if p := pend[0]; p.ID != ids[0] || p.Kind != AuthorityKindAllowlist || !p.FirstSeen.Equal(first) ||
		!p.EffectiveAt.Equal(first.Add(24*time.Hour)) || p.State != AuthorityPending || !p.ResolvedAt.IsZero() {
		t.Errorf("pending[0] = %+v", p)
	}
	// The same item cannot be pending twice.
	if _, err := j.SaveAuthority(ctx, AuthorityUpdate{Insert: []AuthorityChange{{Kind: AuthorityKindAllowlist,
		Item: "allowlist:BTC/bitcoin/bc1q", FirstSeen: first, EffectiveAt: first}}}); err == nil {
		t.Error("a second pending row for one item was accepted")
	}
	// Settling: one matures, one is cancelled; the baseline moves with it.
	mustNil(t, errOnly(j.SaveAuthority(ctx, AuthorityUpdate{Baseline: []byte(`{"v":2}`), Resolve: []AuthorityResolve{
		{ID: ids[0], State: AuthorityMatured, At: first.Add(24 * time.Hour)},
		{ID: ids[1], State: AuthorityCancelled, At: first.Add(time.Hour)},
	}})))
	// Settling again is refused, and the whole update with it.
	_, err = j.SaveAuthority(ctx, AuthorityUpdate{Baseline: []byte(`{"v":3}`), Resolve: []AuthorityResolve{{ID: ids[0], State: AuthorityCancelled}}})
	if !errors.Is(err, ErrTransition) {
		t.Errorf("settling a matured change: %v, want ErrTransition", err)
	}
	base, _, pend, err = j.AuthorityState(ctx)
	mustNil(t, err)
	if string(base) != `{"v":2}` || len(pend) != 0 {
		t.Errorf("baseline %q pending %v; the refused update must write nothing", base, pend)
	}
	all, err := j.AuthorityChanges(ctx)
	mustNil(t, err)
	states := map[int64]string{}
	for _, c := range all {
		states[c.ID] = c.State
	}
	if states[ids[0]] != AuthorityMatured || states[ids[1]] != AuthorityCancelled || states[ids[2]] != AuthorityMatured {
		t.Errorf("states %v", states)
	}
}

func errOnly(_ []int64, err error) error { return err }

// TestAuthorityChangesAreChained: a baseline change, each pending change and
// its maturing or cancelling append their audit entries in the same
// transaction (SPEC 13), and the chain stays intact.
func TestAuthorityChangesAreChained(t *testing.T) {
	forBackends(t, testAuthorityChangesAreChained)
}

func testAuthorityChangesAreChained(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	first := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	ids, err := j.SaveAuthority(ctx, AuthorityUpdate{
		Baseline: []byte(`{"v":1}`),
		Insert: []AuthorityChange{
			{Kind: AuthorityKindAllowlist, Item: "allowlist:BTC/bitcoin/bc1q", Diff: "+ BTC", FirstSeen: first, EffectiveAt: first.Add(time.Hour)},
			{Kind: AuthorityKindCompliance, Item: "compliance.subject=0x2", Diff: "subject", FirstSeen: first, EffectiveAt: first.Add(time.Hour)},
		},
	})
	mustNil(t, err)
	_, err = j.SaveAuthority(ctx, AuthorityUpdate{Baseline: []byte(`{"v":2}`), Resolve: []AuthorityResolve{
		{ID: ids[0], State: AuthorityMatured, At: first.Add(time.Hour)},
		{ID: ids[1], State: AuthorityCancelled, At: first.Add(time.Minute)},
	}})
	mustNil(t, err)
	var kinds []string
	for _, e := range auditEntries(t, j) {
		kinds = append(kinds, e.Kind)
	}
	want := []string{AuditAuthorityBaseline, AuditAuthorityPending, AuditAuthorityPending,
		AuditAuthorityBaseline, AuditAuthorityMatured, AuditAuthorityCancelled}
	if onPostgres(t) {
		want = append([]string{AuditLeadershipTerm}, want...) // openTemp began a term
	}
	if !slices.Equal(kinds, want) {
		t.Fatalf("audit kinds %q, want %q", kinds, want)
	}
	rehash(t, auditEntries(t, j))
	requireIntact(t, j)
}
