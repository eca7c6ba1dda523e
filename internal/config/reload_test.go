package config

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// policyWithLimit is a valid policy whose only varying value is one
// program's limit price.
func policyWithLimit(limit string) string {
	return `account_id: "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"
sandbox: {}
programs:
  - name: sell-btc
    base: BTC
    quote: USD
    side: sell
    size: "0.5"
    limit_price: "` + limit + `"
`
}

// badPolicy has two problems.
const badPolicy = `account_id: "3b7a5c1e-0f4e-4a51-9a6e-1f0c2d3e4f50"
sandbox: {}
programs:
  - name: sell-btc
    base: BTC
    quote: USD
    side: sideways
    size: 0.5
    limit_price: "64000"
`

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// results counts onResult calls.
type results struct{ ok, failed atomic.Int64 }

func (r *results) record(ok bool) {
	if ok {
		r.ok.Add(1)
	} else {
		r.failed.Add(1)
	}
}

// newTestReloader loads path and builds a Reloader over it with an observed log.
func newTestReloader(t *testing.T, path string) (*Reloader, *results, *observer.ObservedLogs) {
	t.Helper()
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	res := &results{}
	return NewReloader(path, p, zap.New(core), res.record), res, logs
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func limitOf(p *Policy) string { return p.Programs[0].LimitPrice.String() }

func TestReloadSwapsAValidChangeAndNotifiesSubscribersInOrder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyWithLimit("64000"))
	r, res, _ := newTestReloader(t, path)
	first := r.Current()

	var mu sync.Mutex
	var calls []string
	for _, name := range []string{"a", "b"} {
		r.Subscribe(func(old, new *Policy) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, name+":"+limitOf(old)+"->"+limitOf(new))
		})
	}

	writeFile(t, path, policyWithLimit("65000"))
	if err := r.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := limitOf(r.Current()); got != "65000" {
		t.Errorf("Current limit = %s, want 65000", got)
	}
	if limitOf(first) != "64000" {
		t.Errorf("the old policy value was mutated")
	}
	if want := "a:64000->65000 b:64000->65000"; strings.Join(calls, " ") != want {
		t.Errorf("subscriber calls = %v, want %s", calls, want)
	}
	if res.ok.Load() != 1 || res.failed.Load() != 0 {
		t.Errorf("onResult ok=%d failed=%d, want 1/0", res.ok.Load(), res.failed.Load())
	}
}

func TestReloadRefusesAnInvalidPolicyAndKeepsTheRunningOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyWithLimit("64000"))
	r, res, logs := newTestReloader(t, path)
	running := r.Current()
	called := false
	r.Subscribe(func(_, _ *Policy) { called = true })

	writeFile(t, path, badPolicy)
	err := r.Reload()
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 2 {
		t.Fatalf("Reload = %v, want a *ValidationError with 2 problems", err)
	}
	if r.Current() != running {
		t.Error("an invalid policy replaced the running one")
	}
	if called {
		t.Error("subscriber called for a refused reload")
	}
	if res.failed.Load() != 1 || res.ok.Load() != 0 {
		t.Errorf("onResult ok=%d failed=%d, want 0/1", res.ok.Load(), res.failed.Load())
	}
	logged := logs.FilterMessage("policy problem").All()
	if len(logged) != 2 {
		t.Fatalf("logged %d problems, want 2", len(logged))
	}
	for i, p := range ve.Problems {
		f := logged[i].ContextMap()
		if f["path"] != p.Path || f["line"] != int64(p.Line) {
			t.Errorf("log %d = %v, want path %s line %d", i, f, p.Path, p.Line)
		}
	}

	// A missing file is refused the same way.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err == nil || r.Current() != running || res.failed.Load() != 2 {
		t.Errorf("reload of a missing file: err %v, failed %d", err, res.failed.Load())
	}
}

// TestReloadPreparesBeforeTheSwap: what a reload builds is built while the
// old policy is still current, and a failure to build it refuses the reload.
func TestReloadPreparesBeforeTheSwap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyWithLimit("64000"))
	r, res, _ := newTestReloader(t, path)
	running := r.Current()
	var calls []string
	fail := errors.New("journal unreadable")
	var prepErr error
	r.Prepare(func(old, new *Policy) (func(), error) {
		calls = append(calls, "prepare current="+limitOf(r.Current())+" new="+limitOf(new))
		if prepErr != nil {
			return nil, prepErr
		}
		return func() { calls = append(calls, "commit current="+limitOf(r.Current())) }, nil
	})
	r.Subscribe(func(_, _ *Policy) { calls = append(calls, "subscriber") })

	prepErr = fail
	writeFile(t, path, policyWithLimit("65000"))
	if err := r.Reload(); !errors.Is(err, fail) {
		t.Fatalf("Reload = %v, want the prepare error", err)
	}
	if r.Current() != running || res.failed.Load() != 1 {
		t.Fatalf("a reload whose prepare failed replaced the running policy (failed=%d)", res.failed.Load())
	}
	prepErr = nil
	calls = nil
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	want := "prepare current=64000 new=65000|commit current=65000|subscriber"
	if got := strings.Join(calls, "|"); got != want {
		t.Errorf("calls = %s, want %s", got, want)
	}
}

func TestReloadOfAnEqualPolicyDoesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyWithLimit("64000"))
	r, res, _ := newTestReloader(t, path)
	running := r.Current()
	called := false
	r.Subscribe(func(_, _ *Policy) { called = true })

	writeFile(t, path, "# only a comment changed\n"+policyWithLimit("64000"))
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if r.Current() != running || called || res.ok.Load() != 0 || res.failed.Load() != 0 {
		t.Errorf("equal reload swapped=%v called=%v ok=%d failed=%d", r.Current() != running, called, res.ok.Load(), res.failed.Load())
	}
}

// configMapDir lays out a directory the way a Kubernetes ConfigMap volume
// does: policy.yaml -> ..data/policy.yaml, ..data -> ..<version>/.
type configMapDir struct {
	t   *testing.T
	dir string
	n   int
}

func newConfigMapDir(t *testing.T, body string) *configMapDir {
	d := &configMapDir{t: t, dir: t.TempDir()}
	d.update(body)
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), d.path()); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *configMapDir) path() string { return filepath.Join(d.dir, "policy.yaml") }

// update writes a new version directory and swaps ..data to it atomically,
// then removes the previous version, as the kubelet does.
func (d *configMapDir) update(body string) {
	t := d.t
	t.Helper()
	d.n++
	version := "..2026_" + string(rune('0'+d.n))
	if err := os.Mkdir(filepath.Join(d.dir, version), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(d.dir, version, "policy.yaml"), body)
	tmp := filepath.Join(d.dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if d.n > 1 {
		if err := os.RemoveAll(filepath.Join(d.dir, "..2026_"+string(rune('0'+d.n-1)))); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWatcherReloadsOnAConfigMapSymlinkSwap(t *testing.T) {
	cm := newConfigMapDir(t, policyWithLimit("64000"))
	r, res, _ := newTestReloader(t, cm.path())
	var notified atomic.Int64
	r.Subscribe(func(_, _ *Policy) { notified.Add(1) })
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })

	cm.update(policyWithLimit("65000"))
	eventually(t, "the new limit to be running", func() bool { return limitOf(r.Current()) == "65000" })
	if notified.Load() != 1 || res.ok.Load() != 1 {
		t.Errorf("after a valid swap: notified %d, ok %d; want 1, 1", notified.Load(), res.ok.Load())
	}

	running := r.Current()
	cm.update(badPolicy)
	eventually(t, "the invalid swap to be refused", func() bool { return res.failed.Load() >= 1 })
	if r.Current() != running || notified.Load() != 1 {
		t.Errorf("an invalid swap changed the running policy (limit %s) or notified", limitOf(r.Current()))
	}

	// A later valid swap is taken again.
	cm.update(policyWithLimit("66000"))
	eventually(t, "the limit 66000 to be running", func() bool { return limitOf(r.Current()) == "66000" })

	if err := r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
}

func TestSIGHUPReloads(t *testing.T) {
	// The file the reloader watches links to a file in another directory,
	// so editing that file makes no event in the watched directory: only
	// the signal can trigger this reload.
	target := filepath.Join(t.TempDir(), "real.yaml")
	writeFile(t, target, policyWithLimit("64000"))
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	r, res, _ := newTestReloader(t, path)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop(context.Background()) })

	writeFile(t, target, policyWithLimit("65000"))
	// Start has run signal.Notify for SIGHUP, so the signal is captured and
	// does not terminate the test binary.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the SIGHUP reload", func() bool { return limitOf(r.Current()) == "65000" })
	if res.ok.Load() != 1 {
		t.Errorf("onResult ok = %d, want 1", res.ok.Load())
	}
}

func TestStartTwiceIsRefusedAndStopWithoutStartIsFine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyWithLimit("64000"))
	r, _, _ := newTestReloader(t, path)
	if err := r.Stop(context.Background()); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}
