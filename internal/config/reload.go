package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
)

// reloadDebounce gathers the burst of events one file update makes (a
// ConfigMap update creates a directory, a symlink, renames it and removes the
// old directory) into one reload.
const reloadDebounce = 200 * time.Millisecond

// k8sDataLink is the symlink a Kubernetes ConfigMap volume swaps atomically
// on every update; the policy file links through it.
const k8sDataLink = "..data"

// Reloader holds the running policy and replaces it, as a transaction, when
// the file changes or the process gets SIGHUP: the new file is validated as a
// whole and swapped in only if it has no problem; otherwise the running
// policy stays (SPEC 7.11).
//
// With an admission hook (SetAdmit), the running policy is not the file's
// but what the hook admits of it: the authority keeper holds back widening
// changes (SPEC 10). The hook runs on every reload after validation; its
// error refuses the reload.
type Reloader struct {
	path     string
	log      *zap.Logger
	onResult func(ok bool)
	cur      atomic.Pointer[Policy] // the policy in force (admitted)

	mu    sync.Mutex // serialises reloads, admissions and subscriber calls
	preps []func(old, new *Policy) (commit func(), err error)
	subs  []func(old, new *Policy)
	file  *Policy                             // the last valid file policy
	admit func(file *Policy) (*Policy, error) // nil: the file is in force as it is

	life   sync.Mutex // guards the running watch below
	cancel context.CancelFunc
	done   chan struct{}
}

// NewReloader returns a Reloader for the policy file at path, running
// initial. onResult, if not nil, is called with the outcome of every reload
// that validated the file (for treasuryd_config_reloads_total). It does no
// I/O.
func NewReloader(path string, initial *Policy, log *zap.Logger, onResult func(ok bool)) *Reloader {
	if log == nil {
		log = zap.NewNop()
	}
	if onResult == nil {
		onResult = func(bool) {}
	}
	r := &Reloader{path: path, log: log.With(zap.String("policy", path)), onResult: onResult, file: initial}
	r.cur.Store(initial)
	return r
}

// Current returns the running policy: the one in force. It never blocks.
func (r *Reloader) Current() *Policy { return r.cur.Load() }

// File returns the last valid policy read from the file; with an admission
// hook it may be wider than Current.
func (r *Reloader) File() *Policy {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.file
}

// SetAdmit installs the admission hook. Until the first Admit, Current is
// the file's policy with nothing payable and the compliance gate closed
// (Unadmitted), so nothing can move funds on a policy not yet admitted.
// Call it before anything reads Current to act.
func (r *Reloader) SetAdmit(fn func(file *Policy) (*Policy, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.admit = fn
	if fn != nil {
		r.cur.Store(Unadmitted(r.file))
	}
}

// Unadmitted is p with no allowlisted destination and a compliance gate that
// no proof opens (enabled, no allow region): what is in force before the
// authority keeper has judged the file.
func Unadmitted(p *Policy) *Policy {
	q := *p
	q.Withdraw.Allowlist = nil
	q.Compliance.Enabled = true
	q.Compliance.Allow = nil
	return &q
}

// Admit runs the admission hook on the last file policy now and puts the
// result in force (subscribers are told when it differs from the running
// one). The authority keeper calls it at start and when a held change
// matures. On error the running policy stays.
func (r *Reloader) Admit() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.admit == nil {
		return nil
	}
	eff, err := r.admit(r.file)
	if err != nil {
		return fmt.Errorf("admit policy: %w", err)
	}
	return r.swapLocked(eff)
}

// swapLocked puts p in force, unless it equals the running policy: every
// Prepare hook builds what it needs first (one failing refuses the swap and
// the running policy stays), then p becomes current, the commits run and
// the subscribers are told.
func (r *Reloader) swapLocked(p *Policy) error {
	old := r.cur.Load()
	if reflect.DeepEqual(old, p) {
		return nil
	}
	commits := make([]func(), 0, len(r.preps))
	for _, prep := range r.preps {
		commit, err := prep(old, p)
		if err != nil {
			return fmt.Errorf("prepare policy: %w", err)
		}
		commits = append(commits, commit)
	}
	r.cur.Store(p)
	for _, commit := range commits {
		commit()
	}
	for _, fn := range r.subs {
		fn(old, p)
	}
	return nil
}

// Subscribe registers fn to be called after each successful swap, with the
// old and the new policy, in the order of subscription. Calls are serialised;
// fn must not call Reload.
func (r *Reloader) Subscribe(fn func(old, new *Policy)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subs = append(r.subs, fn)
}

// Prepare registers fn to be called for each new policy before it is put in
// force: fn builds whatever can fail and returns the commit that puts it to
// use. When every fn succeeded the policy becomes current and the commits
// run (before the Subscribe callbacks); when one fails, the swap is refused,
// no commit runs and the running policy stays. Calls are serialised; fn must
// not call Reload.
func (r *Reloader) Prepare(fn func(old, new *Policy) (commit func(), err error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.preps = append(r.preps, fn)
}

// Reload validates the file now. A valid policy different from the running
// one is swapped in and subscribers are told; one equal to it changes
// nothing. On any problem the running policy stays, every problem is logged
// and the error (a *ValidationError for a policy problem) is returned.
func (r *Reloader) Reload() error { return r.reload("call") }

func (r *Reloader) reload(trigger string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := Load(r.path)
	if err != nil {
		// Logged here because the watch loop has no one to return it to; the
		// brief for Reload asks for both.
		var ve *ValidationError
		if errors.As(err, &ve) {
			for _, pr := range ve.Problems {
				r.log.Error("policy problem", zap.Int("line", pr.Line), zap.String("path", pr.Path), zap.String("problem", pr.Msg))
			}
			r.log.Error("policy reload refused; the running policy stays",
				zap.String("trigger", trigger), zap.Int("problems", len(ve.Problems)))
		} else {
			r.log.Error("policy reload failed; the running policy stays", zap.String("trigger", trigger), zap.Error(err))
		}
		r.onResult(false)
		return err
	}
	old := r.file
	if reflect.DeepEqual(old, p) {
		r.log.Debug("policy unchanged", zap.String("trigger", trigger))
		return nil
	}
	if changed := restartOnly(old, p); len(changed) > 0 {
		ve := &ValidationError{File: r.path}
		for _, c := range changed {
			ve.Problems = append(ve.Problems, Problem{Path: c, Msg: "changes take effect only on restart; restart the daemon to apply them"})
		}
		r.log.Error("policy reload refused; the running policy stays",
			zap.String("trigger", trigger), zap.Strings("restart_only", changed))
		r.onResult(false)
		return ve
	}
	eff := p
	if r.admit != nil {
		var err error
		if eff, err = r.admit(p); err != nil {
			// Fail closed: what is held and what is in force cannot be
			// known without the journal, so nothing of the file applies.
			r.log.Error("policy reload refused; the running policy stays",
				zap.String("trigger", trigger), zap.Error(err))
			r.onResult(false)
			return fmt.Errorf("admit policy: %w", err)
		}
	}
	if err := r.swapLocked(eff); err != nil {
		r.log.Error("policy reload refused: preparing it failed; the running policy stays",
			zap.String("trigger", trigger), zap.Error(err))
		r.onResult(false)
		return err
	}
	r.file = p
	r.log.Info("policy reloaded", zap.String("trigger", trigger))
	r.onResult(true)
	return nil
}

// Start reloads on SIGHUP and whenever the file's directory changes in a way
// that can change the file (the file itself or the ConfigMap "..data" link is
// created, written, renamed or removed). It returns at once; Stop ends it.
func (r *Reloader) Start(ctx context.Context) error {
	r.life.Lock()
	defer r.life.Unlock()
	if r.cancel != nil {
		return errors.New("config reloader already started")
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch policy: %w", err)
	}
	dir := filepath.Dir(r.path)
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return fmt.Errorf("watch policy directory %s: %w", dir, err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	// The loop outlives Start's context (fx cancels it once start is done).
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r.cancel = cancel
	r.done = make(chan struct{})
	go r.loop(loopCtx, w, hup, r.done)
	r.log.Info("watching policy", zap.String("dir", dir))
	return nil
}

// Stop ends the watch and the SIGHUP handling. It is safe to call twice.
func (r *Reloader) Stop(ctx context.Context) error {
	r.life.Lock()
	cancel, done := r.cancel, r.done
	r.cancel, r.done = nil, nil
	r.life.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop config reloader: %w", ctx.Err())
	}
}

func (r *Reloader) loop(ctx context.Context, w *fsnotify.Watcher, hup chan os.Signal, done chan struct{}) {
	defer close(done)
	defer func() { _ = w.Close() }()
	defer signal.Stop(hup)
	base := filepath.Base(r.path)
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	events, errs := w.Events, w.Errors
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_ = r.reload("sighup")
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			name := filepath.Base(ev.Name)
			if (name == base || name == k8sDataLink) && ev.Op&(fsnotify.Create|fsnotify.Write|fsnotify.Remove|fsnotify.Rename) != 0 {
				debounce.Reset(reloadDebounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			r.log.Warn("policy watch error", zap.Error(err))
		case <-debounce.C:
			_ = r.reload("file change")
		}
	}
}
