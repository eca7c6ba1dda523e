package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/shopspring/decimal"
	"go.uber.org/zap"

	"treasuryd/internal/astra"
	"treasuryd/internal/config"
	"treasuryd/internal/journal"
	"treasuryd/internal/ledger"
	"treasuryd/internal/withdraw"
)

// oneShot builds the desk client for a one-off subcommand. A sandbox policy
// has no desk outside `run`, so these subcommands need real URLs.
func oneShot(p *config.Policy, stderr io.Writer, cmd string) (*astra.Client, bool) {
	if p.Astra.BaseURL == "" {
		fmt.Fprintf(stderr, "treasuryd %s: astra.base_url is not set (a sandbox desk exists only inside `treasuryd run`)\n", cmd)
		return nil, false
	}
	key, err := p.APIKey()
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd %s: %v\n", cmd, err)
		return nil, false
	}
	c, err := astra.New(astra.Options{BaseURL: p.Astra.BaseURL, WSURL: p.Astra.WSURL, APIKey: key, AccountID: p.AccountID, Timeout: p.Astra.RequestTimeout})
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd %s: %v\n", cmd, err)
		return nil, false
	}
	return c, true
}

// interruptible is a context cancelled by SIGINT/SIGTERM.
func interruptible() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// isTerminal reports whether f is a character device (a terminal), without
// a dependency: progress is shown only there.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// cmdReconcile runs one reconciliation, prints the report and exits 0 when
// clean, 3 with breaks, 1 on error. It uses the journal the daemon writes.
func cmdReconcile(c *common, _ []string, stdout, stderr io.Writer) int {
	p, ok := c.loadPolicy(stderr)
	if !ok {
		return exitUsage
	}
	client, ok := oneShot(p, stderr, "reconcile")
	if !ok {
		return exitUsage
	}
	log := c.logger(stderr)
	defer log.Sync()
	j, err := openJournal(p)
	if err != nil {
		log.Error("journal", zap.Error(err))
		return exitRuntime
	}
	defer j.Close()
	ctx, cancel := interruptible()
	defer cancel()
	start := time.Now()
	deps := ledger.Deps{Log: log, Desk: client, Journal: j, Epoch: j.Epoch, AuditHead: j.AuditHead,
		Tolerance: func() decimal.Decimal { return p.Reconcile.Tolerance }}
	if isTerminal(stderr) {
		deps.Progress = func(n int64) {
			el := time.Since(start)
			fmt.Fprintf(stderr, "\r%d transactions read, %.0f/s, %s elapsed", n, float64(n)/el.Seconds(), el.Round(100*time.Millisecond))
		}
	}
	rep, err := ledger.New(deps).Run(ctx)
	if deps.Progress != nil {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		log.Error("reconciliation failed", zap.Error(err))
		return exitRuntime
	}
	rep.Write(stdout)
	if !rep.Clean() {
		return exitBreaks
	}
	return exitOK
}

// cmdAddresses prints the deposit and express-deposit addresses.
func cmdAddresses(c *common, _ []string, stdout, stderr io.Writer) int {
	p, ok := c.loadPolicy(stderr)
	if !ok {
		return exitUsage
	}
	client, ok := oneShot(p, stderr, "addresses")
	if !ok {
		return exitUsage
	}
	ctx, cancel := interruptible()
	defer cancel()
	rows, err := withdraw.Addresses(ctx, client, p)
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd addresses: %v\n", err)
		return exitRuntime
	}
	if err := withdraw.WriteAddresses(stdout, rows); err != nil {
		return exitRuntime
	}
	return exitOK
}

// openJournal opens the policy's journal for a one-shot command beside a
// running daemon: the SQLite file, or the PostgreSQL database (without a
// leadership term: it can settle and report, never journal an accept or a
// withdrawal intent).
func openJournal(p *config.Policy) (*journal.Journal, error) {
	if p.State.PostgresDSNEnv == "" {
		return journal.Open(p.State.Path)
	}
	dsn, err := p.State.PostgresDSN()
	if err != nil {
		return nil, err
	}
	return journal.OpenPostgres(dsn)
}
