package sim

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestSubstitutedWithdrawalsAreBookedAndReportedOtherwise: the substitution
// fault, by the Go API, the test API and the random fault, changes what the
// desk books and reports; the next request is honest again.
func TestSubstitutedWithdrawalsAreBookedAndReportedOtherwise(t *testing.T) {
	d, _ := startDesk(t)
	root := strings.TrimSuffix(d.BaseURL(), "/v2")
	body := `{"instrumentSymbol":"BTC","amount":"0.5","network":"bitcoin","address":"bc1qdest"}`

	d.SubstituteNextWithdrawals(1, Substitution{})
	id := createWithdrawal(t, d, body)
	if w := withdrawalStatus(t, d, id); w.Address != SubstituteAddress || w.Amount != "0.5" {
		t.Fatalf("substituted address: desk reports %+v", w)
	}
	if resp, b := do(t, "POST", root+"/_sim/substitute-withdrawals", "", []byte(`{"n":1,"amount":"0.7"}`)); resp.StatusCode != 200 {
		t.Fatalf("POST /_sim/substitute-withdrawals: %d %s", resp.StatusCode, b)
	}
	id = createWithdrawal(t, d, body)
	if w := withdrawalStatus(t, d, id); w.Address != "bc1qdest" || w.Amount != "0.7" {
		t.Fatalf("substituted amount: desk reports %+v", w)
	}
	if !d.Balance("BTC").Equal(dec("3.8")) {
		t.Fatalf("the desk did not book what it reports: BTC %s, want 5 - 0.5 - 0.7", d.Balance("BTC"))
	}
	id = createWithdrawal(t, d, body)
	if w := withdrawalStatus(t, d, id); w.Address != "bc1qdest" || w.Amount != "0.5" {
		t.Fatalf("after the substitutions: desk reports %+v", w)
	}
	if resp, _ := do(t, "POST", root+"/_sim/substitute-withdrawals", "", []byte(`{"n":0}`)); resp.StatusCode != 400 {
		t.Fatalf("n 0 accepted: %d", resp.StatusCode)
	}

	if resp, b := do(t, "POST", root+"/_sim/faults", "", []byte(`{"withdrawSubstitute":1}`)); resp.StatusCode != 200 {
		t.Fatalf("POST /_sim/faults: %d %s", resp.StatusCode, b)
	}
	id = createWithdrawal(t, d, body)
	if w := withdrawalStatus(t, d, id); w.Address != SubstituteAddress {
		t.Fatalf("random substitution at probability 1: desk reports %+v", w)
	}
	var f Faults
	if b, _ := json.Marshal(d.CurrentFaults()); json.Unmarshal(b, &f) != nil || f.WithdrawSubstitute != 1 {
		t.Fatalf("faults round trip: %s", b)
	}
	if err := json.Unmarshal([]byte(`{"withdrawSubstitute":1.5}`), &f); err == nil {
		t.Fatal("probability 1.5 accepted")
	}
}
