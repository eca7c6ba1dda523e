package main

// Crash tests: the daemon is killed with a real SIGKILL (internal/crashpoint,
// armed by TREASURYD_CRASHPOINT) between two steps of moving money, then
// restarted without it. What the desk holds (the simulator's ground truth)
// and what the journal holds afterwards must show that nothing was sent twice
// and that the open intent was settled by reading the desk, never by writing
// to it (SPEC 5.2, 5.3, 5.6, 7.7).

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"treasuryd/internal/crashpoint"
	"treasuryd/internal/journal"
	"treasuryd/internal/sim"
	"treasuryd/internal/withdraw"
)

const (
	crashAccount = "5d2e8f41-7a3b-4c6d-9e0f-1a2b3c4d5e6f"
	crashAPIKey  = "crash-test-key-91c4e"
	crashAddress = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"
	crashRule    = "btc-to-cold"
	crashProgram = "sell-btc"

	// The daemon is made to have been down this long after a crash by
	// moving every time in its journal back (ageJournal) instead of the test
	// waiting it out. crashPastMatchGrace is beyond withdraw's match grace
	// (2m by default, not settable from the policy); crashPastMissingGrace
	// beyond the ledger's grace before an unknown accept without a convert
	// is settled as missing (5m).
	crashPastMatchGrace   = 3 * time.Minute
	crashPastMissingGrace = 6 * time.Minute
	crashAdminToken       = "crash-admin-token-3b9d-5e7f"
)

// crashEnv is one crash scenario: a desk simulator in this process (its
// ground truth, accept bodies included, read directly) and a policy pointing
// the daemon at it.
type crashEnv struct {
	desk    *sim.Desk
	policy  string
	addr    string
	journal string
	env     []string
}

// newCrashEnv starts a desk and writes a policy with either one rebalance rule
// whose high-water mark the balance exceeds (withdrawals) or one program
// whose limit every quote crosses, with no cooldown (accepts). The daemon
// never reconciles on its own: `treasuryd reconcile` does, after it stopped.
func newCrashEnv(t *testing.T, withdrawals bool) *crashEnv {
	t.Helper()
	return newCrashEnvVolatility(t, withdrawals, "20")
}

// newCrashEnvVolatility is newCrashEnv with the desk's price step per quote
// in basis points: at "0" every quote of the program has the same
// quantities, so converts cannot be told apart by them.
func newCrashEnvVolatility(t *testing.T, withdrawals bool, volatilityBps string) *crashEnv {
	t.Helper()
	desk, err := sim.NewDesk(sim.DeskConfig{
		AccountID: crashAccount, APIKey: crashAPIKey, Seed: 11,
		Balances:       map[string]decimal.Decimal{"BTC": decimal.RequireFromString("5"), "USD": decimal.RequireFromString("1000")},
		Prices:         map[string]decimal.Decimal{"BTC-USD": decimal.RequireFromString("65000")},
		VolatilityBps:  decimal.RequireFromString(volatilityBps),
		QuoteInterval:  200 * time.Millisecond,
		QuoteTTL:       5 * time.Second,
		WithdrawalStep: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := desk.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { desk.Close() })

	dir := t.TempDir()
	e := &crashEnv{desk: desk, addr: freePort(t), journal: filepath.Join(dir, "journal.db"),
		policy: filepath.Join(dir, "policy.yaml"), env: []string{"CRASH_TEST_ASTRA_KEY=" + crashAPIKey, "CRASH_TEST_ADMIN_TOKEN=" + crashAdminToken}}
	var b strings.Builder
	fmt.Fprintf(&b, "account_id: %q\n", crashAccount)
	fmt.Fprintf(&b, "astra: { base_url: %q, ws_url: %q, api_key_env: CRASH_TEST_ASTRA_KEY, request_timeout: 2s }\n",
		desk.BaseURL(), desk.WSURL())
	fmt.Fprintf(&b, "state: { path: %q }\nhttp: { listen: %q, admin_token_env: CRASH_TEST_ADMIN_TOKEN }\nshutdown_timeout: 5s\n",
		e.journal, e.addr)
	b.WriteString("compliance: { enabled: false }\n")
	if withdrawals {
		fmt.Fprintf(&b, "withdraw:\n  allowlist:\n    - { asset: BTC, network: bitcoin, address: %q }\n", crashAddress)
		// 5 BTC, sweep to 2 above 3, at most 1 at a time: two withdrawals
		// of 1 take the balance to 3, where the rule stops.
		fmt.Fprintf(&b, `rebalance:
  schedule: "@every 1s"
  rules:
    - { name: %q, asset: BTC, network: bitcoin, address: %q, high_water: "3", keep: "2", min_amount: "0.01", max_amount: "1", max_daily: "10" }
`, crashRule, crashAddress)
	} else {
		fmt.Fprintf(&b, `programs:
  - { name: %q, base: BTC, quote: USD, side: sell, size: "0.01", limit_price: "1", cooldown: 0s, min_validity: 100ms, reserve: "0" }
`, crashProgram)
	}
	b.WriteString("reconcile: { tolerance: \"0\" }\n")
	if err := os.WriteFile(e.policy, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// start runs the daemon, with extra environment.
func (e *crashEnv) start(t *testing.T, env ...string) *daemon {
	t.Helper()
	return startDaemon(t, e.policy, e.addr, append(slices.Clone(e.env), env...)...)
}

// restart runs the daemon without a crash point and waits until it is ready.
func (e *crashEnv) restart(t *testing.T) *daemon {
	t.Helper()
	d := e.start(t, crashpoint.EnvVar+"=")
	waitFor(t, 20*time.Second, "/readyz after the restart", func() bool { c, _ := d.get("/readyz"); return c == 200 })
	return d
}

// crash runs the daemon armed at point and waits for it to die of SIGKILL
// there (the test sends no signal: only the crash point can).
func (e *crashEnv) crash(t *testing.T, point string) {
	t.Helper()
	d := e.start(t, crashpoint.EnvVar+"="+point)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the daemon did not reach crash point %s within 20s", point)
	}
	ws, ok := d.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the daemon armed at %s ended with %v; want killed by SIGKILL\nlogs:\n%s",
			point, d.cmd.ProcessState, tail(d.Logs(), 40))
	}
}

// stop stops a daemon with SIGTERM and requires exit 0.
func (e *crashEnv) stop(t *testing.T, d *daemon) {
	t.Helper()
	if code, _ := d.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM", code)
	}
}

// withJournal opens the journal of a stopped daemon for fn.
func (e *crashEnv) withJournal(t *testing.T, fn func(j *journal.Journal)) {
	t.Helper()
	j, err := journal.Open(e.journal)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	fn(j)
}

func (e *crashEnv) withdrawals(t *testing.T) []journal.Withdrawal {
	t.Helper()
	var ws []journal.Withdrawal
	e.withJournal(t, func(j *journal.Journal) {
		var err error
		if ws, err = j.Withdrawals(context.Background(), journal.WithdrawalFilter{}); err != nil {
			t.Fatal(err)
		}
	})
	slices.SortFunc(ws, func(a, b journal.Withdrawal) int { return int(a.ID - b.ID) })
	return ws
}

func (e *crashEnv) accepts(t *testing.T) []journal.Accept {
	t.Helper()
	var as []journal.Accept
	e.withJournal(t, func(j *journal.Journal) {
		var err error
		if as, err = j.Accepts(context.Background(), journal.AcceptFilter{}); err != nil {
			t.Fatal(err)
		}
	})
	slices.SortFunc(as, func(a, b journal.Accept) int { return int(a.ID - b.ID) })
	return as
}

// ageJournal moves every time in the journal of a stopped daemon back by by,
// as if it had all happened that much earlier and the daemon had been down
// since. The journal rightly has no API for it, so this writes the tables
// directly: times are Unix nanoseconds (migrations/0001_init.sql), and the
// journal's creation time (its reconciliation epoch) is a settings row.
func (e *crashEnv) ageJournal(t *testing.T, by time.Duration) {
	t.Helper()
	db, err := sql.Open("sqlite", e.journal)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"UPDATE accepts SET sent_at = sent_at - ?1, result_at = result_at - ?1",
		"UPDATE withdrawals SET created_at = created_at - ?1, updated_at = updated_at - ?1",
		"UPDATE reports SET at = at - ?1",
		"UPDATE frames SET received_at = received_at - ?1",
		"UPDATE settings SET updated_at = updated_at - ?1",
		"UPDATE settings SET value = CAST(CAST(value AS INTEGER) - ?1 AS TEXT) WHERE key = 'created'",
	} {
		if _, err := db.Exec(q, by.Nanoseconds()); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// reconcile runs `treasuryd reconcile` and requires exit 0 (no breaks).
func (e *crashEnv) reconcile(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(binary, "reconcile", "-config", e.policy)
	cmd.Env = append(os.Environ(), e.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("treasuryd reconcile: exit %d; want 0\nstdout:\n%s\nstderr:\n%s", code, out.String(), tail(errb.String(), 20))
	}
	// The report's log line carries the audit chain's head (SPEC 13).
	if !strings.Contains(errb.String(), `"audit_sequence":`) || !strings.Contains(errb.String(), `"audit_hash":"`) {
		t.Fatalf("treasuryd reconcile logged no audit chain head:\n%s", tail(errb.String(), 20))
	}
	return out.String()
}

// auditIntact runs `treasuryd audit verify` on the journal (beside a running
// daemon or not) and requires exit 0: the chain and every row agree. It
// returns the JSON-lines export of the chain.
func (e *crashEnv) auditIntact(t *testing.T) string {
	t.Helper()
	for _, args := range [][]string{{"audit", "verify", "-journal", e.journal}, {"audit", "export", "-journal", e.journal}} {
		cmd := exec.Command(binary, args...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("treasuryd %s: exit %d; want 0\n%s%s", strings.Join(args[:2], " "), code, out.String(), errb.String())
		}
		if args[1] == "export" {
			return out.String()
		}
	}
	return ""
}

// resolve posts an operator's answer for an unresolved withdrawal.
func (e *crashEnv) resolve(d *daemon, id int64, body string) int {
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://%s/withdrawals/%d/resolve", d.addr, id), strings.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+crashAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// crashRebalanceStatus is the rebalancer's part of /status.
func crashRebalanceStatus(t *testing.T, d *daemon) withdraw.Status {
	t.Helper()
	_, body := d.get("/status")
	var st struct {
		Withdrawals withdraw.Status `json:"withdrawals"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return withdraw.Status{}
	}
	return st.Withdrawals
}

// crashWaitRuns waits until the rebalance schedule has run n more times, each
// run's outcome for the rule passing check.
func crashWaitRuns(t *testing.T, d *daemon, n int, what string, check func(withdraw.RuleStatus) bool) {
	t.Helper()
	var last time.Time
	seen := 0
	waitFor(t, time.Duration(2*n+10)*time.Second, fmt.Sprintf("%d rebalance runs with %s", n, what), func() bool {
		st := crashRebalanceStatus(t, d)
		if st.LastRun == nil || !st.LastRun.After(last) {
			return false
		}
		last = *st.LastRun
		for _, r := range st.Rules {
			if r.Name == crashRule && check(r) {
				seen++
			}
		}
		return seen >= n
	})
}

// crashDeskIDs is the set of the desk's withdrawal request ids.
func crashDeskIDs(ws []sim.SimWithdrawal) []string {
	ids := make([]string, 0, len(ws))
	for _, w := range ws {
		ids = append(ids, w.ID)
	}
	slices.Sort(ids)
	return ids
}

// crashJournalDeskIDs is the set of desk ids the journal holds.
func crashJournalDeskIDs(ws []journal.Withdrawal) []string {
	var ids []string
	for _, w := range ws {
		if w.DeskID != "" {
			ids = append(ids, w.DeskID)
		}
	}
	slices.Sort(ids)
	return ids
}

// sweptToHighWater waits until the rule has swept the balance down to its
// high-water mark with every desk request completed and the journal following
// none: the rule went on after the crash and finished.
func (e *crashEnv) sweptToHighWater(t *testing.T, d *daemon, wantDesk int) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d completed desk withdrawals and the balance at high water", wantDesk), func() bool {
		ws := e.desk.Withdrawals()
		for _, w := range ws {
			if w.Status != "completed" {
				return false
			}
		}
		st := crashRebalanceStatus(t, d)
		return len(ws) == wantDesk && e.desk.Balance("BTC").Equal(decimal.RequireFromString("3")) &&
			st.LastRun != nil && len(st.InFlight) == 0
	})
	// Below high water now: a few more runs must not add anything.
	crashWaitRuns(t, d, 2, "below_high_water", func(r withdraw.RuleStatus) bool {
		return r.Action == withdraw.ActionSkipped && r.Reason == withdraw.ReasonBelowHighWater
	})
	if n := len(e.desk.Withdrawals()); n != wantDesk {
		t.Fatalf("the desk holds %d withdrawals after the rule stopped; want %d", n, wantDesk)
	}
}

// crashAcceptsOf counts the accept bodies the desk received carrying quoteID.
func crashAcceptsOf(desk *sim.Desk, quoteID string) int {
	n := 0
	for _, b := range desk.AcceptBodies() {
		if bytes.Contains(b, []byte(`"`+quoteID+`"`)) {
			n++
		}
	}
	return n
}

// pendingAccept checks the journal of the crashed daemon holds exactly one
// accept, pending, and returns it.
func (e *crashEnv) pendingAccept(t *testing.T) journal.Accept {
	t.Helper()
	as := e.accepts(t)
	if len(as) != 1 || as[0].Result != journal.AcceptPending || as[0].QuoteID == "" {
		t.Fatalf("journal after the crash holds %+v; want exactly one pending accept", as)
	}
	return as[0]
}

// goesOnAccepting waits for the restarted daemon to accept new quotes, then
// stops it and returns the journal's record of the crashed accept.
func (e *crashEnv) goesOnAccepting(t *testing.T, d *daemon, crashed journal.Accept) journal.Accept {
	t.Helper()
	waitFor(t, 15*time.Second, "3 accepts after the restart", func() bool {
		return d.metric("treasuryd_accepts_total", `result="ok"`) >= 3
	})
	e.stop(t, d)
	var got journal.Accept
	n := 0
	for _, a := range e.accepts(t) {
		if a.QuoteID == crashed.QuoteID {
			got, n = a, n+1
		}
	}
	if n != 1 || got.ID != crashed.ID {
		t.Fatalf("the journal holds %d accepts of quote %s; want the one journaled before the crash", n, crashed.QuoteID)
	}
	if got.Result != journal.AcceptUnknown {
		t.Fatalf("accept %d (quote %s) is %q after the restart; want %q", got.ID, got.QuoteID, got.Result, journal.AcceptUnknown)
	}
	return got
}

// TestCrashKill9BetweenStepsNeverPaysTwice kills the daemon with SIGKILL in
// each window between journaling and recording the result of a withdrawal
// or an accept, restarts it, and checks the desk and the journal.
func TestCrashKill9BetweenStepsNeverPaysTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon against a desk simulator")
	}

	t.Run("withdraw-after-intent", func(t *testing.T) {
		// The intent is journaled, the POST never leaves.
		e := newCrashEnv(t, true)
		e.crash(t, "withdraw-after-intent")
		ws := e.withdrawals(t)
		if len(ws) != 1 || ws[0].State != journal.WithdrawalIntent || ws[0].DeskID != "" {
			t.Fatalf("journal after the crash: %+v; want one intent without a desk id", ws)
		}
		if n := len(e.desk.Withdrawals()); n != 0 {
			t.Fatalf("the desk holds %d withdrawals; the crash came before the POST", n)
		}
		intent := ws[0]

		// Restart within the match grace: the intent becomes unknown, is
		// looked for at the desk, not found, not re-sent, and blocks the rule.
		d := e.restart(t)
		crashWaitRuns(t, d, 3, "in_flight", func(r withdraw.RuleStatus) bool {
			return r.Action == withdraw.ActionSkipped && r.Reason == withdraw.ReasonInFlight
		})
		if n := len(e.desk.Withdrawals()); n != 0 {
			t.Fatalf("the desk holds %d withdrawals after the restart; the intent was never sent and must not be re-sent", n)
		}
		e.stop(t, d)
		ws = e.withdrawals(t)
		if len(ws) != 1 || ws[0].ID != intent.ID || ws[0].State != journal.WithdrawalUnknown || ws[0].DeskID != "" {
			t.Fatalf("journal after the restart: %+v; want the intent alone, unknown, without a desk id", ws)
		}

		// Restart past the match grace: the intent goes to an operator
		// (unresolved) and is never retried; the rule stays blocked, since
		// nobody knows yet whether the excess was paid.
		e.ageJournal(t, crashPastMatchGrace)
		d = e.restart(t)
		waitFor(t, 10*time.Second, "the intent counted as unresolved", func() bool {
			return d.metric("treasuryd_withdrawals_unresolved", `rule="`+crashRule+`"`) == 1
		})
		crashWaitRuns(t, d, 3, "unresolved", func(r withdraw.RuleStatus) bool {
			return r.Action == withdraw.ActionSkipped && strings.HasPrefix(r.Reason, withdraw.ReasonUnresolved)
		})
		if n := len(e.desk.Withdrawals()); n != 0 {
			t.Fatalf("the desk holds %d withdrawals while the crashed intent is unresolved; want 0", n)
		}

		// The operator checks the desk and answers: never executed. The rule
		// goes on with new intents and sweeps to its high-water mark.
		if c := e.resolve(d, intent.ID, `{"never_executed": true}`); c != http.StatusOK {
			t.Fatalf("resolve withdrawal %d: %d", intent.ID, c)
		}
		e.sweptToHighWater(t, d, 2)
		e.stop(t, d)
		ws = e.withdrawals(t)
		if len(ws) != 3 || ws[0].ID != intent.ID || ws[0].State != journal.WithdrawalFailed || ws[0].DeskID != "" {
			t.Fatalf("journal at the end: %+v; want the crashed intent failed (resolved as never executed) without a desk id, then two more", ws)
		}
		for _, w := range ws[1:] {
			if w.State != journal.WithdrawalCompleted || !w.Amount.Equal(decimal.NewFromInt(1)) {
				t.Fatalf("withdrawal %d after the restart: %+v; want completed, amount 1", w.ID, w)
			}
		}
		if got, want := crashJournalDeskIDs(ws), crashDeskIDs(e.desk.Withdrawals()); !slices.Equal(got, want) {
			t.Fatalf("journal desk ids %v, desk ids %v; want one journaled withdrawal per desk request", got, want)
		}
		e.reconcile(t)
	})

	t.Run("withdraw-after-post", func(t *testing.T) {
		// The desk created the request and answered; its id was never
		// recorded.
		e := newCrashEnv(t, true)
		e.crash(t, "withdraw-after-post")
		ws := e.withdrawals(t)
		if len(ws) != 1 || ws[0].State != journal.WithdrawalIntent || ws[0].DeskID != "" {
			t.Fatalf("journal after the crash: %+v; want one intent without a desk id", ws)
		}
		desk := e.desk.Withdrawals()
		if len(desk) != 1 || !desk[0].Amount.Equal(ws[0].Amount) {
			t.Fatalf("the desk holds %+v; want the one request the POST created, amount %s", desk, ws[0].Amount)
		}
		intent, created := ws[0], desk[0]

		// Restart: the intent is matched to the desk's request (by reading
		// the list), followed to completed, and the rule goes on.
		d := e.restart(t)
		e.sweptToHighWater(t, d, 2)
		e.stop(t, d)
		ws = e.withdrawals(t)
		if len(ws) != 2 || ws[0].ID != intent.ID || ws[0].DeskID != created.ID || ws[0].State != journal.WithdrawalCompleted {
			t.Fatalf("journal at the end: %+v; want the crashed intent matched to desk request %s and completed, then one more", ws, created.ID)
		}
		if got, want := crashJournalDeskIDs(ws), crashDeskIDs(e.desk.Withdrawals()); !slices.Equal(got, want) {
			t.Fatalf("journal desk ids %v, desk ids %v; want one journaled withdrawal per desk request", got, want)
		}
		e.reconcile(t)
		// The chain survived the kill -9 and covers every row.
		if export := e.auditIntact(t); strings.Count(export, `"kind":"withdrawal_intent"`) != 2 {
			t.Fatalf("the audit export holds %d withdrawal intents, want 2:\n%s", strings.Count(export, `"kind":"withdrawal_intent"`), export)
		}
	})

	// accept-after-journal: the accept is journaled pending and the POST
	// never leaves. accept-after-post: the desk booked the trade and
	// answered; the result was never journaled. With a moving price every
	// quote's quantities differ; with a constant one, the trades made after
	// the restart look exactly like the crashed one (converts carry no quote
	// id, so reconciliation can tell them apart only by time).
	for _, tc := range []struct {
		name, point, volatility string
		sent                    bool // the desk received the accept before the crash
	}{
		{name: "accept-after-journal", point: "accept-after-journal", volatility: "20"},
		// Identical quotes: the never-sent accept must not take the convert
		// of a later one that was answered ok.
		{name: "accept-after-journal-constant-price", point: "accept-after-journal", volatility: "0"},
		{name: "accept-after-post", point: "accept-after-post", volatility: "20", sent: true},
		{name: "accept-after-post-constant-price", point: "accept-after-post", volatility: "0", sent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newCrashEnvVolatility(t, false, tc.volatility)
			e.crash(t, tc.point)
			crashed := e.pendingAccept(t)
			want := 0 // accepts of the crashed quote the desk received, and converts it booked
			if tc.sent {
				want = 1
			}
			var convert sim.SimConvert
			converts := 0
			for _, c := range e.desk.Converts() {
				if c.QuoteID == crashed.QuoteID {
					convert, converts = c, converts+1
				}
			}
			if n := crashAcceptsOf(e.desk, crashed.QuoteID); n != want || converts != want || len(e.desk.AcceptBodies()) != want {
				t.Fatalf("after the crash the desk received %d accepts (%d of quote %s) and booked %d converts of it; want %d",
					len(e.desk.AcceptBodies()), n, crashed.QuoteID, converts, want)
			}

			e.auditIntact(t) // right after the kill -9

			d := e.restart(t)
			got := e.goesOnAccepting(t, d, crashed)
			// Beside the running daemon: the crashed accept, pending at the
			// kill, was marked unknown at the start, in the chain too.
			if export := e.auditIntact(t); !strings.Contains(export, `"kind":"accept_marked_unknown"`) {
				t.Fatalf("no accept_marked_unknown entry after the restart:\n%s", export)
			}
			if n := crashAcceptsOf(e.desk, crashed.QuoteID); n != want {
				t.Fatalf("the desk received %d accepts of quote %s; want %d: an accept whose outcome was lost is never re-sent",
					n, crashed.QuoteID, want)
			}

			if !tc.sent {
				// No convert can match it: reconciliation settles it as
				// missing only once no convert has appeared for 5m, so the
				// daemon is made to have been down longer than that.
				e.ageJournal(t, crashPastMissingGrace)
			}
			e.reconcile(t)
			if tc.sent { // (ageJournal edits the rows behind the chain's back)
				e.auditIntact(t)
			}
			as := e.accepts(t)
			executed := decimal.Zero
			for _, a := range as {
				if a.Counts() {
					executed = executed.Add(a.BaseQty)
				}
				if a.ID != got.ID {
					continue
				}
				wantResult, wantConvert := journal.AcceptMissing, ""
				if tc.sent {
					wantResult, wantConvert = journal.AcceptOK, convert.DisplayID
				}
				if a.Result != wantResult || a.ConvertID != wantConvert {
					t.Errorf("accept %d (quote %s) after reconcile: result %q, convert %q; want %q, convert %q",
						a.ID, a.QuoteID, a.Result, a.ConvertID, wantResult, wantConvert)
				}
			}
			sold := decimal.Zero
			for _, c := range e.desk.Converts() {
				sold = sold.Add(c.SellQty)
			}
			if !executed.Equal(sold) {
				t.Errorf("the journal counts %s BTC executed, the desk sold %s", executed, sold)
			}
		})
	}
}
