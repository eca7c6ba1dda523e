package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// replayJSON is the SPEC shape of `treasuryd replay -json`.
type replayJSON struct {
	Programs []struct {
		Name         *string          `json:"name"`
		Quotes       *int64           `json:"quotes"`
		Outcomes     map[string]int64 `json:"outcomes"`
		Accepts      *int64           `json:"accepts"`
		BaseExecuted *string          `json:"base_executed"`
		AveragePrice *string          `json:"average_price"`
		Differing    int64            `json:"differing"`
		Actual       *struct {
			Accepts      *int64  `json:"accepts"`
			BaseExecuted *string `json:"base_executed"`
		} `json:"actual"`
	} `json:"programs"`
}

// TestReplayJSONOfASandboxRunReproducesItsDecisions runs the sandbox for a
// few seconds with quotes every 45ms (so no cooldown or window ends on a
// quote), stops it, and replays its own policy over its journal: one JSON
// object with the SPEC fields, every program's outcomes as recorded and its
// accepts and base executed as done.
func TestReplayJSONOfASandboxRunReproducesItsDecisions(t *testing.T) {
	dir := t.TempDir()
	path, addr := sandboxPolicy(t, dir, func(s string) string {
		return strings.Replace(s, "quote_interval: 1s", "quote_interval: 45ms", 1)
	})
	d := startDaemon(t, path, addr)
	waitFor(t, 30*time.Second, "an accept and 100 decisions", func() bool {
		return d.metric("treasuryd_quote_decisions_total", `outcome="accepted"`) >= 1 &&
			d.metric("treasuryd_quote_decisions_total") >= 100
	})
	if code, _ := d.stop(t, syscall.SIGTERM, 10*time.Second); code != 0 {
		t.Fatalf("daemon exit %d", code)
	}
	code, out, errs := runCLI(t, "replay", "-config", path, "-json")
	if code != 0 {
		t.Fatalf("replay -json: exit %d, stderr %q", code, errs)
	}
	if errs != "" {
		t.Errorf("replay wrote to stderr, which is not a terminal: %q", errs)
	}
	var rep replayJSON
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("replay -json output is not JSON: %v\n%s", err, out)
	}
	if dec.More() {
		t.Fatalf("replay -json printed more than one object:\n%s", out)
	}
	if len(rep.Programs) != 2 {
		t.Fatalf("%d programs, want the sandbox's 2:\n%s", len(rep.Programs), out)
	}
	amount := func(what string, s *string) decimal.Decimal {
		t.Helper()
		if s == nil {
			t.Fatalf("%s missing:\n%s", what, out)
		}
		v, err := decimal.NewFromString(*s)
		if err != nil {
			t.Fatalf("%s = %q is not a decimal string", what, *s)
		}
		return v
	}
	accepted := int64(0)
	for _, p := range rep.Programs {
		if p.Name == nil || p.Quotes == nil || p.Outcomes == nil || p.Accepts == nil || p.Actual == nil || p.Actual.Accepts == nil {
			t.Fatalf("a program lacks a SPEC field:\n%s", out)
		}
		var sum int64
		for _, n := range p.Outcomes {
			sum += n
		}
		if *p.Quotes == 0 || sum != *p.Quotes || p.Differing != 0 {
			t.Fatalf("%s: %d quotes, outcomes %v, %d differing: the live policy must replay as decided\n%s",
				*p.Name, *p.Quotes, p.Outcomes, p.Differing, out)
		}
		base, actualBase := amount("base_executed", p.BaseExecuted), amount("actual.base_executed", p.Actual.BaseExecuted)
		if *p.Accepts != *p.Actual.Accepts || !base.Equal(actualBase) {
			t.Fatalf("%s: replayed %d accepts of %s base, the daemon %d of %s", *p.Name, *p.Accepts, base, *p.Actual.Accepts, actualBase)
		}
		if *p.Accepts > 0 {
			amount("average_price", p.AveragePrice)
		}
		accepted += *p.Accepts
	}
	if accepted == 0 {
		t.Fatalf("no accepts replayed although the daemon accepted:\n%s", out)
	}

	// The table names every program; -program narrows to one.
	code, table, _ := runCLI(t, "replay", "-config", path)
	if code != 0 || !strings.Contains(table, "sell-btc") || !strings.Contains(table, "buy-eth") {
		t.Fatalf("replay table: exit %d\n%s", code, table)
	}
	code, out, _ = runCLI(t, "replay", "-config", path, "-program", "buy-eth", "-json", "-since", "1h")
	rep = replayJSON{}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || len(rep.Programs) != 1 || *rep.Programs[0].Name != "buy-eth" {
		t.Fatalf("replay -program buy-eth: exit %d, %v\n%s", code, err, out)
	}
}

func TestReplayExitCodes(t *testing.T) {
	dir := t.TempDir()
	good, _ := sandboxPolicy(t, dir)
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("account_id: 42\nnonsense: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"the policy's journal does not exist", []string{"-config", good}, 1},
		{"the -journal does not exist", []string{"-config", good, "-journal", filepath.Join(dir, "nope", "j.db")}, 1},
		{"a bad policy", []string{"-config", bad}, 2},
		{"a program the policy does not have", []string{"-config", good, "-program", "nope"}, 2},
		{"a bad -since", []string{"-config", good, "-since", "yesterday"}, 2},
		{"no -config", nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(t, append([]string{"replay"}, tt.args...)...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, tt.want, out, errs)
			}
			if out != "" {
				t.Errorf("stdout %q on failure", out)
			}
		})
	}
}
