package main

// Substitution (SPEC 5.3, 7.14), end to end on the real binary: the desk
// books one of treasuryd's withdrawals to another address. treasuryd pauses
// itself (reason withdrawal_mismatch, persisted), sends no other withdrawal
// and no accept (the simulator's ground truth), stays paused across a
// restart, and resumes only by an operator's /resume — on the admin
// listener, since http.admin_listen is set, not on http.listen.

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"treasuryd/internal/sim"
)

type pauseStatus struct {
	Paused      bool   `json:"paused"`
	PauseReason string `json:"pause_reason"`
}

func statusPause(d *daemon) pauseStatus {
	var st pauseStatus
	_, body := d.get("/status")
	json.Unmarshal([]byte(body), &st)
	return st
}

func adminPost(addr, path string) int {
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+crashAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestWithdrawalMismatchPausesTheDaemonUntilAnOperatorResumes(t *testing.T) {
	e := newCrashEnv(t, true)
	admin := freePort(t)
	raw, err := os.ReadFile(e.policy)
	if err != nil {
		t.Fatal(err)
	}
	policy := strings.Replace(string(raw), "admin_token_env:", `admin_listen: "`+admin+`", admin_token_env:`, 1)
	// A program whose limit every quote crosses: accepts flow until paused.
	policy += `programs:
  - { name: "sell-btc", base: BTC, quote: USD, side: sell, size: "0.01", limit_price: "1", cooldown: 0s, min_validity: 100ms, reserve: "0" }
`
	if err := os.WriteFile(e.policy, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	e.desk.SubstituteNextWithdrawals(1, sim.Substitution{Address: sim.SubstituteAddress})

	d := e.restart(t)
	waitFor(t, 30*time.Second, "treasuryd paused for withdrawal_mismatch", func() bool {
		st := statusPause(d)
		return st.Paused && st.PauseReason == "withdrawal_mismatch"
	})
	if got := d.metric("treasuryd_paused"); got != 1 {
		t.Fatalf("treasuryd_paused = %v", got)
	}
	// What was in flight when it paused lands; then nothing more moves.
	time.Sleep(500 * time.Millisecond)
	withdrawals, accepts := e.desk.Withdrawals(), len(e.desk.AcceptBodies())
	if len(withdrawals) != 1 || withdrawals[0].Address != sim.SubstituteAddress {
		t.Fatalf("desk withdrawals %+v; want the one substituted", withdrawals)
	}
	if accepts == 0 {
		t.Fatal("no accept before the pause: the check below would prove nothing")
	}
	time.Sleep(3 * time.Second) // three rebalance runs, ~15 quotes
	if n, a := len(e.desk.Withdrawals()), len(e.desk.AcceptBodies()); n != 1 || a != accepts {
		t.Fatalf("while paused the desk got %d more withdrawals and %d more accepts", n-1, a-accepts)
	}

	// The admin routes are not on http.listen.
	if code := d.post("/resume", crashAdminToken); code != http.StatusNotFound && code != http.StatusMethodNotAllowed {
		t.Fatalf("POST /resume on http.listen: %d; want 404 or 405", code)
	}
	if !statusPause(d).Paused {
		t.Fatal("resumed through http.listen")
	}

	// A restart keeps the pause and its reason.
	e.stop(t, d)
	d = e.restart(t)
	if st := statusPause(d); !st.Paused || st.PauseReason != "withdrawal_mismatch" {
		t.Fatalf("after a restart: %+v", st)
	}

	// An operator resumes on the admin listener: the rule sweeps on, to the
	// allowlisted address, and the mismatch already handled does not pause
	// again.
	if code := adminPost(admin, "/resume"); code != http.StatusOK {
		t.Fatalf("POST /resume on http.admin_listen: %d", code)
	}
	waitFor(t, 20*time.Second, "a second withdrawal, to the allowlisted address", func() bool {
		ws := e.desk.Withdrawals()
		return len(ws) >= 2 && ws[1].Address == crashAddress
	})
	time.Sleep(2 * time.Second)
	if st := statusPause(d); st.Paused {
		t.Fatalf("paused again after the resume: %+v", st)
	}
	e.stop(t, d)
}
