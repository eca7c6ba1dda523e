package journal

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/pgtest"
)

// forBackends runs test once per journal backend, as subtests "sqlite" and
// "postgres"; openTemp inside it opens that backend's journal. The
// PostgreSQL run needs TREASURYD_TEST_POSTGRES_DSN (pgtest.DSN: skipped on a
// developer machine without it, failed under CI).
func forBackends(t *testing.T, test func(t *testing.T)) {
	t.Run("sqlite", test)
	t.Run("postgres", test)
}

// onPostgres reports whether t runs under forBackends' "postgres" subtest.
func onPostgres(t testing.TB) bool {
	return strings.Contains(t.Name()+"/", "/postgres/")
}

// openTemp opens a fresh journal: a file in a temporary directory, or under
// forBackends' "postgres" subtest a fresh schema on the test server (the
// returned path is then "").
func openTemp(t testing.TB) (*Journal, string) {
	t.Helper()
	if onPostgres(t) {
		j, err := OpenPostgres(pgtest.Schema(t))
		if err != nil {
			t.Fatalf("OpenPostgres: %v", err)
		}
		t.Cleanup(func() { j.Close() })
		if _, err := j.BeginTerm(context.Background(), "test", nil); err != nil {
			t.Fatal(err)
		}
		return j, ""
	}
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { j.Close() })
	return j, path
}

// openOther opens a second handle on j's journal, as a one-shot command
// beside the daemon does: on PostgreSQL without a leadership term.
func openOther(t *testing.T, j *Journal) *Journal {
	t.Helper()
	var other *Journal
	var err error
	if j.Postgres() {
		other, err = OpenPostgres(j.dsn)
	} else {
		other, err = Open(j.Path())
	}
	if err != nil {
		t.Fatalf("open a second handle: %v", err)
	}
	t.Cleanup(func() { other.Close() })
	return other
}

func reopen(t *testing.T, j *Journal) *Journal {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	open := Open
	arg := j.Path()
	if j.Postgres() {
		open, arg = OpenPostgres, j.dsn
	}
	j2, err := open(arg)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if _, err := j2.BeginTerm(context.Background(), "test", nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j2.Close() })
	return j2
}

func dec(t testing.TB, s string) decimal.Decimal {
	t.Helper()
	d, err := decimal.NewFromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// rawQuote has whitespace, escapes, a number with trailing zeros and bytes
// that are not UTF-8: a journal that re-encodes anything changes it.
var rawQuote = []byte("{\"quoteId\": \"q-1\",  \"baseQty\":0.00000001 ,\"quoteQty\":123456789.123456789000,\"n\":\"\\u00e9\"}\x00\xff\xfe\n")

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("CET", 3600))

func sampleAccept(t testing.TB, program string, sentAt time.Time) Accept {
	return Accept{
		Program:      program,
		QuoteID:      "q-" + program,
		RawQuote:     bytes.Clone(rawQuote),
		BaseAsset:    "BTC",
		QuoteAsset:   "USDC",
		Side:         "sell",
		BaseQty:      dec(t, "0.00000001"),
		QuoteQty:     dec(t, "123456789.123456789"),
		ExpiryMicros: 1741061167123456,
		SentAt:       sentAt,
	}
}

func sampleWithdrawal(t testing.TB, rule string, createdAt time.Time) Withdrawal {
	return Withdrawal{
		Rule:      rule,
		Asset:     "USDC",
		Network:   "ethereum",
		Address:   "0x00000000000000000000000000000000DeaDBeef",
		Amount:    dec(t, "123456789.123456789"),
		CreatedAt: createdAt,
	}
}

// acceptKey renders every field exactly (decimals as their text, times as
// Unix nanoseconds and zone), so two accepts are equal iff their keys are.
func acceptKey(a Accept) string {
	return fmt.Sprintf("%d|%s|%s|%x|%s|%s|%s|%s|%s|%d|%s|%s|%q|%s|%s",
		a.ID, a.Program, a.QuoteID, a.RawQuote, a.BaseAsset, a.QuoteAsset, a.Side, a.BaseQty.String(),
		a.QuoteQty.String(), a.ExpiryMicros, timeKey(a.SentAt), a.Result, a.Message, timeKey(a.ResultAt), a.ConvertID)
}

func withdrawalKey(w Withdrawal) string {
	return fmt.Sprintf("%d|%s|%s|%s|%s|%s|%s|%s|%s|%s|%q|%s",
		w.ID, w.Rule, w.Asset, w.Network, w.Address, w.Amount.String(), timeKey(w.CreatedAt), w.State,
		w.DeskID, w.DeskStatus, w.Error, timeKey(w.UpdatedAt))
}

func frameKey(f Frame) string {
	return fmt.Sprintf("%s|%s|%x|%t|%t|%s|%s|%t|%t|%s", f.Program, timeKey(f.ReceivedAt), f.Raw, f.Paused,
		f.GateOpen, f.GateReason, f.Balance.String(), f.BalanceKnown, f.InFlight, f.Outcome)
}

func timeKey(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return fmt.Sprintf("%d@%s", t.UnixNano(), t.Location())
}

func allFrames(t *testing.T, j *Journal, since time.Time, program string) []Frame {
	t.Helper()
	var out []Frame
	if err := j.Frames(context.Background(), since, program, func(f Frame) error {
		out = append(out, f)
		return nil
	}); err != nil {
		t.Fatalf("Frames: %v", err)
	}
	return out
}

func TestEveryRecordTypeRoundTripsExactly(t *testing.T) {
	forBackends(t, testEveryRecordTypeRoundTripsExactly)
}

func testEveryRecordTypeRoundTripsExactly(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)

	in := sampleAccept(t, "btc-sell", t0)
	id, err := j.InsertAccept(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	resultAt := t0.Add(1500 * time.Microsecond)
	if err := j.SetAcceptResult(ctx, id, AcceptRejected, "quote expired", resultAt); err != nil {
		t.Fatal(err)
	}
	want := in
	want.ID, want.Result, want.Message = id, AcceptRejected, "quote expired"
	want.SentAt, want.ResultAt = t0.UTC(), resultAt.UTC()
	got, err := j.AcceptByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if acceptKey(got) != acceptKey(want) {
		t.Errorf("accept round trip:\n got %s\nwant %s", acceptKey(got), acceptKey(want))
	}
	if !bytes.Equal(got.RawQuote, rawQuote) {
		t.Errorf("raw quote changed: %q", got.RawQuote)
	}
	if got.BaseQty.String() != "0.00000001" || got.QuoteQty.String() != "123456789.123456789" {
		t.Errorf("decimals changed: %s %s", got.BaseQty, got.QuoteQty)
	}

	win := sampleWithdrawal(t, "sweep-usdc", t0)
	win.Amount = dec(t, "0.00000001")
	wid, err := j.InsertWithdrawalIntent(ctx, win)
	if err != nil {
		t.Fatal(err)
	}
	wgot, err := j.WithdrawalByID(ctx, wid)
	if err != nil {
		t.Fatal(err)
	}
	wwant := win
	wwant.ID, wwant.State, wwant.CreatedAt, wwant.UpdatedAt = wid, WithdrawalIntent, t0.UTC(), t0.UTC()
	if withdrawalKey(wgot) != withdrawalKey(wwant) {
		t.Errorf("withdrawal round trip:\n got %s\nwant %s", withdrawalKey(wgot), withdrawalKey(wwant))
	}
	if err := j.UpdateWithdrawal(ctx, wid, WithdrawalSubmitted, "wd-77", "pending", ""); err != nil {
		t.Fatal(err)
	}
	if err := j.UpdateWithdrawal(ctx, wid, WithdrawalFailed, "", "failed", "insufficient gas"); err != nil {
		t.Fatal(err)
	}
	wgot, err = j.WithdrawalByID(ctx, wid)
	if err != nil {
		t.Fatal(err)
	}
	if wgot.State != WithdrawalFailed || wgot.DeskID != "wd-77" || wgot.DeskStatus != "failed" ||
		wgot.Error != "insufficient gas" || wgot.UpdatedAt.Before(wgot.CreatedAt) || wgot.UpdatedAt.Location() != time.UTC {
		t.Errorf("withdrawal after updates: %s", withdrawalKey(wgot))
	}

	body := []byte(`{"breaks":[{"kind":"balance_drift","amount":"0.00000001"}]}`)
	rid, err := j.SaveReport(ctx, Report{At: t0, Clean: false, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	rep, ok, err := j.LastReport(ctx)
	if err != nil || !ok {
		t.Fatalf("LastReport: %v %v", ok, err)
	}
	if rep.ID != rid || !rep.At.Equal(t0) || rep.At.Location() != time.UTC || rep.Clean || !bytes.Equal(rep.Body, body) {
		t.Errorf("report round trip: %+v", rep)
	}

	frames := []Frame{
		{Program: "btc-sell", ReceivedAt: t0, Raw: bytes.Clone(rawQuote), Paused: true, GateOpen: false,
			GateReason: "no proof", Balance: dec(t, "123456789.123456789"), BalanceKnown: true, InFlight: true, Outcome: "paused"},
		{Program: "eth-buy", ReceivedAt: t0.Add(time.Nanosecond), Raw: []byte("{}"), GateOpen: true,
			Balance: dec(t, "0.00000001"), Outcome: "accepted"},
	}
	if err := j.RecordFrames(ctx, frames); err != nil {
		t.Fatal(err)
	}
	fgot := allFrames(t, j, time.Time{}, "")
	if len(fgot) != len(frames) {
		t.Fatalf("got %d frames, want %d", len(fgot), len(frames))
	}
	for i := range frames {
		w := frames[i]
		w.ReceivedAt = w.ReceivedAt.UTC()
		if frameKey(fgot[i]) != frameKey(w) {
			t.Errorf("frame %d:\n got %s\nwant %s", i, frameKey(fgot[i]), frameKey(w))
		}
	}

	if p, err := j.Paused(ctx); err != nil || p {
		t.Fatalf("fresh journal paused=%v err=%v, want false", p, err)
	}
	before := time.Now()
	if err := j.SetPaused(ctx, true, "admin:alice"); err != nil {
		t.Fatal(err)
	}
	p, by, at, err := j.PauseState(ctx)
	if err != nil || !p || by != "admin:alice" || at.Before(before.Add(-time.Second)) || at.Location() != time.UTC {
		t.Errorf("PauseState = %v %q %v %v", p, by, at, err)
	}
}

func TestRestartKeepsEveryRecord(t *testing.T) { forBackends(t, testRestartKeepsEveryRecord) }

func testRestartKeepsEveryRecord(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)

	okID, _ := j.InsertAccept(ctx, sampleAccept(t, "a", t0))
	if err := j.SetAcceptResult(ctx, okID, AcceptOK, "", t0.Add(time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	unknownID, _ := j.InsertAccept(ctx, sampleAccept(t, "a", t0.Add(time.Second)))
	if err := j.SetAcceptResult(ctx, unknownID, AcceptUnknown, "timeout", t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := j.InsertAccept(ctx, sampleAccept(t, "b", t0.Add(3*time.Second))); err != nil {
		t.Fatal(err)
	}
	openID, _ := j.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, "r1", t0))
	subID, _ := j.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, "r2", t0.Add(time.Second)))
	if err := j.UpdateWithdrawal(ctx, subID, WithdrawalSubmitted, "wd-1", "processing", ""); err != nil {
		t.Fatal(err)
	}
	doneID, _ := j.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, "r3", t0.Add(2*time.Second)))
	if err := j.UpdateWithdrawal(ctx, doneID, WithdrawalCompleted, "wd-2", "completed", ""); err != nil {
		t.Fatal(err)
	}
	if err := j.SetPaused(ctx, true, "ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := j.SaveReport(ctx, Report{At: t0, Clean: true, Body: []byte(`{"clean":true}`)}); err != nil {
		t.Fatal(err)
	}
	if err := j.RecordFrames(ctx, []Frame{{Program: "a", ReceivedAt: t0, Raw: rawQuote, Balance: dec(t, "1.10")}}); err != nil {
		t.Fatal(err)
	}

	accBefore, _ := j.Accepts(ctx, AcceptFilter{})
	wdBefore, _ := j.Withdrawals(ctx, WithdrawalFilter{})
	repBefore, _, _ := j.LastReport(ctx)
	frBefore := allFrames(t, j, time.Time{}, "")

	j2 := reopen(t, j)

	accAfter, err := j2.Accepts(ctx, AcceptFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(accAfter) != 3 || len(accAfter) != len(accBefore) {
		t.Fatalf("accepts after restart: %d, before %d", len(accAfter), len(accBefore))
	}
	for i := range accAfter {
		if acceptKey(accAfter[i]) != acceptKey(accBefore[i]) {
			t.Errorf("accept %d changed across restart:\n got %s\nwant %s", i, acceptKey(accAfter[i]), acceptKey(accBefore[i]))
		}
	}
	wdAfter, err := j2.Withdrawals(ctx, WithdrawalFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(wdAfter) != 3 {
		t.Fatalf("withdrawals after restart: %d", len(wdAfter))
	}
	for i := range wdAfter {
		if withdrawalKey(wdAfter[i]) != withdrawalKey(wdBefore[i]) {
			t.Errorf("withdrawal %d changed across restart:\n got %s\nwant %s", i, withdrawalKey(wdAfter[i]), withdrawalKey(wdBefore[i]))
		}
	}
	open, err := j2.OpenWithdrawals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 2 || open[0].ID != openID || open[1].ID != subID || open[1].DeskID != "wd-1" {
		t.Errorf("open withdrawals after restart: %v", open)
	}
	if p, by, _, err := j2.PauseState(ctx); err != nil || !p || by != "ops" {
		t.Errorf("pause after restart = %v %q %v, want true ops", p, by, err)
	}
	repAfter, ok, err := j2.LastReport(ctx)
	if err != nil || !ok || repAfter.ID != repBefore.ID || !repAfter.At.Equal(repBefore.At) || !repAfter.Clean ||
		!bytes.Equal(repAfter.Body, repBefore.Body) {
		t.Errorf("report after restart: %+v ok=%v err=%v", repAfter, ok, err)
	}
	frAfter := allFrames(t, j2, time.Time{}, "")
	if len(frAfter) != 1 || frameKey(frAfter[0]) != frameKey(frBefore[0]) || frAfter[0].Balance.String() != "1.1" &&
		frAfter[0].Balance.String() != "1.10" {
		t.Errorf("frames after restart: %v", frAfter)
	}
	// Counts: ok and unknown still count as executed for caps after restart.
	var counted int
	for _, a := range accAfter {
		if a.Counts() {
			counted++
		}
	}
	if counted != 3 {
		t.Errorf("%d accepts count as executed after restart, want 3 (ok, unknown, pending)", counted)
	}
}

func TestMarkPendingAcceptsUnknownTouchesOnlyPending(t *testing.T) {
	forBackends(t, testMarkPendingAcceptsUnknownTouchesOnlyPending)
}

func testMarkPendingAcceptsUnknownTouchesOnlyPending(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	results := []string{AcceptPending, AcceptOK, AcceptRejected, AcceptError, AcceptUnknown, AcceptPending}
	ids := make([]int64, len(results))
	for i, r := range results {
		id, err := j.InsertAccept(ctx, sampleAccept(t, "p", t0.Add(time.Duration(i)*time.Second)))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
		if r != AcceptPending {
			if err := j.SetAcceptResult(ctx, id, r, "m-"+r, t0); err != nil {
				t.Fatal(err)
			}
		}
	}
	n, err := j.MarkPendingAcceptsUnknown(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("changed %d, want 2", n)
	}
	for i, r := range results {
		a, err := j.AcceptByID(ctx, ids[i])
		if err != nil {
			t.Fatal(err)
		}
		want := r
		if r == AcceptPending {
			want = AcceptUnknown
		}
		if a.Result != want {
			t.Errorf("accept %d was %s, now %s, want %s", i, r, a.Result, want)
		}
		if r != AcceptPending && a.Message != "m-"+r {
			t.Errorf("accept %d message changed to %q", i, a.Message)
		}
	}
	if n, err := j.MarkPendingAcceptsUnknown(ctx); err != nil || n != 0 {
		t.Errorf("second call changed %d (%v), want 0", n, err)
	}
}

func TestAcceptTransitions(t *testing.T) { forBackends(t, testAcceptTransitions) }

func testAcceptTransitions(t *testing.T) {
	tests := []struct {
		name    string
		from    string // result before the call
		call    func(j *Journal, id int64) error
		wantErr error
		want    string // result after, when no error
	}{
		{"pending gets ok", AcceptPending, setResult(AcceptOK), nil, AcceptOK},
		{"pending gets unknown", AcceptPending, setResult(AcceptUnknown), nil, AcceptUnknown},
		{"ok does not get a second result", AcceptOK, setResult(AcceptRejected), ErrTransition, ""},
		{"unknown does not get a send result", AcceptUnknown, setResult(AcceptOK), ErrTransition, ""},
		{"send result cannot be missing", AcceptPending, setResult(AcceptMissing), ErrTransition, ""},
		{"unknown settles ok", AcceptUnknown, settle(AcceptOK, "cv-1"), nil, AcceptOK},
		{"unknown settles missing", AcceptUnknown, settle(AcceptMissing, ""), nil, AcceptMissing},
		{"pending settles ok", AcceptPending, settle(AcceptOK, "cv-1"), nil, AcceptOK},
		{"ok cannot be settled", AcceptOK, settle(AcceptOK, "cv-1"), ErrTransition, ""},
		{"rejected cannot be settled", AcceptRejected, settle(AcceptMissing, ""), ErrTransition, ""},
		{"missing cannot be settled ok", AcceptMissing, settle(AcceptOK, "cv-1"), ErrTransition, ""},
		{"settle ok needs a convert id", AcceptUnknown, settle(AcceptOK, ""), ErrTransition, ""},
		{"settle cannot set rejected", AcceptUnknown, settle(AcceptRejected, ""), ErrTransition, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			j, _ := openTemp(t)
			id, err := j.InsertAccept(ctx, sampleAccept(t, "p", t0))
			if err != nil {
				t.Fatal(err)
			}
			switch tt.from {
			case AcceptPending:
			case AcceptMissing:
				mustNil(t, j.SetAcceptResult(ctx, id, AcceptUnknown, "", t0))
				mustNil(t, j.SettleAccept(ctx, id, AcceptMissing, ""))
			default:
				mustNil(t, j.SetAcceptResult(ctx, id, tt.from, "", t0))
			}
			err = tt.call(j, id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			a, err2 := j.AcceptByID(ctx, id)
			mustNil(t, err2)
			want := tt.want
			if tt.wantErr != nil {
				want = tt.from // a refused change changes nothing
			}
			if a.Result != want {
				t.Errorf("result %s, want %s", a.Result, want)
			}
			if tt.wantErr == nil && want == AcceptOK && tt.from != AcceptPending && a.ConvertID != "cv-1" {
				t.Errorf("convert id %q", a.ConvertID)
			}
		})
	}
}

func setResult(r string) func(*Journal, int64) error {
	return func(j *Journal, id int64) error {
		return j.SetAcceptResult(context.Background(), id, r, "", t0)
	}
}

func settle(r, convertID string) func(*Journal, int64) error {
	return func(j *Journal, id int64) error {
		return j.SettleAccept(context.Background(), id, r, convertID)
	}
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestUnknownIDsAreNotFound(t *testing.T) { forBackends(t, testUnknownIDsAreNotFound) }

func testUnknownIDsAreNotFound(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	checks := map[string]error{
		"SetAcceptResult":  j.SetAcceptResult(ctx, 42, AcceptOK, "", t0),
		"SettleAccept":     j.SettleAccept(ctx, 42, AcceptMissing, ""),
		"UpdateWithdrawal": j.UpdateWithdrawal(ctx, 42, WithdrawalSubmitted, "x", "", ""),
	}
	_, checks["AcceptByID"] = j.AcceptByID(ctx, 42)
	_, checks["WithdrawalByID"] = j.WithdrawalByID(ctx, 42)
	for name, err := range checks {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", name, err)
		}
	}
	if _, ok, err := j.LastAccept(ctx, "p"); ok || err != nil {
		t.Errorf("LastAccept on empty journal: ok=%v err=%v", ok, err)
	}
	if _, ok, err := j.LastReport(ctx); ok || err != nil {
		t.Errorf("LastReport on empty journal: ok=%v err=%v", ok, err)
	}
}

func TestWithdrawalStateMachine(t *testing.T) { forBackends(t, testWithdrawalStateMachine) }

func testWithdrawalStateMachine(t *testing.T) {
	all := []string{WithdrawalIntent, WithdrawalUnknown, WithdrawalSubmitted, WithdrawalCompleted,
		WithdrawalFailed, WithdrawalRejected, WithdrawalUnresolved}
	// path to reach each state from a fresh intent
	reach := map[string][]string{
		WithdrawalIntent:     nil,
		WithdrawalUnknown:    {WithdrawalUnknown},
		WithdrawalSubmitted:  {WithdrawalSubmitted},
		WithdrawalCompleted:  {WithdrawalSubmitted, WithdrawalCompleted},
		WithdrawalFailed:     {WithdrawalSubmitted, WithdrawalFailed},
		WithdrawalRejected:   {WithdrawalRejected},
		WithdrawalUnresolved: {WithdrawalUnknown, WithdrawalUnresolved},
	}
	allowed := map[string]map[string]bool{
		WithdrawalIntent: {WithdrawalSubmitted: true, WithdrawalUnknown: true, WithdrawalRejected: true,
			WithdrawalUnresolved: true, WithdrawalCompleted: true, WithdrawalFailed: true},
		WithdrawalUnknown: {WithdrawalSubmitted: true, WithdrawalCompleted: true, WithdrawalFailed: true,
			WithdrawalUnresolved: true, WithdrawalUnknown: true},
		WithdrawalSubmitted: {WithdrawalSubmitted: true, WithdrawalCompleted: true, WithdrawalFailed: true,
			WithdrawalUnresolved: true},
		WithdrawalUnresolved: {WithdrawalSubmitted: true, WithdrawalFailed: true}, // an operator's resolution
	}
	ctx := context.Background()
	j, _ := openTemp(t)
	for _, from := range all {
		for _, to := range all {
			t.Run(from+"→"+to, func(t *testing.T) {
				id, err := j.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, "r", t0))
				mustNil(t, err)
				for _, s := range reach[from] {
					mustNil(t, j.UpdateWithdrawal(ctx, id, s, "wd-1", "", ""))
				}
				err = j.UpdateWithdrawal(ctx, id, to, "", "", "")
				w, err2 := j.WithdrawalByID(ctx, id)
				mustNil(t, err2)
				if allowed[from][to] {
					if err != nil || w.State != to {
						t.Fatalf("err=%v state=%s, want allowed move to %s", err, w.State, to)
					}
				} else {
					if !errors.Is(err, ErrTransition) || w.State != from {
						t.Fatalf("err=%v state=%s, want ErrTransition and state %s kept", err, w.State, from)
					}
				}
				if w.Open() != (w.State == WithdrawalIntent || w.State == WithdrawalUnknown || w.State == WithdrawalSubmitted) {
					t.Errorf("Open()=%v for %s", w.Open(), w.State)
				}
			})
		}
	}
}

func TestUpdateWithdrawalKeepsDeskIDWhenEmpty(t *testing.T) {
	forBackends(t, testUpdateWithdrawalKeepsDeskIDWhenEmpty)
}

func testUpdateWithdrawalKeepsDeskIDWhenEmpty(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	id, _ := j.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, "r", t0))
	mustNil(t, j.UpdateWithdrawal(ctx, id, WithdrawalSubmitted, "wd-9", "pending", ""))
	mustNil(t, j.UpdateWithdrawal(ctx, id, WithdrawalSubmitted, "", "processing", ""))
	mustNil(t, j.UpdateWithdrawal(ctx, id, WithdrawalSubmitted, "", "", "transient"))
	w, err := j.WithdrawalByID(ctx, id)
	mustNil(t, err)
	if w.DeskID != "wd-9" || w.DeskStatus != "processing" || w.Error != "transient" {
		t.Errorf("got desk id %q status %q error %q", w.DeskID, w.DeskStatus, w.Error)
	}
}

func TestFiltersNarrowAndSortOldestFirst(t *testing.T) {
	forBackends(t, testFiltersNarrowAndSortOldestFirst)
}

func testFiltersNarrowAndSortOldestFirst(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	// inserted out of time order: results must come back by SentAt
	for i, at := range []int{5, 1, 3, 2, 4} {
		program := "a"
		if i%2 == 1 {
			program = "b"
		}
		id, err := j.InsertAccept(ctx, sampleAccept(t, program, t0.Add(time.Duration(at)*time.Minute)))
		mustNil(t, err)
		if at == 3 {
			mustNil(t, j.SetAcceptResult(ctx, id, AcceptUnknown, "", t0))
		}
		if at == 4 {
			mustNil(t, j.SetAcceptResult(ctx, id, AcceptRejected, "", t0))
		}
		w := sampleWithdrawal(t, "rule-"+program, t0.Add(time.Duration(at)*time.Minute))
		if at == 2 {
			w.Asset = "BTC"
		}
		wid, err := j.InsertWithdrawalIntent(ctx, w)
		mustNil(t, err)
		if at == 5 {
			mustNil(t, j.UpdateWithdrawal(ctx, wid, WithdrawalRejected, "", "", "bad address"))
		}
	}
	minutes := func(as []Accept) string {
		var s []string
		for _, a := range as {
			s = append(s, fmt.Sprint(int(a.SentAt.Sub(t0)/time.Minute)))
		}
		return strings.Join(s, ",")
	}
	wminutes := func(ws []Withdrawal) string {
		var s []string
		for _, w := range ws {
			s = append(s, fmt.Sprint(int(w.CreatedAt.Sub(t0)/time.Minute)))
		}
		return strings.Join(s, ",")
	}
	atests := []struct {
		name string
		f    AcceptFilter
		want string
	}{
		{"all", AcceptFilter{}, "1,2,3,4,5"},
		{"program", AcceptFilter{Program: "a"}, "3,4,5"},
		{"since inclusive", AcceptFilter{Since: t0.Add(3 * time.Minute)}, "3,4,5"},
		{"results", AcceptFilter{Results: []string{AcceptUnknown, AcceptRejected}}, "3,4"},
		{"all three", AcceptFilter{Program: "a", Since: t0.Add(4 * time.Minute), Results: []string{AcceptPending}}, "5"},
		{"nothing", AcceptFilter{Program: "zzz"}, ""},
	}
	for _, tt := range atests {
		t.Run("accepts "+tt.name, func(t *testing.T) {
			as, err := j.Accepts(ctx, tt.f)
			mustNil(t, err)
			if got := minutes(as); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	wtests := []struct {
		name string
		f    WithdrawalFilter
		want string
	}{
		{"all", WithdrawalFilter{}, "1,2,3,4,5"},
		{"rule", WithdrawalFilter{Rule: "rule-b"}, "1,2"},
		{"asset", WithdrawalFilter{Asset: "BTC"}, "2"},
		{"since", WithdrawalFilter{Since: t0.Add(4 * time.Minute)}, "4,5"},
		{"states", WithdrawalFilter{States: []string{WithdrawalRejected}}, "5"},
		{"open", WithdrawalFilter{Rule: "rule-a", States: []string{WithdrawalIntent}}, "3,4"},
	}
	for _, tt := range wtests {
		t.Run("withdrawals "+tt.name, func(t *testing.T) {
			ws, err := j.Withdrawals(ctx, tt.f)
			mustNil(t, err)
			if got := wminutes(ws); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	open, err := j.OpenWithdrawals(ctx)
	mustNil(t, err)
	if got := wminutes(open); got != "1,2,3,4" {
		t.Errorf("OpenWithdrawals = %q, want 1,2,3,4", got)
	}
	last, ok, err := j.LastAccept(ctx, "a")
	mustNil(t, err)
	if !ok || last.SentAt.Sub(t0) != 5*time.Minute {
		t.Errorf("LastAccept(a) = %v ok=%v, want the one at +5m", last.SentAt, ok)
	}
	last, ok, err = j.LastAccept(ctx, "b")
	mustNil(t, err)
	if !ok || last.SentAt.Sub(t0) != 2*time.Minute {
		t.Errorf("LastAccept(b) = %v ok=%v, want the one at +2m", last.SentAt, ok)
	}
}

func TestFramesStreamInReceiveOrderAndPrune(t *testing.T) {
	forBackends(t, testFramesStreamInReceiveOrderAndPrune)
}

func testFramesStreamInReceiveOrderAndPrune(t *testing.T) {
	ctx := context.Background()
	j, _ := openTemp(t)
	var fs []Frame
	for i := 9; i >= 0; i-- { // recorded out of order
		program := []string{"a", "b"}[i%2]
		fs = append(fs, Frame{Program: program, ReceivedAt: t0.Add(time.Duration(i) * time.Second),
			Raw: []byte(fmt.Sprint(i)), Balance: decimal.NewFromInt(int64(i))})
	}
	mustNil(t, j.RecordFrames(ctx, fs))
	raws := func(fs []Frame) string {
		var s []string
		for _, f := range fs {
			s = append(s, string(f.Raw))
		}
		return strings.Join(s, ",")
	}
	if got := raws(allFrames(t, j, time.Time{}, "")); got != "0,1,2,3,4,5,6,7,8,9" {
		t.Errorf("all frames: %s", got)
	}
	if got := raws(allFrames(t, j, t0.Add(5*time.Second), "a")); got != "6,8" {
		t.Errorf("program a since +5s: %s", got)
	}
	stop := errors.New("stop")
	var seen int
	err := j.Frames(ctx, time.Time{}, "", func(Frame) error {
		seen++
		if seen == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || seen != 3 {
		t.Errorf("fn error: err=%v after %d frames, want stop after 3", err, seen)
	}
	n, err := j.PruneFrames(ctx, t0.Add(4*time.Second))
	mustNil(t, err)
	if n != 4 {
		t.Errorf("pruned %d, want 4", n)
	}
	if got := raws(allFrames(t, j, time.Time{}, "")); got != "4,5,6,7,8,9" {
		t.Errorf("after prune: %s", got)
	}
	if err := j.RecordFrames(ctx, []Frame{{Program: "a"}}); err == nil {
		t.Error("a frame without a receive time was recorded")
	}
}

func TestCorruptDecimalIsAnErrorNamingTheRow(t *testing.T) {
	forBackends(t, testCorruptDecimalIsAnErrorNamingTheRow)
}

func testCorruptDecimalIsAnErrorNamingTheRow(t *testing.T) {
	tests := []struct {
		name   string
		sql    string
		read   func(j *Journal) error
		naming string
	}{
		{"accept base_qty", `UPDATE accepts SET base_qty = '1,5' WHERE id = 2`,
			func(j *Journal) error { _, err := j.Accepts(context.Background(), AcceptFilter{}); return err },
			`accepts row 2: base_qty "1,5"`},
		{"accept quote_qty by id", `UPDATE accepts SET quote_qty = '' WHERE id = 2`,
			func(j *Journal) error { _, err := j.AcceptByID(context.Background(), 2); return err },
			`accepts row 2: quote_qty ""`},
		{"withdrawal amount", `UPDATE withdrawals SET amount = 'ten' WHERE id = 2`,
			func(j *Journal) error { _, err := j.OpenWithdrawals(context.Background()); return err },
			`withdrawals row 2: amount "ten"`},
		{"frame balance", `UPDATE frames SET balance = '1e' WHERE id = 2`,
			func(j *Journal) error {
				return j.Frames(context.Background(), time.Time{}, "", func(Frame) error { return nil })
			},
			`frames row 2: balance "1e"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			j, _ := openTemp(t)
			for i := range 3 {
				_, err := j.InsertAccept(ctx, sampleAccept(t, "p", t0.Add(time.Duration(i)*time.Second)))
				mustNil(t, err)
				_, err = j.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, "r", t0.Add(time.Duration(i)*time.Second)))
				mustNil(t, err)
				mustNil(t, j.RecordFrames(ctx, []Frame{{Program: "p", ReceivedAt: t0.Add(time.Duration(i) * time.Second),
					Balance: decimal.NewFromInt(1)}}))
			}
			if _, err := j.w.ExecContext(ctx, tt.sql); err != nil {
				t.Fatal(err)
			}
			err := tt.read(j)
			if err == nil {
				t.Fatal("a corrupt decimal was read without error")
			}
			if !strings.Contains(err.Error(), tt.naming) {
				t.Errorf("error %q does not name %q", err, tt.naming)
			}
		})
	}
}

func TestEachPoolHasItsPragmas(t *testing.T) {
	j, _ := openTemp(t)
	ctx := context.Background()
	tests := []struct {
		name, pool, pragma, want string
	}{
		{"accepts commit with NORMAL", "w", "synchronous", "1"},
		{"withdrawals commit with FULL", "full", "synchronous", "2"},
		{"write pool is WAL", "w", "journal_mode", "wal"},
		{"full pool is WAL", "full", "journal_mode", "wal"},
		{"foreign keys on", "w", "foreign_keys", "1"},
		{"busy timeout on writes", "full", "busy_timeout", "5000"},
		{"busy timeout on reads", "r", "busy_timeout", "5000"},
		{"reads cannot write", "r", "query_only", "1"},
		{"accept commits never checkpoint", "w", "wal_autocheckpoint", "0"},
		{"withdrawal commits never checkpoint", "full", "wal_autocheckpoint", "0"},
		{"checkpoints fsync", "ck", "synchronous", "1"},
		{"truncating checkpoint waits briefly", "ck", "busy_timeout", "200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := map[string]*sql.DB{"w": j.w, "full": j.full, "ck": j.ck, "r": j.r}[tt.pool]
			var got string
			if err := db.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("PRAGMA %s on %s = %s, want %s", tt.pragma, tt.pool, got, tt.want)
			}
		})
	}
}

func TestClosedJournalRefusesAndCloseIsIdempotent(t *testing.T) {
	forBackends(t, testClosedJournalRefusesAndCloseIsIdempotent)
}

func testClosedJournalRefusesAndCloseIsIdempotent(t *testing.T) {
	j, _ := openTemp(t)
	mustNil(t, j.Close())
	mustNil(t, j.Close())
	ctx := context.Background()
	if _, err := j.InsertAccept(ctx, sampleAccept(t, "p", t0)); !errors.Is(err, ErrClosed) {
		t.Errorf("InsertAccept after Close: %v", err)
	}
	if _, err := j.Paused(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Paused after Close: %v", err)
	}
}

func TestCancelledContextWritesNothing(t *testing.T) {
	forBackends(t, testCancelledContextWritesNothing)
}

func testCancelledContextWritesNothing(t *testing.T) {
	j, _ := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := j.InsertWithdrawalIntent(ctx, sampleWithdrawal(t, "r", t0)); !errors.Is(err, context.Canceled) {
		t.Errorf("InsertWithdrawalIntent with cancelled ctx: %v", err)
	}
	if _, err := j.Accepts(ctx, AcceptFilter{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Accepts with cancelled ctx: %v", err)
	}
	ws, err := j.Withdrawals(context.Background(), WithdrawalFilter{})
	mustNil(t, err)
	if len(ws) != 0 {
		t.Errorf("a cancelled insert left %d withdrawals", len(ws))
	}
}

func TestOutOfRangeTimeIsRefused(t *testing.T) { forBackends(t, testOutOfRangeTimeIsRefused) }

func testOutOfRangeTimeIsRefused(t *testing.T) {
	j, _ := openTemp(t)
	_, err := j.InsertAccept(context.Background(), sampleAccept(t, "p", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)))
	if err == nil || !strings.Contains(err.Error(), "sent_at") {
		t.Errorf("year 3000 sent_at: err = %v, want a range error naming sent_at", err)
	}
}
