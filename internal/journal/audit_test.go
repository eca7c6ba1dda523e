package journal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// auditEntries reads the whole chain.
func auditEntries(t *testing.T, j *Journal) []AuditEntry {
	t.Helper()
	var es []AuditEntry
	if err := j.AuditEntries(context.Background(), time.Time{}, func(e AuditEntry) error {
		es = append(es, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return es
}

// requireIntact fails the test unless VerifyAudit finds nothing wrong.
func requireIntact(t *testing.T, j *Journal) AuditVerification {
	t.Helper()
	v, err := j.VerifyAudit(context.Background())
	if err != nil {
		t.Fatalf("VerifyAudit: %v", err)
	}
	if !v.Intact() {
		t.Fatalf("VerifyAudit found %d problems, first: %s", len(v.Problems), v.Problems[0])
	}
	return v
}

// rehash recomputes the chain as docs/audit.md tells an auditor to, without
// the package's own code: SHA-256 over the previous 32 raw bytes (zeros
// first) followed by the stored body.
func rehash(t *testing.T, es []AuditEntry) {
	t.Helper()
	prev := make([]byte, 32)
	for i, e := range es {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d has sequence %d", i+1, e.Seq)
		}
		h := sha256.Sum256(append(slices.Clone(prev), e.Body...))
		if !bytes.Equal(h[:], e.Hash) {
			t.Fatalf("entry %d: stored hash %x, recomputed %x", e.Seq, e.Hash, h)
		}
		prev = h[:]
	}
}

// TestAuditChainRecordsEveryMoneyWrite makes every kind of money-state write
// and checks that each appended its entry, in order, that the chain
// recomputes independently, that VerifyAudit finds it intact, and that the
// counter counted each entry once.
func TestAuditChainRecordsEveryMoneyWrite(t *testing.T) {
	forBackends(t, testAuditChainRecordsEveryMoneyWrite)
}

func testAuditChainRecordsEveryMoneyWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	j := New(path)
	counter := prometheus.NewCounter(prometheus.CounterOpts{Name: "treasuryd_audit_entries_total"})
	j.SetAuditCounter(counter)
	ctx := context.Background()
	if err := j.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })

	a1, err := j.InsertAccept(ctx, sampleAccept(t, "p1", t0))
	must(t, err)
	must(t, j.SetAcceptResult(ctx, a1, AcceptOK, "", t0.Add(time.Second)))
	a2, err := j.InsertAccept(ctx, sampleAccept(t, "p2", t0))
	must(t, err)
	must(t, j.SetAcceptResult(ctx, a2, AcceptUnknown, "timeout", t0.Add(time.Second)))
	must(t, j.SettleAccept(ctx, a2, AcceptOK, "conv-1"))
	_, err = j.InsertAccept(ctx, sampleAccept(t, "p3", t0))
	must(t, err)
	n, err := j.MarkPendingAcceptsUnknown(ctx)
	must(t, err)
	if n != 1 {
		t.Fatalf("MarkPendingAcceptsUnknown changed %d, want 1", n)
	}
	w1, err := j.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, "sweep", t0))
	must(t, err)
	must(t, j.UpdateWithdrawal(ctx, w1, WithdrawalUnresolved, "", "", "no match"))
	must(t, j.ResolveWithdrawal(ctx, w1, WithdrawalSubmitted, "desk-7", "", "http 127.0.0.1:1"))
	must(t, j.SetPaused(ctx, true, "operator: desk maintenance"))
	must(t, j.SetPaused(ctx, false, "operator"))
	_, err = j.SaveReport(ctx, Report{At: t0, Clean: true, Body: []byte(`{"breaks":[]}`)})
	must(t, err)
	must(t, j.AppendAuthority(ctx, AuditAuthorityPending, "policy reload", struct {
		Kind string `json:"kind"`
	}{"allowlist"}))

	// Refused writes append nothing.
	if err := j.SetAcceptResult(ctx, a1, AcceptRejected, "", time.Time{}); err == nil {
		t.Fatal("a second result was accepted")
	}
	if err := j.ResolveWithdrawal(ctx, w1, WithdrawalFailed, "", "", "op"); err == nil {
		t.Fatal("resolving a submitted withdrawal was accepted")
	}
	if err := j.AppendAuthority(ctx, AuditPause, "x", struct{}{}); err == nil {
		t.Fatal("AppendAuthority took a pause kind")
	}

	es := auditEntries(t, j)
	var kinds []string
	for _, e := range es {
		kinds = append(kinds, e.Kind)
	}
	want := []string{AuditAcceptIntent, AuditAcceptResult, AuditAcceptIntent, AuditAcceptResult, AuditAcceptSettled,
		AuditAcceptIntent, AuditAcceptMarkedUnknown, AuditWithdrawalIntent, AuditWithdrawalUpdate,
		AuditOperatorResolution, AuditPause, AuditResume, AuditReport, AuditAuthorityPending}
	if !slices.Equal(kinds, want) {
		t.Fatalf("kinds %v\nwant  %v", kinds, want)
	}
	rehash(t, es)
	v := requireIntact(t, j)
	if v.Head.Sequence != int64(len(want)) || v.Entries != int64(len(want)) || v.Rows != 3+1+1+1 {
		t.Fatalf("verification %+v; want head %d, %d entries, 6 rows", v, len(want), len(want))
	}
	head, err := j.AuditHead(ctx)
	must(t, err)
	if head != v.Head {
		t.Fatalf("AuditHead %+v, verification head %+v", head, v.Head)
	}
	if got := testutil.ToFloat64(counter); got != float64(len(want)) || j.AuditAppended() != int64(len(want)) {
		t.Fatalf("counter %v, AuditAppended %d; want %d", got, j.AuditAppended(), len(want))
	}

	// The resolution names the operator; the pause its reason.
	var b struct {
		By   string          `json:"by"`
		Data json.RawMessage `json:"data"`
	}
	must(t, json.Unmarshal(es[9].Body, &b))
	if b.By != "http 127.0.0.1:1" || !strings.Contains(string(b.Data), `"desk_id":"desk-7"`) {
		t.Fatalf("resolution entry %s", es[9].Body)
	}
	must(t, json.Unmarshal(es[10].Body, &b))
	if b.By != "operator: desk maintenance" || !strings.Contains(string(b.Data), `"paused":true`) {
		t.Fatalf("pause entry %s", es[10].Body)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestAuditBodiesAreCanonical: every body is compact JSON with its keys
// sorted at every level and decimals as strings, so that re-encoding it
// with sorted keys gives the same bytes.
func TestAuditBodiesAreCanonical(t *testing.T) {
	forBackends(t, testAuditBodiesAreCanonical)
}

func testAuditBodiesAreCanonical(t *testing.T) {
	j, _ := openTemp(t)
	ctx := context.Background()
	id, err := j.InsertAccept(ctx, sampleAccept(t, "p<&>", t0))
	must(t, err)
	must(t, j.SetAcceptResult(ctx, id, AcceptRejected, "bad \"quote\" <x>", time.Time{}))
	_, err = j.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, "r", t0))
	must(t, err)
	must(t, j.SetPaused(ctx, true, "é"))
	for _, e := range auditEntries(t, j) {
		var v any
		dec := json.NewDecoder(bytes.NewReader(e.Body))
		dec.UseNumber()
		must(t, dec.Decode(&v))
		again, err := json.Marshal(v) // maps marshal with sorted keys
		must(t, err)
		if !bytes.Equal(again, e.Body) {
			t.Errorf("entry %d is not canonical:\n%s\n%s", e.Seq, e.Body, again)
		}
		if e.Kind == AuditAcceptIntent && !strings.Contains(string(e.Body), `"base_qty":"0.00000001","convert_id":""`) {
			t.Errorf("entry %d: decimals not as strings: %s", e.Seq, e.Body)
		}
	}
}

// TestAuditChainUnderConcurrentWriters: accepts (group commit), withdrawals
// and pauses from many goroutines, and a second handle on the same file (a
// one-shot `reconcile` beside the daemon) saving reports, still make one
// gapless chain that covers every row.
func TestAuditChainUnderConcurrentWriters(t *testing.T) {
	forBackends(t, testAuditChainUnderConcurrentWriters)
}

func testAuditChainUnderConcurrentWriters(t *testing.T) {
	j, _ := openTemp(t)
	other := openOther(t, j)
	ctx := context.Background()
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*3)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id, err := j.InsertAccept(ctx, sampleAccept(t, fmt.Sprintf("p%d", w), t0))
				if err != nil {
					errs <- err
					return
				}
				if err := j.SetAcceptResult(ctx, id, AcceptOK, "", time.Time{}); err != nil {
					errs <- err
				}
				switch i % 3 {
				case 0:
					if _, err := j.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, fmt.Sprintf("r%d", w), t0)); err != nil {
						errs <- err
					}
				case 1:
					if err := j.SetPaused(ctx, i%2 == 0, "w"); err != nil {
						errs <- err
					}
				case 2:
					if _, err := other.SaveReport(ctx, Report{Clean: true, Body: []byte("{}")}); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all := auditEntries(t, j)
	es := all
	if onPostgres(t) {
		es = es[1:] // the leadership term openTemp began
	}
	if want := workers*each*2 + workers*each/3*3 + workers; len(es) < workers*each*3 || len(es) > want {
		t.Fatalf("%d entries; want %d..%d", len(es), workers*each*3, want)
	}
	rehash(t, all)
	requireIntact(t, j)
	if got := j.AuditAppended() + other.AuditAppended(); got != int64(len(auditEntries(t, j))) {
		t.Fatalf("the two handles counted %d entries; the chain holds %d", got, len(es))
	}
}

// TestAuditChainStartsWithWhatAnOlderJournalHeld: a journal written before
// the chain existed (schema 1, with rows) gets one snapshot entry per
// money-state record when it is migrated, so it verifies intact, and later
// writes chain on from there.
func TestAuditChainStartsWithWhatAnOlderJournalHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.db")
	db, err := sql.Open("sqlite", path)
	must(t, err)
	ms, err := migrations()
	must(t, err)
	for _, q := range []string{
		ms[0].sql,
		"PRAGMA user_version = 1",
		`INSERT INTO accepts (program, quote_id, raw_quote, base_asset, quote_asset, side, base_qty, quote_qty, expiry_micros, sent_at, result)
			VALUES ('p', 'q1', x'7b7d', 'BTC', 'USD', 'sell', '0.5', '30000.10', 1, 1700000000000000000, 'ok')`,
		`INSERT INTO withdrawals (rule, asset, network, address, amount, created_at, state) VALUES ('r', 'BTC', 'bitcoin', 'bc1q', '1', 1700000000000000000, 'completed')`,
		`INSERT INTO reports (at, clean, body) VALUES (1700000000000000000, 1, '{}')`,
		`INSERT INTO settings (key, value, updated_by, updated_at) VALUES ('paused', '1', 'op', 1700000000000000000)`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%.40s: %v", q, err)
		}
	}
	must(t, db.Close())

	j, err := Open(path)
	must(t, err)
	defer j.Close()
	es := auditEntries(t, j)
	var kinds []string
	for _, e := range es {
		kinds = append(kinds, e.Kind)
	}
	if want := []string{AuditAcceptSnapshot, AuditWithdrawalSnapshot, AuditReportSnapshot, AuditPauseSnapshot}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds after the upgrade %v, want %v", kinds, want)
	}
	must(t, j.SetPaused(context.Background(), false, "op"))
	rehash(t, auditEntries(t, j))
	requireIntact(t, j)
}

// TestAuditBodyBytesAreEncodingJSONs: the body written by hand on the
// accept path is byte for byte what encoding/json makes of auditBody.
func TestAuditBodyBytesAreEncodingJSONs(t *testing.T) {
	data := []byte(`{"id":1,"message":"\u003cx\u003e"}`)
	for _, by := range []string{"", "operator", `http 1.2.3.4:5 "quoted" <b> é` + "\n\x00"} {
		want, err := json.Marshal(auditBody{At: auditNanos(t0.UnixNano()), By: by, Data: data, Kind: AuditPause, Seq: 1234567})
		must(t, err)
		if got := auditBodyBytes(auditNanos(t0.UnixNano()), by, data, AuditPause, 1234567); !bytes.Equal(got, want) {
			t.Errorf("by %q:\n got %s\nwant %s", by, got, want)
		}
	}
}

// TestAuditAcceptJSONIsEncodingJSONs: the accept data written by hand on
// the accept path is byte for byte what encoding/json makes of auditAccept,
// for plain values and for every kind of string encoding/json escapes.
func TestAuditAcceptJSONIsEncodingJSONs(t *testing.T) {
	plain := auditAccept{BaseAsset: "BTC", BaseQty: "0.0001", ExpiryMicros: 1733000000123456, ID: 42,
		Program: "p01", QuoteAsset: "USD", QuoteID: "q-1", QuoteQty: "6.5", RawQuoteSHA256: sha256Hex([]byte("{}")),
		Result: AcceptPending, SentAt: auditNanos(t0.UnixNano()), Side: "sell"}
	odd := []string{"", `"quoted"`, `back\slash`, "<b>&amp;", "é ü 漢", "\x00\x1f\x7f", "bad \xff utf-8",
		"\u2028\u2029", "tab\tnew\nline"}
	cases := []auditAccept{plain, {ExpiryMicros: -1, ID: -9}}
	for _, s := range odd {
		a := plain
		a.Program, a.QuoteID, a.Message, a.ConvertID, a.ResultAt = s, s, s, "c"+s, s+"z"
		cases = append(cases, a)
	}
	for _, a := range cases {
		want, err := json.Marshal(a)
		must(t, err)
		if got := a.appendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("%+v:\n got %s\nwant %s", a, got, want)
		}
	}
}

// TestAuditHeadInMemoryFollowsAnotherWriter: the head this process keeps
// in memory goes stale when another process appends; its next entry still
// lands right after the other's, on its hash.
func TestAuditHeadInMemoryFollowsAnotherWriter(t *testing.T) {
	forBackends(t, testAuditHeadInMemoryFollowsAnotherWriter)
}

func testAuditHeadInMemoryFollowsAnotherWriter(t *testing.T) {
	j, _ := openTemp(t)
	ctx := context.Background()
	must(t, j.SetPaused(ctx, true, "a"))
	other := openOther(t, j)
	must(t, other.SetPaused(ctx, false, "b"))
	_, err := other.SaveReport(ctx, Report{Clean: true, Body: []byte("{}")})
	must(t, err)
	must(t, other.Close())
	must(t, j.SetPaused(ctx, true, "c"))
	all := auditEntries(t, j)
	es := all
	if onPostgres(t) {
		es = es[1:] // the leadership term openTemp began
	}
	if len(es) != 4 || es[3].Kind != AuditPause {
		t.Fatalf("%d entries; want 4, the last a pause", len(es))
	}
	rehash(t, all)
	requireIntact(t, j)
}

// TestAuditRolledBackTransactionLeavesNoEntryAndNoStaleHead: a transaction
// whose audit entry was appended and that then fails is rolled back whole
// (record and entries), is not counted, and the next write chains on the
// real head, not on the one the failed transaction had reached in memory.
// SQLite only: it fails a transaction with a SQLite trigger.
func TestAuditRolledBackTransactionLeavesNoEntryAndNoStaleHead(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	for range 2 {
		_, err := j.InsertAccept(ctx, sampleAccept(t, "p", t0))
		must(t, err)
	}
	before := len(auditEntries(t, j))
	// The second accept's entry is refused by the database: the first one's
	// was already appended in the same transaction.
	_, err := j.w.ExecContext(ctx, `CREATE TEMP TRIGGER poison BEFORE INSERT ON audit
		WHEN NEW.kind = 'accept_marked_unknown' AND CAST(NEW.body AS TEXT) LIKE '%"id":2,%'
		BEGIN SELECT RAISE(ABORT, 'poisoned entry'); END`)
	must(t, err)
	if _, err := j.MarkPendingAcceptsUnknown(ctx); err == nil || !strings.Contains(err.Error(), "poisoned entry") {
		t.Fatalf("MarkPendingAcceptsUnknown: %v; want the poisoned entry's error", err)
	}
	if as, err := j.Accepts(ctx, AcceptFilter{Results: []string{AcceptUnknown}}); err != nil || len(as) != 0 {
		t.Fatalf("unknown accepts after the rollback: %d %v; want none", len(as), err)
	}
	if got := len(auditEntries(t, j)); got != before || j.AuditAppended() != int64(before) {
		t.Fatalf("%d entries, %d counted after the rollback; want %d", got, j.AuditAppended(), before)
	}
	_, err = j.w.ExecContext(ctx, `DROP TRIGGER temp.poison`)
	must(t, err)
	// A transaction that appended and then failed elsewhere.
	errLater := errors.New("a later statement failed")
	if err := j.write(ctx, j.full, func(tx *sql.Tx) error {
		must(t, j.appendAudit(ctx, tx, AuditAuthorityPending, "", struct{}{}))
		return errLater
	}); !errors.Is(err, errLater) {
		t.Fatalf("write: %v", err)
	}
	must(t, j.SetPaused(ctx, true, "after")) // on the other write pool
	n, err := j.MarkPendingAcceptsUnknown(ctx)
	must(t, err)
	if n != 2 {
		t.Fatalf("MarkPendingAcceptsUnknown changed %d, want 2", n)
	}
	es := auditEntries(t, j)
	rehash(t, es)
	requireIntact(t, j)
	if len(es) != before+3 || j.AuditAppended() != int64(len(es)) {
		t.Fatalf("%d entries, %d counted; want %d", len(es), j.AuditAppended(), before+3)
	}
}

// TestAuditChainSurvivesKill9: a child process appending from many
// goroutines (group commit) and on the flushed pool is killed with SIGKILL;
// the journal it leaves verifies intact, and the start-up step after it
// chains on.
func TestAuditChainSurvivesKill9(t *testing.T) {
	for _, mode := range []string{"", "concurrent-accepts"} {
		t.Run("mode="+mode, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal.db")
			runKilledChild(t, path, mode)
			j, err := Open(path)
			must(t, err)
			defer j.Close()
			v := requireIntact(t, j)
			if v.Head.Sequence == 0 {
				t.Fatal("the killed child left an empty chain")
			}
			_, err = j.MarkPendingAcceptsUnknown(context.Background())
			must(t, err)
			rehash(t, auditEntries(t, j))
			requireIntact(t, j)
		})
	}
}

// TestResultEntryHoldsTheRowAsWritten: a result's audit entry, built from
// what the accept's insert wrote (remembered) or, for an accept this
// process does not remember, from the row read back, holds exactly the row
// as the journal now has it.
func TestResultEntryHoldsTheRowAsWritten(t *testing.T) {
	forBackends(t, testResultEntryHoldsTheRowAsWritten)
}

func testResultEntryHoldsTheRowAsWritten(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	remembered := sampleAccept(t, `p "1" <&>`, t0)
	id1, err := j.InsertAccept(ctx, remembered)
	must(t, err)
	must(t, j.SetAcceptResult(ctx, id1, AcceptRejected, `desk: "no" <x> é`+"\n", t0.Add(time.Second)))
	id2, err := j.InsertAccept(ctx, sampleAccept(t, "p2", t0))
	must(t, err)
	if _, ok := j.pendingAccepts[id2]; !ok {
		t.Fatalf("accept %d not remembered after its insert", id2)
	}
	j.pendingAccepts = nil // as after a restart: the row is read
	must(t, j.SetAcceptResult(ctx, id2, AcceptUnknown, "timeout", t0.Add(2*time.Second)))
	if len(j.pendingAccepts) != 0 {
		t.Errorf("%d accepts still remembered after their results", len(j.pendingAccepts))
	}

	last := map[int64][]byte{} // accept id -> data of its last entry
	for _, e := range auditEntries(t, j) {
		if e.Kind != AuditAcceptResult {
			continue
		}
		var b struct {
			Data json.RawMessage `json:"data"`
		}
		must(t, json.Unmarshal(e.Body, &b))
		var id struct {
			ID int64 `json:"id"`
		}
		must(t, json.Unmarshal(b.Data, &id))
		last[id.ID] = b.Data
	}
	db, err := j.reader()
	must(t, err)
	for _, id := range []int64{id1, id2} {
		row, err := scanAuditAccept(db.QueryRowContext(ctx, `SELECT `+auditAcceptCols+` FROM accepts WHERE id = ?`, id))
		must(t, err)
		want, err := json.Marshal(row)
		must(t, err)
		if !bytes.Equal(last[id], want) {
			t.Errorf("accept %d: result entry data\n%s\nwant the row\n%s", id, last[id], want)
		}
	}
	requireIntact(t, j)
}
