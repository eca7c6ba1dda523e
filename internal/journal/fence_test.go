package journal

import (
	"context"
	"errors"
	"testing"
	"time"

	"treasuryd/internal/pgtest"
)

// SPEC 7.13: a deposed leader's writes that precede a POST fail (ErrFenced)
// and write nothing; its journal reports the fencing; terms only grow.
func TestDeposedLeaderIsFencedOnPostgres(t *testing.T) {
	dsn := pgtest.Schema(t)
	ctx := context.Background()
	old, err := OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	t1, err := old.BeginTerm(ctx, "old", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.InsertAccept(ctx, sampleAccept(t, "p", t0)); err != nil {
		t.Fatalf("the leader's own accept: %v", err)
	}
	next, err := OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	t2, err := next.BeginTerm(ctx, "next", nil)
	if err != nil {
		t.Fatal(err)
	}
	if t2 <= t1 || old.Term() != t1 || next.Term() != t2 {
		t.Fatalf("terms: old %d (Term %d), next %d (Term %d); want strictly increasing", t1, old.Term(), t2, next.Term())
	}
	select {
	case <-old.Fenced():
		t.Fatal("fenced before any refused write")
	default:
	}
	if _, err := old.InsertAccept(ctx, sampleAccept(t, "p", t0.Add(time.Second))); !errors.Is(err, ErrFenced) {
		t.Fatalf("deposed leader's accept: %v, want ErrFenced", err)
	}
	if _, err := old.InsertWithdrawalIntent(ctx, Withdrawal{Rule: "r", Asset: "BTC", Network: "bitcoin",
		Address: "bc1q", Amount: dec(t, "1"), CreatedAt: t0}); !errors.Is(err, ErrFenced) {
		t.Fatalf("deposed leader's withdrawal intent: %v, want ErrFenced", err)
	}
	select {
	case <-old.Fenced():
	default:
		t.Fatal("Fenced() not closed after a refused write")
	}
	as, err := next.Accepts(ctx, AcceptFilter{})
	if err != nil {
		t.Fatal(err)
	}
	ws, err := next.Withdrawals(ctx, WithdrawalFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 1 || len(ws) != 0 {
		t.Fatalf("after fencing: %d accepts, %d withdrawals; want only the first leader's one accept", len(as), len(ws))
	}
	// The new leader writes; a result of the old leader's sent accept is
	// still recorded (it follows a POST already made).
	if _, err := next.InsertAccept(ctx, sampleAccept(t, "p", t0.Add(2*time.Second))); err != nil {
		t.Fatalf("new leader's accept: %v", err)
	}
	if err := old.SetAcceptResult(ctx, as[0].ID, AcceptOK, "", t0); err != nil {
		t.Fatalf("deposed leader's result of a sent accept: %v", err)
	}
	// Both terms are on the audit chain, which is intact.
	terms := 0
	for _, e := range auditEntries(t, next) {
		if e.Kind == AuditLeadershipTerm {
			terms++
		}
	}
	if terms != 2 {
		t.Fatalf("%d leadership_term entries on the chain, want 2", terms)
	}
	requireIntact(t, next)
}

// A leader that cannot confirm its lock writes nothing that precedes a
// POST, even while the journal's term is still its own.
func TestUnconfirmedLeaderIsFencedOnPostgres(t *testing.T) {
	j, err := OpenPostgres(pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	confident := true
	if _, err := j.BeginTerm(context.Background(), "me", func() bool { return confident }); err != nil {
		t.Fatal(err)
	}
	if _, err := j.InsertAccept(context.Background(), sampleAccept(t, "p", t0)); err != nil {
		t.Fatal(err)
	}
	confident = false
	if _, err := j.InsertAccept(context.Background(), sampleAccept(t, "p", t0)); !errors.Is(err, ErrFenced) {
		t.Fatalf("unconfirmed leader's accept: %v, want ErrFenced", err)
	}
}

// A journal that never began a term (a standby, a one-shot command) cannot
// journal an accept on PostgreSQL; on SQLite the file hold is the fence.
func TestNoTermNoAcceptOnPostgres(t *testing.T) {
	j, err := OpenPostgres(pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if _, err := j.InsertAccept(context.Background(), sampleAccept(t, "p", t0)); !errors.Is(err, ErrFenced) {
		t.Fatalf("accept without a term: %v, want ErrFenced", err)
	}
	s, _ := openTemp(t)
	if s.Term() != 1 {
		t.Fatalf("SQLite term %d, want 1", s.Term())
	}
}

func TestPostgresMigrationsAreNumbered(t *testing.T) {
	if _, err := pgMigrations(); err != nil {
		t.Fatal(err)
	}
}

func TestDialectTranslation(t *testing.T) {
	tests := []struct {
		in, out   string
		returning bool
	}{
		{"SELECT a FROM t WHERE x = ? AND y = '?' -- ?\n AND z = ?", "SELECT a FROM t WHERE x = $1 AND y = '?' -- ?\n AND z = $2", false},
		{"INSERT INTO accepts (a) VALUES (?)", "INSERT INTO accepts (a) VALUES ($1) RETURNING id", true},
		{"INSERT OR IGNORE INTO settings (k) VALUES (?)", "INSERT INTO settings (k) VALUES ($1) ON CONFLICT DO NOTHING", false},
		{"INSERT INTO settings (k) VALUES (?) ON CONFLICT (k) DO NOTHING", "INSERT INTO settings (k) VALUES ($1) ON CONFLICT (k) DO NOTHING", false},
		{"UPDATE accepts SET x = ? WHERE id = ?", "UPDATE accepts SET x = $1 WHERE id = $2", false},
	}
	for _, tc := range tests {
		got, ret := translate(tc.in)
		if got != tc.out || ret != tc.returning {
			t.Errorf("translate(%q) = %q, %v; want %q, %v", tc.in, got, ret, tc.out, tc.returning)
		}
	}
}

// A PostgreSQL journal migrates once, and one written by a newer binary is
// refused, read-write and read-only.
func TestPostgresSchemaVersionIsKept(t *testing.T) {
	dsn := pgtest.Schema(t)
	j, err := OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	j, err = OpenPostgres(dsn) // a second open applies nothing again
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if _, err := j.full.ExecContext(context.Background(), "UPDATE schema_version SET version = 99"); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if _, err := OpenPostgres(dsn); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("open of a newer schema: %v, want ErrNewerSchema", err)
	}
	if _, err := OpenPostgresReadOnly(dsn); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("read-only open of a newer schema: %v, want ErrNewerSchema", err)
	}
}

// A read-only PostgreSQL journal refuses writes, and its connections are
// read-only transactions besides.
func TestPostgresReadOnlyRefusesWrites(t *testing.T) {
	dsn := pgtest.Schema(t)
	j, err := OpenPostgres(dsn)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	r, err := OpenPostgresReadOnly(dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.SetPaused(context.Background(), true, "x"); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("SetPaused on a read-only journal: %v", err)
	}
	if _, err := r.r.ExecContext(context.Background(), "DELETE FROM audit"); err == nil {
		t.Fatal("a read-only connection deleted from the audit chain")
	}
}
