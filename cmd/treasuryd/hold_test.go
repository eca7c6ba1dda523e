package main

// One writer (SPEC 5.6): a second `treasuryd run` on a journal a running
// treasuryd holds exits 1 at once naming the holder, and the holder goes on
// untouched; the hold dies with its process, so after kill -9 a restart is
// never refused.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSecondDaemonOnAHeldJournalExitsOneNamingTheHolder(t *testing.T) {
	e := newCrashEnv(t, true)
	first := e.restart(t)

	// The same policy on another port: only the journal is shared.
	raw, err := os.ReadFile(e.policy)
	if err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(t.TempDir(), "second.yaml")
	if err := os.WriteFile(second, bytes.Replace(raw, []byte(e.addr), []byte(freePort(t)), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "run", "-config", second)
	cmd.Env = append(os.Environ(), e.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	cmd.Run()
	took := time.Since(start)
	if code := cmd.ProcessState.ExitCode(); code != exitRuntime {
		t.Fatalf("second treasuryd run on a held journal: exit %d after %s; want %d\n%s", code, took, exitRuntime, tail(stderr.String(), 20))
	}
	want := fmt.Sprintf("held by another running treasuryd (pid %d, started ", first.cmd.Process.Pid)
	if !strings.Contains(stderr.String(), want) {
		t.Fatalf("the refusal does not name the holder (%q):\n%s", want, tail(stderr.String(), 20))
	}
	if took > 10*time.Second {
		t.Fatalf("refused only after %s", took)
	}

	// The first goes on, healthy, and the one-shot subcommands work beside it.
	select {
	case <-first.done:
		t.Fatalf("the holder exited: %v", first.err)
	default:
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := first.get(path); code != 200 {
			t.Fatalf("holder %s: %d %s", path, code, body)
		}
	}
	rc := exec.Command(binary, "reconcile", "-config", e.policy)
	rc.Env = append(os.Environ(), e.env...)
	var rcErr bytes.Buffer
	rc.Stderr = &rcErr
	rc.Run()
	if code := rc.ProcessState.ExitCode(); code != exitOK && code != exitBreaks || strings.Contains(rcErr.String(), "held by") {
		t.Fatalf("treasuryd reconcile beside the daemon: exit %d\n%s", code, tail(rcErr.String(), 20))
	}

	// kill -9: the kernel drops the hold with the process.
	first.cmd.Process.Signal(syscall.SIGKILL)
	<-first.done
	again := e.restart(t)
	if strings.Contains(again.Logs(), "held by") {
		t.Fatalf("restart after kill -9 refused:\n%s", tail(again.Logs(), 20))
	}
	e.stop(t, again)
}
