package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"treasuryd/internal/journal"
)

// The two-replica chaos soak (TREASURYD_SOAK_POSTGRES=2, SPEC 11): two
// daemons on one PostgreSQL journal and one desk, the same policy but for
// http.listen. The soak's faults hit whichever leads (kill -9, SIGTERM,
// SIGSTOP past ha.lease) and sometimes the standby; each time the leader
// goes, the standby must lead within ha.lease + 5 s and becomes the soak's
// current run. At the end, besides every check of the one-process soak:
// no quote accepted twice and no desk withdrawal tied to two intents (the
// desk's ground truth of "never two leaders acting"), leadership terms
// strictly increasing in an audit chain that `audit verify` finds intact.

// soakHALease is ha.lease in the soak's policy.
const soakHALease = 2 * time.Second

type soakHA struct {
	addr    [2]string
	policy  [2]string
	slot    int      // the leader's
	standby *soakRun // nil between a fault and the restart
	idle    []*soakRun
	// takeovers are how long each standby took to lead after the leader
	// went (kill -9, SIGSTOP, SIGTERM); promotions counts them.
	takeovers              []time.Duration
	slow                   int
	standbyFaults          map[string]int
	leaderFreezes          int
	frozenStoodDown        int
	standbysStoppedCleanly int
}

func newSoakHA(e *soakEnv) *soakHA {
	h := &soakHA{addr: [2]string{e.httpAddr, freePort(e.t)},
		policy:        [2]string{e.policyPath, filepath.Join(e.dir, "policy-b.yaml")},
		standbyFaults: map[string]int{}}
	e.t.Cleanup(func() {
		if r := h.standby; r != nil && !r.exited() {
			r.cmd.Process.Signal(syscall.SIGCONT)
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return h
}

func (h *soakHA) other() int { return 1 - h.slot }

// writeOther installs the leader's policy for the other replica, with its
// own http.listen.
func (h *soakHA) writeOther(e *soakEnv, content string) {
	mine := fmt.Sprintf("listen: %q", h.addr[h.slot])
	if !strings.Contains(content, mine) {
		e.t.Fatalf("the policy holds no %s", mine)
	}
	content = strings.Replace(content, mine, fmt.Sprintf("listen: %q", h.addr[h.other()]), 1)
	path := h.policy[h.other()]
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		e.t.Fatal(err)
	}
}

// role reads /status's role at addr ("" when it does not answer).
func (h *soakHA) role(e *soakEnv, addr string) string {
	code, body := e.get("http://" + addr + "/status")
	if code != 200 {
		return ""
	}
	var st struct {
		Role string `json:"role"`
	}
	json.Unmarshal(body, &st)
	return st.Role
}

func (h *soakHA) leads(e *soakEnv, addr string) bool {
	code, _ := e.get("http://" + addr + "/readyz")
	return code == 200 && h.role(e, addr) == "leader"
}

// ensureStandby starts a standby on the free slot unless one runs.
func (h *soakHA) ensureStandby(e *soakEnv) {
	t := e.t
	t.Helper()
	if h.standby != nil && !h.standby.exited() {
		return
	}
	addr := h.addr[h.other()]
	r := e.launch(h.policy[h.other()])
	h.standby = r
	if !poll(30*time.Second, func() bool { return r.exited() || h.role(e, addr) == "standby" }) || r.exited() {
		t.Fatalf("run %d: not a standby within 30s (exit %v); log:\n%s", r.n, r.exited(), readTail(r.logPath, 40))
	}
	if code, _ := e.get("http://" + addr + "/readyz"); code != 503 {
		t.Fatalf("run %d: the standby's /readyz answers %d; want 503", r.n, code)
	}
}

// alive fails the test if the standby died on its own.
func (h *soakHA) alive(e *soakEnv) {
	if r := h.standby; r != nil && r.exited() {
		e.t.Fatalf("standby run %d died on its own with exit code %d; log:\n%s", r.n, r.exitCode, readTail(r.logPath, 60))
	}
}

// failover waits for the standby to lead after the leader went at since
// (SPEC 8: within ha.lease + 5 s) and makes it the soak's current run.
func (h *soakHA) failover(e *soakEnv, since time.Time) {
	t := e.t
	t.Helper()
	r := h.standby
	if r == nil {
		return // none ran: startDaemon starts a leader
	}
	addr := h.addr[h.other()]
	limit := soakHALease + 5*time.Second
	if !poll(limit-time.Since(since), func() bool { return h.leads(e, addr) }) {
		h.slow++
		t.Errorf("invariant 13 / SPEC 8: standby run %d did not lead within %s (ha.lease + 5s) of the leader's end", r.n, limit)
		if !poll(45*time.Second, func() bool { return h.leads(e, addr) }) {
			t.Fatalf("standby run %d did not lead within 45s more; log:\n%s", r.n, readTail(r.logPath, 40))
		}
	}
	took := time.Since(since)
	h.takeovers = append(h.takeovers, took)
	e.logf("standby run %d leads, %s after the leader's end", r.n, took.Round(time.Millisecond))
	e.mu.Lock()
	r.start = time.Now() // runOf: its accepts belong to it from here on
	e.runs = append(e.runs, r)
	e.cur = r
	h.slot = h.other()
	e.httpAddr, e.policyPath = h.addr[h.slot], h.policy[h.slot]
	h.standby = nil
	e.mu.Unlock()
}

// beforeLeaderStop freezes the standby while the leader's SIGTERM is
// checked (a new leader's pending accepts would be no fault of the old
// one); at the final stop, it stops the standby first.
func (h *soakHA) beforeLeaderStop(e *soakEnv, what string) {
	if h.standby == nil {
		return
	}
	if what == "final" {
		h.stopStandby(e, syscall.SIGTERM)
		return
	}
	h.standby.cmd.Process.Signal(syscall.SIGSTOP)
}

func (h *soakHA) afterLeaderStop(e *soakEnv, what string) {
	if what == "final" || h.standby == nil {
		return
	}
	h.standby.cmd.Process.Signal(syscall.SIGCONT)
	h.failover(e, time.Now())
}

// stopStandby kills -9 the standby or stops it by SIGTERM (invariant 10:
// exit 0 within the shutdown timeout).
func (h *soakHA) stopStandby(e *soakEnv, sig syscall.Signal) {
	t := e.t
	t.Helper()
	r := h.standby
	h.standby = nil
	r.end, r.how = time.Now(), "standby "+sig.String()
	h.idle = append(h.idle, r)
	r.cmd.Process.Signal(sig)
	if sig == syscall.SIGKILL {
		<-r.done
		return
	}
	select {
	case <-r.done:
	case <-time.After(soakShutdownTimeout + soakStopSlack):
		r.cmd.Process.Kill()
		<-r.done
		t.Errorf("invariant 10: standby run %d did not exit within %s of SIGTERM", r.n, soakShutdownTimeout+soakStopSlack)
		return
	}
	if r.exitCode != 0 {
		t.Errorf("invariant 10: standby run %d exited %d after SIGTERM; log:\n%s", r.n, r.exitCode, readTail(r.logPath, 15))
		return
	}
	h.standbysStoppedCleanly++
}

// steps adds the two-replica faults and replaces the start-up SIGTERM by
// one of a starting standby.
func (h *soakHA) steps(e *soakEnv, steps map[string]func(), opening, weighted *[]string) {
	steps["sigterm-early"] = func() { h.stepSigtermEarly(e) }
	steps["leader-sigstop"] = func() { h.stepLeaderFreeze(e) }
	steps["standby-fault"] = func() { h.stepStandby(e) }
	*weighted = append(*weighted, "leader-sigstop", "standby-fault", "standby-fault")
	*opening = append((*opening)[:2:2], append([]string{"leader-sigstop", "standby-fault"}, (*opening)[2:]...)...)
}

// stepSigtermEarly kills -9 the leader (the standby takes over) and sends
// SIGTERM to the next standby 50-400 ms after it started.
func (h *soakHA) stepSigtermEarly(e *soakEnv) {
	h.ensureStandby(e)
	e.kill9()
	h.standby = e.launch(h.policy[h.other()])
	time.Sleep(50*time.Millisecond + time.Duration(e.rng.Int64N(int64(350*time.Millisecond))))
	if h.standby.exited() {
		e.t.Fatalf("standby run %d exited with %d on its own during start-up", h.standby.n, h.standby.exitCode)
	}
	h.stopStandby(e, syscall.SIGTERM)
	e.n.sigtermEarly++
	h.standbyFaults["sigterm during start-up"]++
	e.startDaemon()
}

// stepLeaderFreeze stops the leader past ha.lease: the standby leads within
// ha.lease + 5 s; woken, the old leader sends nothing under its lost term
// and serves as a standby again; it is then stopped by SIGTERM.
func (h *soakHA) stepLeaderFreeze(e *soakEnv) {
	t := e.t
	e.alive()
	if h.standby == nil {
		e.startDaemon()
	}
	e.scrape()
	old := e.cur
	frozen := time.Now()
	old.end, old.how = frozen, "SIGSTOP"
	old.cmd.Process.Signal(syscall.SIGSTOP)
	h.failover(e, old.end)
	time.Sleep(time.Second) // both "leaders" exist now; only one may act
	old.cmd.Process.Signal(syscall.SIGCONT)
	h.leaderFreezes++
	addr := h.addr[h.other()]
	if !poll(30*time.Second, func() bool { return old.exited() || h.role(e, addr) == "standby" }) || old.exited() {
		t.Fatalf("run %d: not a standby within 30s of SIGCONT after losing its lease (exit %v); log:\n%s",
			old.n, old.exited(), readTail(old.logPath, 40))
	}
	h.frozenStoodDown++
	h.standby = old
	h.stopStandby(e, syscall.SIGTERM)
	h.idle = h.idle[:len(h.idle)-1]      // it led: already among e.runs
	old.end, old.how = frozen, "SIGSTOP" // its term ended when it froze
	e.startDaemon()
}

// stepStandby kills -9 the standby, stops it by SIGTERM, or freezes it past
// ha.lease (the leader goes on leading); then a standby runs again.
func (h *soakHA) stepStandby(e *soakEnv) {
	t := e.t
	e.alive()
	if h.standby == nil {
		e.startDaemon()
	}
	switch e.rng.IntN(3) {
	case 0:
		h.stopStandby(e, syscall.SIGKILL)
		h.standbyFaults["kill -9"]++
	case 1:
		h.stopStandby(e, syscall.SIGTERM)
		h.standbyFaults["SIGTERM"]++
	default:
		r := h.standby
		r.cmd.Process.Signal(syscall.SIGSTOP)
		time.Sleep(soakHALease + time.Second)
		r.cmd.Process.Signal(syscall.SIGCONT)
		h.standbyFaults["SIGSTOP"]++
		if !poll(10*time.Second, func() bool { return h.role(e, h.addr[h.other()]) == "standby" }) {
			t.Fatalf("standby run %d does not serve as a standby after SIGCONT", r.n)
		}
		if !h.leads(e, e.httpAddr) {
			t.Fatalf("the leader (run %d) does not lead after the standby's SIGSTOP", e.cur.n)
		}
	}
	e.startDaemon()
}

// check verifies, from the desk and the journal, that two leaders never
// acted, and reports the takeovers.
func (h *soakHA) check(e *soakEnv) {
	t := e.t
	st := e.simState()
	quotes := map[string]int{}
	for _, c := range st.Converts {
		quotes[c.QuoteID]++
	}
	for q, n := range quotes {
		if n > 1 {
			t.Errorf("two leaders: the desk booked quote %s %d times", q, n)
		}
	}
	j, err := e.openJournal()
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ctx := context.Background()
	wds, err := j.Withdrawals(ctx, journal.WithdrawalFilter{})
	if err != nil {
		t.Fatal(err)
	}
	byDesk := map[string]int{}
	for _, w := range wds {
		if w.DeskID != "" {
			byDesk[w.DeskID]++
		}
	}
	for id, n := range byDesk {
		if n > 1 {
			t.Errorf("two leaders: desk withdrawal %s is tied to %d intents", id, n)
		}
	}
	var terms []int64
	err = j.AuditEntries(ctx, time.Time{}, func(en journal.AuditEntry) error {
		if en.Kind != journal.AuditLeadershipTerm {
			return nil
		}
		var b struct {
			Data struct {
				Term int64 `json:"term"`
			} `json:"data"`
		}
		if err := json.Unmarshal(en.Body, &b); err != nil {
			return fmt.Errorf("audit entry %d: %w", en.Seq, err)
		}
		terms = append(terms, b.Data.Term)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(terms); i++ {
		if terms[i] <= terms[i-1] {
			t.Errorf("two leaders: leadership term %d follows term %d in the audit chain", terms[i], terms[i-1])
		}
	}
	if len(terms) < len(e.runs) {
		t.Errorf("the audit chain holds %d leadership terms for %d leader runs", len(terms), len(e.runs))
	}
	code, out, errs := runCLIEnv(t, []string{soakDSNEnv + "=" + e.pgDSN}, "audit", "verify", "-postgres-dsn-env", soakDSNEnv)
	if code != 0 || !strings.Contains(out, "audit chain intact") {
		t.Errorf("audit verify on PostgreSQL: exit %d\n%s\n%s", code, out, tail(errs, 10))
	}
	var slowest time.Duration
	for _, d := range h.takeovers {
		slowest = max(slowest, d)
	}
	t.Logf(`two-replica summary: %d takeovers (slowest %s, limit %s, late %d); leader SIGSTOPs %d (stood down %d);
  standby faults %v, standbys stopped cleanly %d; leadership terms %d (strictly increasing), %d leader runs, %d standby runs never led;
  desk converts %d (no quote twice), journal withdrawals %d (no desk withdrawal twice); audit verify exit %d`,
		len(h.takeovers), slowest.Round(time.Millisecond), soakHALease+5*time.Second, h.slow, h.leaderFreezes, h.frozenStoodDown,
		h.standbyFaults, h.standbysStoppedCleanly, len(terms), len(e.runs), len(h.idle),
		len(st.Converts), len(wds), code)
	if h.leaderFreezes == 0 || len(h.standbyFaults) == 0 || len(h.takeovers) == 0 {
		t.Errorf("the two-replica soak exercised too little: %d takeovers, %d leader SIGSTOPs, standby faults %v",
			len(h.takeovers), h.leaderFreezes, h.standbyFaults)
	}
}
