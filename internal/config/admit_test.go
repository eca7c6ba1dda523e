package config

import (
	"errors"
	"path/filepath"
	"testing"
)

// TestAdmissionHookDecidesWhatIsInForce: with a hook, Current is what the
// hook admits of the file (before the first admission: nothing payable, the
// gate closed); a hook error refuses the reload, counts it, and keeps the
// running policy and the last file.
func TestAdmissionHookDecidesWhatIsInForce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyWithLimit("64000"))
	r, res, _ := newTestReloader(t, path)
	var fail error
	var seen []string
	r.SetAdmit(func(file *Policy) (*Policy, error) {
		if fail != nil {
			return nil, fail
		}
		seen = append(seen, limitOf(file))
		q := *file
		q.DryRun = true // mark what the hook made
		return &q, nil
	})
	if cur := r.Current(); !cur.Compliance.Enabled || len(cur.Compliance.Allow) != 0 || len(cur.Withdraw.Allowlist) != 0 {
		t.Fatalf("before admission Current = %+v; want nothing payable and the gate closed", cur)
	}
	var told []*Policy
	r.Subscribe(func(_, p *Policy) { told = append(told, p) })
	if err := r.Admit(); err != nil {
		t.Fatal(err)
	}
	if cur := r.Current(); !cur.DryRun || limitOf(cur) != "64000" || len(told) != 1 {
		t.Fatalf("after Admit: Current %+v, subscribers told %d times", cur, len(told))
	}

	writeFile(t, path, policyWithLimit("65000"))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if cur := r.Current(); !cur.DryRun || limitOf(cur) != "65000" || limitOf(r.File()) != "65000" {
		t.Fatalf("after reload: Current %s dry %v, file %s", limitOf(cur), cur.DryRun, limitOf(r.File()))
	}

	fail = errors.New("journal unavailable")
	before := r.Current()
	writeFile(t, path, policyWithLimit("66000"))
	if err := r.Reload(); !errors.Is(err, fail) {
		t.Fatalf("Reload = %v, want the hook's error", err)
	}
	if r.Current() != before || limitOf(r.File()) != "65000" || res.failed.Load() != 1 {
		t.Errorf("after a refused admission: Current %s, file %s, failed %d", limitOf(r.Current()), limitOf(r.File()), res.failed.Load())
	}
	if err := r.Admit(); !errors.Is(err, fail) || r.Current() != before {
		t.Errorf("Admit with a failing hook: %v; the running policy must stay", err)
	}
	if got := len(seen); got != 2 {
		t.Errorf("the hook judged %d files, want 2", got)
	}
}
