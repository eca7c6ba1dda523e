package main

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// startupMilestones are the log lines that mark the way from process start
// to the first decision, in the order they normally appear.
var startupMilestones = []string{
	"sandbox: simulators started",
	"strategy started",
	"http listening",
	"quote stream connected",
	"first balance fetch done",
	"compliance gate opened",
	"quote accepted",
}

// TestSandboxFirstDecisionUnderOneSecond measures SPEC 8's "sandbox start to
// first decision": from starting the process to the first quote decision
// counted in /metrics (polled every 10 ms, so the figure is an upper bound by
// up to one poll and one scrape). The SPEC target is 1 s; the test asserts a
// generous 10 s because shared CI machines are noisy, and logs the measured
// figure with a breakdown taken from the daemon's own log timestamps.
func TestSandboxFirstDecisionUnderOneSecond(t *testing.T) {
	dir := t.TempDir()
	policy, addr := sandboxPolicy(t, dir)
	const bound = 10 * time.Second

	start := time.Now()
	d := startDaemon(t, policy, addr)
	var first time.Duration
	var outcomes []string
	for {
		if outcomes = decisionOutcomes(d); len(outcomes) > 0 {
			first = time.Since(start)
			break
		}
		if time.Since(start) > bound {
			t.Fatalf("no decision within %s of process start", bound)
		}
		select {
		case <-d.done:
			t.Fatalf("daemon exited before its first decision: %v", d.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The log lines are read asynchronously; wait until the streams'
	// connection is in, which precedes any decision.
	waitFor(t, 5*time.Second, "the stream log line", func() bool {
		return strings.Contains(d.Logs(), `"quote stream connected"`)
	})
	// Not the SPEC figure, but what an operator sees next: the first accept.
	// A first decision that is not an accept (gate or balances not in yet)
	// puts it one quote interval later.
	waitFor(t, bound, "the first accept", func() bool { return strings.Contains(d.Logs(), `"quote accepted"`) })
	at := firstLogTimes(d.Logs())
	var b strings.Builder
	for _, m := range startupMilestones {
		if ts, ok := at[m]; ok {
			fmt.Fprintf(&b, "\n  %-28s +%s", m, ts.Sub(start).Round(100*time.Microsecond))
		}
	}
	t.Logf("process start to first decision in /metrics: %s (SPEC 8 target 1s), outcome %s; log milestones since process start:%s",
		first.Round(time.Millisecond), strings.Join(outcomes, ", "), b.String())
	if _, ok := at["quote stream connected"]; !ok {
		t.Errorf("the log has no quote stream connected line")
	}
}

// decisionOutcomes lists the decision counters of /metrics that are above
// zero, as program/outcome=count.
func decisionOutcomes(d *daemon) []string {
	_, body := d.get("/metrics")
	var out []string
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, "treasuryd_quote_decisions_total{") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 || f[1] == "0" {
			continue
		}
		out = append(out, strings.TrimPrefix(f[0], "treasuryd_quote_decisions_total")+"="+f[1])
	}
	return out
}

// firstLogTimes maps each message of a JSON log to the time of its first
// line (zap's "ts" is seconds since the epoch as a float).
func firstLogTimes(logs string) map[string]time.Time {
	out := map[string]time.Time{}
	for _, line := range strings.Split(logs, "\n") {
		var rec struct {
			TS  float64 `json:"ts"`
			Msg string  `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg == "" || rec.TS == 0 {
			continue
		}
		if _, seen := out[rec.Msg]; !seen {
			sec, frac := math.Modf(rec.TS)
			out[rec.Msg] = time.Unix(int64(sec), int64(frac*1e9))
		}
	}
	return out
}
