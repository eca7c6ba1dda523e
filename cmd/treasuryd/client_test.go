package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestStatusSummaryShowsEverySection: the human summary of `treasuryd
// status` shows the optional sections when the daemon reports them, and
// every amount exactly as sent.
func TestStatusSummaryShowsEverySection(t *testing.T) {
	const doc = `{"time": "2026-12-07T01:00:00Z", "role": "standby",
	  "paused": true, "pause": {"paused": true, "reason": "withdrawal_mismatch"},
	  "programs": [{"name": "sell-btc", "stream_up": true, "last_quote_price": "64123.123456789012345", "limit_price": "64900",
	    "last_outcome": "paused", "executed": "0.300000000000000001", "target": "1", "daily_notional": "19500.5",
	    "max_daily_notional": "500000", "average_price": "65001.12345678", "in_flight": true, "dry_run": false}],
	  "compliance": {"open": false, "reason": "too_old", "proof_uid": "0xabc", "proof_age_seconds": 90000, "max_proof_age_seconds": 86400},
	  "withdrawals": {"in_flight": [], "unresolved": [{"id": 42, "rule": "btc-to-cold", "asset": "BTC", "amount": "0.123456789012345678",
	    "network": "bitcoin", "address": "bc1qunresolved", "state": "unresolved"}]},
	  "reconciliation": {"at": "2026-12-07T00:58:00Z", "clean": false, "breaks": {"unexpected_withdrawal": 1}, "transactions": 1234},
	  "authority": {"pending": [{"kind": "allowlist", "item": "BTC bitcoin bc1qnew", "diff": "+ bc1qnew", "effective_at": "2026-12-08T00:00:00Z"}]},
	  "audit": {"head": {"sequence": 9876, "hash": "5f2c"}}}`
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	writeSummary(&b, "http://127.0.0.1:8080", m)
	out := b.String()
	for _, want := range []string{
		"role:            standby",
		"kill switch:     PAUSED: no accept and no withdrawal (withdrawal_mismatch)",
		"compliance gate: CLOSED (too_old), proof 0xabc, age 25h0m0s of 24h0m0s",
		"64123.123456789012345", "64900", "paused (accept in flight)", "0.300000000000000001", "19500.5", "500000", "65001.12345678",
		"withdrawals: 0 in flight, 1 unresolved", "UNRESOLVED", "#42", "0.123456789012345678 BTC", "docs/runbook.md#treasurydwithdrawalsunresolved",
		"reconciliation: BREAKS at 2026-12-07T00:58:00Z, 1234 transactions", "unexpected_withdrawal: 1",
		"pending authority changes: 1", "allowlist", "effective at 2026-12-08T00:00:00Z",
		"audit chain head: #9876 5f2c",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestBaseURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"127.0.0.1:8080", "http://127.0.0.1:8080"},
		{"http://h:1/", "http://h:1"},
		{"https://h/prefix/", "https://h/prefix"},
		{"ftp://h", ""},
		{"http://user:pw@h", ""},
		{"http://", ""},
	} {
		got, err := baseURL(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want && tc.want != "" {
			t.Errorf("baseURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
