package main

// `treasuryd audit verify|export` (SPEC 13, docs/audit.md): read-only
// subcommands over the journal's audit chain, safe beside a running daemon.
// They take -journal rather than -config: an auditor has the file, not the
// policy and its secrets.

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/journal"
)

const auditUsage = `usage:
  treasuryd audit verify -journal PATH [-head SEQ:HASH]
  treasuryd audit verify -postgres-dsn-env NAME [-head SEQ:HASH]
  treasuryd audit export -journal PATH [-since 720h] [-format jsonl|csv]

verify exits 0 when the chain is intact, 4 naming the first bad entry.
`

// exportPricePlaces is the precision of the price column of an export: a
// display value for people (quote quantity / base quantity); the exact
// quantities are exported beside it.
const exportPricePlaces = 8

func cmdAudit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return exitUsage
	}
	sub, rest := args[0], args[1:]
	fs := flag.NewFlagSet("treasuryd audit "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("journal", "", "journal file (required)")
	switch sub {
	case "verify":
		dsnEnv := fs.String("postgres-dsn-env", "", "environment variable holding the PostgreSQL journal's DSN")
		head := fs.String("head", "", "a head pinned earlier, SEQ:HASH: the chain must still hold it")
		if code, ok := parseAuditFlags(fs, rest); !ok {
			return code
		}
		switch {
		case *dsnEnv != "" && *path != "":
			fmt.Fprintln(stderr, "treasuryd audit verify: give -journal or -postgres-dsn-env, not both")
			return exitUsage
		case *path == "" && *dsnEnv == "":
			fmt.Fprintln(stderr, "treasuryd audit verify: -journal or -postgres-dsn-env is required")
			return exitUsage
		}
		open := func() (*journal.Journal, error) { return journal.OpenReadOnly(*path) }
		if *dsnEnv != "" {
			dsn := strings.TrimSpace(os.Getenv(*dsnEnv))
			if dsn == "" {
				fmt.Fprintf(stderr, "treasuryd audit verify: -postgres-dsn-env: environment variable %s is empty\n", *dsnEnv)
				return exitUsage
			}
			open = func() (*journal.Journal, error) { return journal.OpenPostgresReadOnly(dsn) }
		}
		var pin *journal.AuditHead
		if *head != "" {
			h, err := parsePinnedHead(*head)
			if err != nil {
				fmt.Fprintf(stderr, "treasuryd audit verify: -head: %v\n", err)
				return exitUsage
			}
			pin = &h
		}
		return auditVerify(open, pin, stdout, stderr)
	case "export":
		since := fs.Duration("since", 720*time.Hour, "export entries appended within this long before now (0: all)")
		format := fs.String("format", "jsonl", "jsonl or csv")
		if code, ok := parseAuditFlags(fs, rest); !ok {
			return code
		}
		switch {
		case *path == "":
			fmt.Fprintln(stderr, "treasuryd audit export: -journal is required")
			return exitUsage
		case *format != "jsonl" && *format != "csv":
			fmt.Fprintf(stderr, "treasuryd audit export: -format %q: want jsonl or csv\n", *format)
			return exitUsage
		case *since < 0:
			fmt.Fprintf(stderr, "treasuryd audit export: -since %s: must not be negative\n", *since)
			return exitUsage
		}
		var from time.Time
		if *since > 0 {
			from = time.Now().Add(-*since)
		}
		return auditExport(*path, from, *format, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, auditUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "treasuryd audit: unknown subcommand %q\n\n%s", sub, auditUsage)
	return exitUsage
}

// parseAuditFlags parses rest; ok=false means return code.
func parseAuditFlags(fs *flag.FlagSet, rest []string) (code int, ok bool) {
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return exitUsage, false
	}
	return 0, true
}

// parsePinnedHead reads SEQ:HASH as /status and the reconciliation log show it.
func parsePinnedHead(s string) (journal.AuditHead, error) {
	seqText, hash, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if !ok || err != nil || seq < 1 {
		return journal.AuditHead{}, fmt.Errorf("%q is not SEQ:HASH with SEQ a sequence number from 1", s)
	}
	if b, err := hex.DecodeString(hash); err != nil || len(b) != 32 {
		return journal.AuditHead{}, fmt.Errorf("%q: the hash is not 64 hex digits", s)
	}
	return journal.AuditHead{Sequence: seq, Hash: strings.ToLower(hash)}, nil
}

// auditVerify opens the journal read-only (never a writer lock), verifies
// it, and prints the head (exit 0) or every problem found, the first bad
// entry first (exit 4).
func auditVerify(open func() (*journal.Journal, error), pin *journal.AuditHead, stdout, stderr io.Writer) int {
	j, err := open()
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd audit verify: %v\n", err)
		return exitRuntime
	}
	defer j.Close()
	ctx, cancel := interruptible()
	defer cancel()
	v, err := j.VerifyAudit(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd audit verify: %v\n", err)
		return exitRuntime
	}
	problems := make([]string, 0, len(v.Problems)+1)
	for _, p := range v.Problems {
		problems = append(problems, p.String())
	}
	if pin != nil && v.Intact() {
		if p, err := checkPin(ctx, j, *pin); err != nil {
			fmt.Fprintf(stderr, "treasuryd audit verify: %v\n", err)
			return exitRuntime
		} else if p != "" {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		fmt.Fprintf(stdout, "audit chain BROKEN: %s\n", problems[0])
		for _, p := range problems[1:] {
			fmt.Fprintf(stdout, "  also: %s\n", p)
		}
		if v.More > 0 {
			fmt.Fprintf(stdout, "  and %d more problems\n", v.More)
		}
		return exitAudit
	}
	fmt.Fprintf(stdout, "audit chain intact: %d entries, %d journal rows match their entries\nhead: sequence %d hash %s\n",
		v.Entries, v.Rows, v.Head.Sequence, v.Head.Hash)
	return exitOK
}

// checkPin checks that the chain still holds a head pinned earlier: the
// defence against someone who rewrote the whole chain consistently.
func checkPin(ctx context.Context, j *journal.Journal, pin journal.AuditHead) (string, error) {
	found := false
	var got string
	errStop := errors.New("stop")
	err := j.AuditEntries(ctx, time.Time{}, func(e journal.AuditEntry) error {
		if e.Seq == pin.Sequence {
			found, got = true, hex.EncodeToString(e.Hash)
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return "", err
	}
	switch {
	case !found:
		return fmt.Sprintf("entry %d: the pinned head is not in the chain: entries were deleted", pin.Sequence), nil
	case got != pin.Hash:
		return fmt.Sprintf("entry %d: hash %s, pinned %s: the chain was rewritten since it was pinned", pin.Sequence, got, pin.Hash), nil
	}
	return "", nil
}

// exportLine is one JSON line of an export: the entry's body with its hash.
type exportLine struct {
	Seq  int64           `json:"seq"`
	At   string          `json:"at"`
	Kind string          `json:"kind"`
	By   string          `json:"by,omitempty"`
	Data json.RawMessage `json:"data"`
	Hash string          `json:"hash"`
}

// exportHeader is the CSV header: one wide table over every kind, each row
// filling the columns its kind has.
var exportHeader = []string{"seq", "at", "kind", "by", "id", "program", "quote_id", "side",
	"base_asset", "base_qty", "quote_asset", "quote_qty", "price", "result", "rule", "asset", "amount",
	"network", "address", "state", "desk_id", "desk_status", "convert_id", "message", "paused", "clean", "details", "hash"}

// exportData is every field an entry's data may hold (docs/audit.md).
type exportData struct {
	ID         int64  `json:"id"`
	Program    string `json:"program"`
	QuoteID    string `json:"quote_id"`
	Side       string `json:"side"`
	BaseAsset  string `json:"base_asset"`
	BaseQty    string `json:"base_qty"`
	QuoteAsset string `json:"quote_asset"`
	QuoteQty   string `json:"quote_qty"`
	Result     string `json:"result"`
	Message    string `json:"message"`
	ConvertID  string `json:"convert_id"`
	Rule       string `json:"rule"`
	Asset      string `json:"asset"`
	Amount     string `json:"amount"`
	Network    string `json:"network"`
	Address    string `json:"address"`
	State      string `json:"state"`
	DeskID     string `json:"desk_id"`
	DeskStatus string `json:"desk_status"`
	Error      string `json:"error"`
	Paused     *bool  `json:"paused"`
	Clean      *bool  `json:"clean"`
	UpdatedBy  string `json:"updated_by"`
}

func auditExport(path string, since time.Time, format string, stdout, stderr io.Writer) int {
	j, err := journal.OpenReadOnly(path)
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd audit export: %v\n", err)
		return exitRuntime
	}
	defer j.Close()
	ctx, cancel := interruptible()
	defer cancel()
	out := bufio.NewWriter(stdout)
	var cw *csv.Writer
	if format == "csv" {
		cw = csv.NewWriter(out)
		if err := cw.Write(exportHeader); err != nil {
			return exitRuntime
		}
	}
	enc := json.NewEncoder(out)
	err = j.AuditEntries(ctx, since, func(e journal.AuditEntry) error {
		var b exportLine
		if err := json.Unmarshal(e.Body, &b); err != nil {
			return fmt.Errorf("entry %d: body is not an audit entry: %w (run treasuryd audit verify)", e.Seq, err)
		}
		b.Hash = hex.EncodeToString(e.Hash)
		if cw == nil {
			return enc.Encode(b)
		}
		row, err := exportRow(b)
		if err != nil {
			return fmt.Errorf("entry %d: %w (run treasuryd audit verify)", e.Seq, err)
		}
		return cw.Write(row)
	})
	if err == nil && cw != nil {
		cw.Flush()
		err = cw.Error()
	}
	if err == nil {
		err = out.Flush()
	}
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd audit export: %v\n", err)
		return exitRuntime
	}
	return exitOK
}

// exportRow is one CSV row, in exportHeader's order.
func exportRow(b exportLine) ([]string, error) {
	var d exportData
	if err := json.Unmarshal(b.Data, &d); err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	var id, price, paused, clean, details string
	if d.ID != 0 {
		id = strconv.FormatInt(d.ID, 10)
	}
	if d.BaseQty != "" && d.QuoteQty != "" {
		base, err1 := decimal.NewFromString(d.BaseQty)
		quote, err2 := decimal.NewFromString(d.QuoteQty)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("quantities: %w", err)
		}
		if !base.IsZero() {
			price = quote.DivRound(base, exportPricePlaces).String()
		}
	}
	if d.Paused != nil {
		paused = strconv.FormatBool(*d.Paused)
	}
	if d.Clean != nil {
		clean = strconv.FormatBool(*d.Clean)
	}
	message := d.Message
	if d.Error != "" {
		message = d.Error
	}
	by := b.By
	if by == "" {
		by = d.UpdatedBy
	}
	if strings.HasPrefix(b.Kind, "authority_") || strings.HasPrefix(b.Kind, "report") {
		details = string(b.Data)
	}
	row := []string{strconv.FormatInt(b.Seq, 10), b.At, b.Kind, by, id, d.Program, d.QuoteID, d.Side,
		d.BaseAsset, d.BaseQty, d.QuoteAsset, d.QuoteQty, price, d.Result, d.Rule, d.Asset, d.Amount,
		d.Network, d.Address, d.State, d.DeskID, d.DeskStatus, d.ConvertID, message, paused, clean, details, b.Hash}
	for i, c := range row {
		row[i] = csvCell(c)
	}
	return row, nil
}

// csvCell defuses a text cell that a spreadsheet would run as a formula
// (OWASP's CSV injection advice): one starting with = + - @ tab or CR gets a
// leading apostrophe. Texts such as a pause reason come from outside;
// decimals (a negative one starts with -) are left exact.
func csvCell(s string) string {
	if s == "" || !strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return s
	}
	if _, err := decimal.NewFromString(s); err == nil {
		return s
	}
	return "'" + s
}
