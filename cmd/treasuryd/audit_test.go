package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/journal"
)

// auditFixture writes a journal through the journal's API, as the daemon
// would, and returns its path. Its chain, entry by entry:
//
//	1 accept_intent a1      2 accept_result a1 ok
//	3 accept_intent a2      4 accept_result a2 rejected
//	5 withdrawal_intent w1  6 withdrawal_update w1 submitted
//	7 pause                 8 report 1
//	9 withdrawal_update w1 completed
//	10 withdrawal_intent w2 11 withdrawal_update w2 unresolved
//	12 operator_resolution w2 failed
func auditFixture(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := journal.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	step := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	accept := func(program, result string) {
		t.Helper()
		id, err := j.InsertAccept(ctx, journal.Accept{Program: program, QuoteID: "q-" + program,
			RawQuote: []byte(`{"quoteId":"q-` + program + `"}`), BaseAsset: "BTC", QuoteAsset: "USD", Side: "sell",
			BaseQty: decimal.RequireFromString("0.5"), QuoteQty: decimal.RequireFromString("32500.25"), ExpiryMicros: 1})
		step(err)
		step(j.SetAcceptResult(ctx, id, result, "", time.Time{}))
	}
	accept("alpha", journal.AcceptOK)
	accept("beta", journal.AcceptRejected)
	w := journal.Withdrawal{Rule: "sweep", Asset: "BTC", Network: "bitcoin", Address: "bc1qcold", Amount: decimal.RequireFromString("1.25")}
	w1, err := j.InsertWithdrawalIntent(ctx, w)
	step(err)
	step(j.UpdateWithdrawal(ctx, w1, journal.WithdrawalSubmitted, "desk-1", "pending", ""))
	step(j.SetPaused(ctx, true, "=HYPERLINK(\"http://evil\") desk maintenance"))
	_, err = j.SaveReport(ctx, journal.Report{Clean: true, Body: []byte(`{"breaks":[]}`)})
	step(err)
	step(j.UpdateWithdrawal(ctx, w1, journal.WithdrawalCompleted, "", "completed", ""))
	w2, err := j.InsertWithdrawalIntent(ctx, w)
	step(err)
	step(j.UpdateWithdrawal(ctx, w2, journal.WithdrawalUnresolved, "", "", "no match"))
	step(j.ResolveWithdrawal(ctx, w2, journal.WithdrawalFailed, "", "never executed", "http 127.0.0.1:9"))
	return path
}

// tamper runs SQL on the journal file directly, as someone with access to
// the file would.
func tamper(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func runAudit(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(append([]string{"audit"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// TestAuditVerifyDetectsTampering edits, deletes, inserts and reorders
// journal rows and chain entries directly in the file and requires exit 4
// with the first problem naming the entry concerned.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	clean := auditFixture(t)
	if code, out, errb := runAudit("verify", "-journal", clean); code != exitOK ||
		!strings.Contains(out, "head: sequence 12 hash ") || !strings.Contains(out, "12 entries, 6 journal rows") {
		t.Fatalf("untouched journal: exit %d\n%s%s", code, out, errb)
	}
	tests := []struct {
		name  string
		sql   []string
		first string // what the first problem line says
	}{
		{"edit an accept's quantity", []string{`UPDATE accepts SET base_qty = '5' WHERE id = 1`},
			`entry 2: accepts row 1 differs from this entry (accept_result), its last: base_qty is "5" in the journal, "0.5" in the entry`},
		{"edit an accept's result", []string{`UPDATE accepts SET result = 'ok' WHERE id = 2`},
			`entry 4: accepts row 2 differs from this entry (accept_result), its last: result is "ok" in the journal, "rejected" in the entry`},
		{"edit an accept's raw quote", []string{`UPDATE accepts SET raw_quote = x'7b7d' WHERE id = 1`},
			`entry 2: accepts row 1 differs from this entry (accept_result), its last: raw_quote_sha256 is`},
		{"delete an accept", []string{`DELETE FROM accepts WHERE id = 2`},
			`entry 4: accept_result records accepts row 2, which is not in the journal: it was deleted`},
		{"insert an accept", []string{`INSERT INTO accepts (program, quote_id, raw_quote, base_asset, quote_asset, side, base_qty, quote_qty, expiry_micros, sent_at, result)
			SELECT program, 'q-forged', raw_quote, base_asset, quote_asset, side, base_qty, quote_qty, expiry_micros, sent_at, 'missing' FROM accepts WHERE id = 1`},
			`accepts row 3 is in no audit entry: it was written outside treasuryd`},
		{"reorder accepts", []string{`UPDATE accepts SET id = -id WHERE id IN (1, 2)`, `UPDATE accepts SET id = 3 + id WHERE id IN (-1, -2)`},
			`entry 2: accepts row 1 differs from this entry (accept_result), its last: `},
		{"redirect a withdrawal", []string{`UPDATE withdrawals SET address = 'bc1qthief' WHERE id = 1`},
			`entry 9: withdrawals row 1 differs from this entry (withdrawal_update), its last: address is "bc1qthief" in the journal, "bc1qcold" in the entry`},
		{"delete a withdrawal", []string{`DELETE FROM withdrawals WHERE id = 1`},
			`entry 9: withdrawal_update records withdrawals row 1, which is not in the journal: it was deleted`},
		{"undo an operator resolution", []string{`UPDATE withdrawals SET state = 'unresolved' WHERE id = 2`},
			`entry 12: withdrawals row 2 differs from this entry (operator_resolution), its last: state is "unresolved" in the journal, "failed" in the entry`},
		{"lift the pause", []string{`UPDATE settings SET value = '0' WHERE key = 'paused'`},
			`entry 7: the pause flag differs from this entry (pause), its last: paused is false in the journal, true in the entry`},
		{"delete the pause flag", []string{`DELETE FROM settings WHERE key = 'paused'`},
			`entry 7: pause records the pause flag, which is not in the journal: it was deleted`},
		{"whitewash a report", []string{`UPDATE reports SET clean = 0 WHERE id = 1`},
			`entry 8: reports row 1 differs from this entry (report), its last: clean is false in the journal, true in the entry`},
		{"edit an entry's body", []string{`UPDATE audit SET body = CAST(replace(CAST(body AS TEXT), '"0.5"', '"5"') AS BLOB) WHERE seq = 3`},
			`entry 3: hash `},
		{"edit an entry's hash", []string{`UPDATE audit SET hash = zeroblob(32) WHERE seq = 5`},
			`entry 5: hash 0000`},
		{"edit an entry's kind", []string{`UPDATE audit SET kind = 'accept_settled' WHERE seq = 4`},
			`entry 4: kind column "accept_settled", body says "accept_result"`},
		{"edit an entry's time", []string{`UPDATE audit SET at = at - 1000000000 WHERE seq = 4`},
			`entry 4: time column `},
		{"delete an entry", []string{`DELETE FROM audit WHERE seq = 6`},
			`entry 7: sequence 7 follows 5: entry 6 was deleted, or entries were renumbered`},
		{"delete the last entries", []string{`DELETE FROM audit WHERE seq >= 11`},
			`entry 10: withdrawals row 2 differs from this entry (withdrawal_intent), its last: `},
		{"reorder entries", []string{`UPDATE audit SET seq = -2 WHERE seq = 2`, `UPDATE audit SET seq = 2 WHERE seq = 3`, `UPDATE audit SET seq = 3 WHERE seq = -2`},
			`entry 2: hash `},
		{"renumber an entry", []string{`UPDATE audit SET seq = 109 WHERE seq = 9`},
			`entry 10: sequence 10 follows 8: entry 9 was deleted, or entries were renumbered`},
		{"insert an entry", []string{`INSERT INTO audit (seq, at, kind, body, hash) SELECT 13, at, kind, body, hash FROM audit WHERE seq = 12`},
			`entry 13: hash `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := auditFixture(t)
			tamper(t, path, tt.sql...)
			code, out, errb := runAudit("verify", "-journal", path)
			if code != exitAudit {
				t.Fatalf("exit %d, want %d\n%s%s", code, exitAudit, out, errb)
			}
			first, _, _ := strings.Cut(out, "\n")
			if want := "audit chain BROKEN: " + tt.first; !strings.HasPrefix(first, want) {
				t.Fatalf("first line:\n%s\nwant it to start with:\n%s\nwhole output:\n%s", first, want, out)
			}
		})
	}
}

// TestAuditVerifyPinnedHeadCatchesARewrittenChain: someone who edits a row
// and rewrites every entry from there with fresh hashes leaves a chain that
// verifies on its own; the head pinned earlier (from /status or a
// reconciliation log line) does not match it any more.
func TestAuditVerifyPinnedHeadCatchesARewrittenChain(t *testing.T) {
	path := auditFixture(t)
	code, out, _ := runAudit("verify", "-journal", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, out)
	}
	var seq int64
	var hash string
	for _, line := range strings.Split(out, "\n") {
		if _, err := fmt.Sscanf(line, "head: sequence %d hash %s", &seq, &hash); err == nil {
			break
		}
	}
	pinned := fmt.Sprintf("%d:%s", seq, hash)
	if code, out, _ := runAudit("verify", "-journal", path, "-head", pinned); code != exitOK {
		t.Fatalf("pinned head of the untouched journal: exit %d: %s", code, out)
	}

	// The rewrite: accept 1 sold 5 BTC, not 0.5, and every entry is rehashed.
	tamper(t, path, `UPDATE accepts SET base_qty = '5' WHERE id = 1`,
		`UPDATE audit SET body = CAST(replace(CAST(body AS TEXT), '"base_qty":"0.5"', '"base_qty":"5"') AS BLOB) WHERE seq IN (1, 2)`)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := db.Query(`SELECT seq, body FROM audit ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	prev := make([]byte, 32)
	var stmts []string
	for rows.Next() {
		var s int64
		var body []byte
		if err := rows.Scan(&s, &body); err != nil {
			t.Fatal(err)
		}
		h := sha256.Sum256(append(prev, body...))
		prev = h[:]
		stmts = append(stmts, fmt.Sprintf(`UPDATE audit SET hash = x'%x' WHERE seq = %d`, h, s))
	}
	rows.Close()
	db.Close()
	tamper(t, path, stmts...)

	if code, out, _ := runAudit("verify", "-journal", path); code != exitOK {
		t.Fatalf("a consistently rewritten chain verifies on its own (the limit docs/audit.md states); got exit %d: %s", code, out)
	}
	code, out, _ = runAudit("verify", "-journal", path, "-head", pinned)
	if want := fmt.Sprintf("audit chain BROKEN: entry %d: hash ", seq); code != exitAudit || !strings.HasPrefix(out, want) ||
		!strings.Contains(out, "pinned "+hash) {
		t.Fatalf("with the pinned head: exit %d\n%s\nwant exit 4 starting %q", code, out, want)
	}
}

// TestAuditVerifyUsage: the flags' errors are usage errors (2), an unreadable
// journal a runtime failure (1), and -postgres-dsn-env naming an empty
// variable a usage error (its success is in TestHATakeoverAfterKill9OfTheLeader).
func TestAuditVerifyUsage(t *testing.T) {
	path := auditFixture(t)
	tests := []struct {
		name string
		args []string
		code int
		says string
	}{
		{"no journal", []string{"verify"}, exitUsage, "-journal or -postgres-dsn-env is required"},
		{"postgres without a DSN", []string{"verify", "-postgres-dsn-env", "TREASURYD_AUDIT_TEST_UNSET_DSN"}, exitUsage, "is empty"},
		{"both", []string{"verify", "-journal", path, "-postgres-dsn-env", "X"}, exitUsage, "not both"},
		{"bad pin", []string{"verify", "-journal", path, "-head", "3:zz"}, exitUsage, "64 hex digits"},
		{"missing file", []string{"verify", "-journal", filepath.Join(t.TempDir(), "none.db")}, exitRuntime, "no such file"},
		{"unknown subcommand", []string{"rewrite"}, exitUsage, `unknown subcommand "rewrite"`},
		{"bad format", []string{"export", "-journal", path, "-format", "xlsx"}, exitUsage, "want jsonl or csv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errb := runAudit(tt.args...)
			if code != tt.code || !strings.Contains(out+errb, tt.says) {
				t.Fatalf("exit %d, output %q; want exit %d saying %q", code, out+errb, tt.code, tt.says)
			}
		})
	}
}

// TestAuditExportCSVOpensAsATable parses the CSV export back as a
// spreadsheet would: a header row, then one row per entry with the
// accountant's columns filled, and text that could run as a formula
// defused.
func TestAuditExportCSVOpensAsATable(t *testing.T) {
	path := auditFixture(t)
	code, out, errb := runAudit("export", "-journal", path, "-format", "csv")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatalf("the export is not CSV: %v\n%s", err, out)
	}
	if len(recs) != 13 {
		t.Fatalf("%d records; want a header and 12 entries", len(recs))
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	for _, h := range []string{"seq", "at", "kind", "by", "program", "side", "base_qty", "quote_qty", "price", "result",
		"address", "network", "state", "amount", "hash"} {
		if _, ok := col[h]; !ok {
			t.Fatalf("header %v lacks %q", recs[0], h)
		}
	}
	get := func(seq int, h string) string { return recs[seq][col[h]] }
	checks := []struct {
		seq         int
		field, want string
	}{
		{2, "kind", "accept_result"}, {2, "program", "alpha"}, {2, "base_qty", "0.5"}, {2, "quote_qty", "32500.25"},
		{2, "price", "65000.5"}, {2, "result", "ok"}, {4, "result", "rejected"},
		{9, "kind", "withdrawal_update"}, {9, "address", "bc1qcold"}, {9, "network", "bitcoin"}, {9, "amount", "1.25"},
		{9, "state", "completed"}, {9, "desk_id", "desk-1"},
		{7, "kind", "pause"}, {7, "paused", "true"}, {7, "by", `'=HYPERLINK("http://evil") desk maintenance`},
		{12, "kind", "operator_resolution"}, {12, "by", "http 127.0.0.1:9"}, {12, "state", "failed"},
		{12, "message", "never executed"}, {8, "clean", "true"},
	}
	for _, c := range checks {
		if got := get(c.seq, c.field); got != c.want {
			t.Errorf("entry %d %s = %q, want %q", c.seq, c.field, got, c.want)
		}
	}
	for i, r := range recs[1:] {
		if r[col["seq"]] != fmt.Sprint(i+1) || len(r[col["hash"]]) != 64 {
			t.Errorf("row %d: seq %q hash %q", i+1, r[col["seq"]], r[col["hash"]])
		}
		if _, err := time.Parse(time.RFC3339Nano, r[col["at"]]); err != nil {
			t.Errorf("row %d: at %q: %v", i+1, r[col["at"]], err)
		}
	}
}

// TestAuditExportJSONLinesAndSince: every line is one entry as JSON with its
// hash, and -since leaves out entries appended before it.
func TestAuditExportJSONLinesAndSince(t *testing.T) {
	path := auditFixture(t)
	// Entries 1 and 2 as if appended 31 days ago (the export does not
	// verify; verify would rightly refuse this file).
	tamper(t, path, fmt.Sprintf(`UPDATE audit SET at = at - %d WHERE seq <= 2`, (31*24*time.Hour).Nanoseconds()))
	for _, tt := range []struct {
		since string
		first int64
		n     int
	}{{"720h", 3, 10}, {"0", 1, 12}} {
		code, out, errb := runAudit("export", "-journal", path, "-since", tt.since)
		if code != exitOK {
			t.Fatalf("-since %s: exit %d: %s", tt.since, code, errb)
		}
		sc := bufio.NewScanner(strings.NewReader(out))
		n := 0
		for sc.Scan() {
			var e struct {
				Seq  int64           `json:"seq"`
				Kind string          `json:"kind"`
				Data json.RawMessage `json:"data"`
				Hash string          `json:"hash"`
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("line %q: %v", sc.Text(), err)
			}
			if b, err := hex.DecodeString(e.Hash); err != nil || len(b) != 32 || e.Kind == "" || len(e.Data) == 0 {
				t.Fatalf("line %q lacks a kind, data or hash", sc.Text())
			}
			if want := tt.first + int64(n); e.Seq != want {
				t.Fatalf("-since %s: line %d is entry %d, want %d", tt.since, n+1, e.Seq, want)
			}
			n++
		}
		if n != tt.n {
			t.Fatalf("-since %s: %d lines, want %d", tt.since, n, tt.n)
		}
	}
}
