package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/journal"
	"treasuryd/internal/replay"
)

// replayOptions are the flags of `treasuryd replay`.
type replayOptions struct {
	journal string
	since   time.Duration
	program string
	json    bool
}

func replayFlags(fs *flag.FlagSet, c *common) {
	fs.StringVar(&c.replay.journal, "journal", "", "journal to read (default: the policy's state.path)")
	fs.DurationVar(&c.replay.since, "since", 24*time.Hour, "replay quotes received within this long (0: everything recorded)")
	fs.StringVar(&c.replay.program, "program", "", "replay only this program")
	fs.BoolVar(&c.replay.json, "json", false, "print one JSON object")
}

// cmdReplay replays the policy over the recorded quote frames of the journal,
// read-only (safe beside a running daemon), and prints what it would have
// done beside what was done: a table, or with -json one object.
func cmdReplay(c *common, _ []string, stdout, stderr io.Writer) int {
	p, ok := c.loadPolicy(stderr)
	if !ok {
		return exitUsage
	}
	o := c.replay
	if o.since < 0 {
		fmt.Fprintln(stderr, "treasuryd replay: -since must not be negative")
		return exitUsage
	}
	if o.program != "" {
		found := false
		for _, pr := range p.Programs {
			found = found || pr.Name == o.program
		}
		if !found {
			fmt.Fprintf(stderr, "treasuryd replay: the policy has no program %q\n", o.program)
			return exitUsage
		}
	}
	var j *journal.Journal
	var err error
	switch {
	case o.journal != "":
		j, err = journal.OpenReadOnly(o.journal)
	case p.State.PostgresDSNEnv != "":
		var dsn string
		if dsn, err = p.State.PostgresDSN(); err == nil {
			j, err = journal.OpenPostgresReadOnly(dsn)
		}
	default:
		j, err = journal.OpenReadOnly(p.State.Path)
	}
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd replay: %v\n", err)
		return exitRuntime
	}
	defer j.Close()
	ctx, cancel := interruptible()
	defer cancel()
	now := time.Now()
	opts := replay.Options{Program: o.program, Now: func() time.Time { return now }}
	if o.since > 0 {
		opts.Since = now.Add(-o.since)
	}
	progress := isTerminal(stderr)
	if progress {
		opts.Progress = func(n int64) {
			el := time.Since(now)
			fmt.Fprintf(stderr, "\r%d records read, %.0f/s, %s elapsed", n, float64(n)/el.Seconds(), el.Round(100*time.Millisecond))
		}
	}
	rep, err := replay.Run(ctx, j, p, opts)
	if progress {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd replay: %v\n", err)
		return exitRuntime
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return exitRuntime
		}
		return exitOK
	}
	if err := writeReplayTable(stdout, rep); err != nil {
		return exitRuntime
	}
	return exitOK
}

// writeReplayTable prints the report for people: one row per program, then
// each program's outcomes and first differences.
func writeReplayTable(w io.Writer, rep *replay.Report) error {
	since := "the first recorded frame"
	if !rep.Since.IsZero() {
		since = rep.Since.Format(time.RFC3339)
	}
	fmt.Fprintf(w, "replay of %d recorded quote frames from %s to %s\n\n", rep.Frames, since, rep.Until.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "program\tquotes\taccepts\tbase executed\tavg price\tnotional\tactual accepts\tactual base\tactual avg price\tdiffering\t")
	for _, pr := range rep.Programs {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\t%s\t%d\t\n", pr.Name, pr.Quotes, pr.Accepts, pr.BaseExecuted,
			orDash(pr.AveragePrice), pr.Notional, pr.Actual.Accepts, pr.Actual.BaseExecuted, orDash(pr.Actual.AveragePrice), pr.Differing)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, pr := range rep.Programs {
		fmt.Fprintf(w, "\n%s outcomes:", pr.Name)
		names := make([]string, 0, len(pr.Outcomes))
		for o, n := range pr.Outcomes {
			if n > 0 {
				names = append(names, o)
			}
		}
		sort.Strings(names)
		if len(names) == 0 {
			fmt.Fprint(w, " none")
		}
		for _, o := range names {
			fmt.Fprintf(w, " %s=%d", o, pr.Outcomes[o])
		}
		fmt.Fprintln(w)
		if pr.AcceptsFailed > 0 {
			fmt.Fprintf(w, "  %d would-be accepts were refused by the desk when the daemon sent them\n", pr.AcceptsFailed)
		}
		if pr.Actual.Unknown > 0 {
			fmt.Fprintf(w, "  %d accepts of the daemon are still pending or unknown\n", pr.Actual.Unknown)
		}
		if pr.Differing > 0 {
			fmt.Fprintf(w, "  %d quotes decided differently; the first %d:\n", pr.Differing, len(pr.Differences))
			for _, d := range pr.Differences {
				fmt.Fprintf(w, "    %s %s: recorded %s, replayed %s (%s)\n", d.ReceivedAt.Format(time.RFC3339Nano),
					orNone(d.QuoteID), d.Recorded, d.Replayed, d.ReplayedReason)
			}
		}
	}
	return nil
}

func orDash(d *decimal.Decimal) string {
	if d == nil {
		return "-"
	}
	return d.String()
}

func orNone(s string) string {
	if strings.TrimSpace(s) == "" {
		return "(no quote id)"
	}
	return s
}
