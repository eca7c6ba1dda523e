package journal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// maxAuditProblems bounds the problems one verification lists: the first is
// what matters, and a journal rewritten wholesale would otherwise list every
// row.
const maxAuditProblems = 100

// AuditProblem is one thing wrong with the chain or with the journal rows it
// covers.
type AuditProblem struct {
	Seq     int64  // the entry concerned; 0 when there is none (a row no entry covers)
	Table   string // the journal table concerned, if any
	Row     int64  // its row id, if any
	Problem string
}

func (p AuditProblem) String() string {
	if p.Seq > 0 {
		return fmt.Sprintf("entry %d: %s", p.Seq, p.Problem)
	}
	return p.Problem
}

// AuditVerification is what VerifyAudit found.
type AuditVerification struct {
	Head     AuditHead // the newest entry read
	Entries  int64     // entries whose hash was checked
	Rows     int64     // journal rows checked against their entries
	Problems []AuditProblem
	// More counts problems found beyond the listed ones.
	More int
}

// Intact reports whether nothing was found wrong.
func (v AuditVerification) Intact() bool { return len(v.Problems) == 0 }

// auditRef is the last entry seen for one record: its sequence, kind and the
// SHA-256 of its canonical data (what a row, encoded the same way, must hash
// to).
type auditRef struct {
	seq  int64
	kind string
	sum  [sha256.Size]byte
}

// VerifyAudit recomputes the chain and checks that every money-state row of
// the journal (accepts, withdrawals, reports, the pause flag) is exactly what
// its last entry says, all from one read transaction (a consistent snapshot,
// safe beside a running daemon: it never takes the write lock). The walk of
// the chain stops at its first broken entry. An error means the journal
// could not be read; problems found are in the result.
func (j *Journal) VerifyAudit(ctx context.Context) (AuditVerification, error) {
	var v AuditVerification
	db, err := j.reader()
	if err != nil {
		return v, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return v, fmt.Errorf("journal: verify audit chain: %w", err)
	}
	defer conn.Close()
	// A deferred BEGIN on the read pool: the snapshot is fixed at the first
	// read and no lock is taken that a writer waits on.
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return v, fmt.Errorf("journal: verify audit chain: %w", err)
	}
	defer tx.Rollback()

	records := map[string]map[int64]auditRef{"accepts": {}, "withdrawals": {}, "reports": {}}
	var pause *auditRef
	add := func(p AuditProblem) {
		if len(v.Problems) < maxAuditProblems {
			v.Problems = append(v.Problems, p)
		} else {
			v.More++
		}
	}
	chainOK, err := j.verifyChain(ctx, tx, &v, records, &pause, add)
	if err != nil {
		return v, fmt.Errorf("journal: verify audit chain: %w", err)
	}
	if chainOK {
		if err := verifyRows(ctx, tx, &v, records, pause, add); err != nil {
			return v, fmt.Errorf("journal: verify audit chain: %w", err)
		}
	}
	sort.SliceStable(v.Problems, func(a, b int) bool {
		pa, pb := v.Problems[a], v.Problems[b]
		switch {
		case pa.Seq == 0 && pb.Seq == 0:
			return false
		case pa.Seq == 0 || pb.Seq == 0:
			return pb.Seq == 0
		}
		return pa.Seq < pb.Seq
	})
	return v, nil
}

// verifyChain walks the entries in sequence order, checking the numbering,
// each hash, and that each body agrees with its columns, and folds them into
// records (the last entry per record). It stops at the first broken entry
// and then returns false.
func (j *Journal) verifyChain(ctx context.Context, tx *sql.Tx, v *AuditVerification,
	records map[string]map[int64]auditRef, pause **auditRef, add func(AuditProblem)) (bool, error) {
	rows, err := tx.QueryContext(ctx, `SELECT seq, at, kind, body, hash FROM audit ORDER BY seq`)
	if err != nil {
		return false, err
	}
	defer rows.Close()
	prev := make([]byte, auditHashLen)
	v.Head = AuditHead{Hash: hex.EncodeToString(prev)}
	want := int64(1)
	for rows.Next() {
		var (
			seq, at    int64
			kind       string
			body, hash []byte
		)
		if err := rows.Scan(&seq, &at, &kind, &body, &hash); err != nil {
			return false, err
		}
		bad := func(format string, args ...any) (bool, error) {
			add(AuditProblem{Seq: seq, Problem: fmt.Sprintf(format, args...)})
			return false, nil
		}
		if seq != want {
			if seq < want { // INTEGER PRIMARY KEY: cannot repeat; only a negative or zero seq
				return bad("sequence %d is out of order: the chain starts at 1", seq)
			}
			return bad("sequence %d follows %d: entry %d was deleted, or entries were renumbered", seq, want-1, want)
		}
		sum := auditHash(prev, body)
		if !bytes.Equal(sum[:], hash) {
			prevName := fmt.Sprintf("hash of entry %d", seq-1)
			if seq == 1 {
				prevName = "32 zero bytes"
			}
			return bad("hash %x is not SHA-256(%s || body) = %x: its body or hash was edited, or it does not belong after entry %d (entries inserted, deleted or reordered)",
				hash, prevName, sum, seq-1)
		}
		var b auditBody
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&b); err != nil {
			return bad("body is not an audit entry: %v", err)
		}
		switch {
		case b.Seq != seq:
			return bad("body says sequence %d", b.Seq)
		case b.Kind != kind:
			return bad("kind column %q, body says %q", kind, b.Kind)
		case b.At != auditNanos(at):
			return bad("time column %s, body says %s", auditNanos(at), b.At)
		}
		spec, ok := auditKinds[kind]
		if !ok {
			return bad("unknown kind %q", kind)
		}
		ref := auditRef{seq: seq, kind: kind, sum: sha256.Sum256(b.Data)}
		switch spec.table {
		case "":
		case "settings":
			*pause = &ref
		default:
			var id struct {
				ID int64 `json:"id"`
			}
			if err := json.Unmarshal(b.Data, &id); err != nil || id.ID == 0 {
				return bad("%s data names no %s row id", kind, spec.table)
			}
			last, seen := records[spec.table][id.ID]
			switch {
			case spec.first && seen:
				return bad("%s records %s row %d, which entry %d already recorded", kind, spec.table, id.ID, last.seq)
			case !spec.first && !seen:
				return bad("%s updates %s row %d, which no earlier entry recorded", kind, spec.table, id.ID)
			}
			records[spec.table][id.ID] = ref
		}
		prev = hash
		v.Head = AuditHead{Sequence: seq, Hash: hex.EncodeToString(hash)}
		v.Entries++
		want++
	}
	return true, rows.Err()
}

// verifyRows checks every money-state row against the last entry recorded
// for it, and that every recorded row still exists.
func verifyRows(ctx context.Context, tx *sql.Tx, v *AuditVerification,
	records map[string]map[int64]auditRef, pause *auditRef, add func(AuditProblem)) error {
	check := func(table string, id int64, row any) error {
		v.Rows++
		data, err := json.Marshal(row)
		if err != nil {
			return err
		}
		ref, ok := records[table][id]
		if !ok {
			add(AuditProblem{Table: table, Row: id, Problem: fmt.Sprintf(
				"%s row %d is in no audit entry: it was written outside treasuryd", table, id)})
			return nil
		}
		delete(records[table], id)
		if sha256.Sum256(data) != ref.sum {
			diff, err := auditDiff(ctx, tx, ref.seq, data)
			if err != nil {
				return err
			}
			add(AuditProblem{Seq: ref.seq, Table: table, Row: id, Problem: fmt.Sprintf(
				"%s row %d differs from this entry (%s), its last: %s", table, id, ref.kind, diff)})
		}
		return nil
	}
	// Each table is read whole before its rows are checked: a check that
	// finds a difference reads the entry (auditDiff) on the transaction's
	// one connection, which on PostgreSQL cannot run a statement while
	// another's rows are still open.
	type idRow struct {
		id  int64
		row any
	}
	walk := func(table, query string, scan func(scanner) (int64, any, error)) error {
		rows, err := collectRows(ctx, tx, "read "+table, query, nil, func(s scanner) (idRow, error) {
			id, row, err := scan(s)
			return idRow{id, row}, err
		})
		if err != nil {
			return err
		}
		for _, r := range rows {
			if err := check(table, r.id, r.row); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk("accepts", `SELECT `+auditAcceptCols+` FROM accepts ORDER BY id`, func(s scanner) (int64, any, error) {
		a, err := scanAuditAccept(s)
		return a.ID, a, err
	}); err != nil {
		return err
	}
	if err := walk("withdrawals", `SELECT `+auditWithdrawalCols+` FROM withdrawals ORDER BY id`, func(s scanner) (int64, any, error) {
		w, err := scanAuditWithdrawal(s)
		return w.ID, w, err
	}); err != nil {
		return err
	}
	if err := walk("reports", `SELECT id, at, clean, body FROM reports ORDER BY id`, func(s scanner) (int64, any, error) {
		r, err := scanAuditReport(s)
		return r.ID, r, err
	}); err != nil {
		return err
	}
	for _, table := range []string{"accepts", "withdrawals", "reports"} {
		for id, ref := range records[table] {
			add(AuditProblem{Seq: ref.seq, Table: table, Row: id, Problem: fmt.Sprintf(
				"%s records %s row %d, which is not in the journal: it was deleted", ref.kind, table, id)})
		}
	}
	p, ok, err := scanAuditPause(ctx, tx)
	if err != nil {
		add(AuditProblem{Table: "settings", Problem: fmt.Sprintf("the pause flag: %v", err)})
		return nil
	}
	switch {
	case ok && pause == nil:
		add(AuditProblem{Table: "settings", Problem: "the pause flag is in no audit entry: it was written outside treasuryd"})
	case !ok && pause != nil:
		add(AuditProblem{Seq: pause.seq, Table: "settings", Problem: fmt.Sprintf(
			"%s records the pause flag, which is not in the journal: it was deleted", pause.kind)})
	case ok:
		v.Rows++
		data, err := json.Marshal(p)
		if err != nil {
			return err
		}
		if sha256.Sum256(data) != pause.sum {
			diff, err := auditDiff(ctx, tx, pause.seq, data)
			if err != nil {
				return err
			}
			add(AuditProblem{Seq: pause.seq, Table: "settings", Problem: fmt.Sprintf(
				"the pause flag differs from this entry (%s), its last: %s", pause.kind, diff)})
		}
	}
	return nil
}

// auditDiff names the fields in which row (canonical data) differs from the
// data of entry seq.
func auditDiff(ctx context.Context, tx *sql.Tx, seq int64, row []byte) (string, error) {
	var body []byte
	if err := tx.QueryRowContext(ctx, `SELECT body FROM audit WHERE seq = ?`, seq).Scan(&body); err != nil {
		return "", err
	}
	var b auditBody
	if err := json.Unmarshal(body, &b); err != nil {
		return "", err
	}
	var have, want map[string]json.RawMessage
	if err := errors.Join(json.Unmarshal(row, &have), json.Unmarshal(b.Data, &want)); err != nil {
		return "", err
	}
	keys := map[string]bool{}
	for k := range have {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	var diffs []string
	for k := range keys {
		if !bytes.Equal(have[k], want[k]) {
			diffs = append(diffs, fmt.Sprintf("%s is %s in the journal, %s in the entry", k, orNone(have[k]), orNone(want[k])))
		}
	}
	sort.Strings(diffs)
	return strings.Join(diffs, "; "), nil
}

func orNone(b json.RawMessage) string {
	if b == nil {
		return "absent"
	}
	return string(b)
}
