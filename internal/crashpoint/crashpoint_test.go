package crashpoint

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// helperEnv marks the re-executed test binary that is meant to die.
const helperEnv = "CRASHPOINT_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		Hit("some-other-point") // armed for another point: returns
		os.Stdout.WriteString("passed the other point\n")
		Hit("the-point")
		os.Stdout.WriteString("survived the armed point\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestHitArmedPointKillsTheProcessWithSIGKILL(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1", EnvVar+"=the-point")
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("helper: %v, output %q; want it killed", err, out)
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v; want killed by SIGKILL", exit.ProcessState)
	}
	if string(out) != "passed the other point\n" {
		t.Fatalf("helper output %q: want it past the other point and dead at the armed one", out)
	}
}

func TestHitIsInertWhenUnarmed(t *testing.T) {
	if armed != "" {
		t.Skipf("%s is set in the test environment", EnvVar)
	}
	for _, name := range []string{"", "withdraw-after-intent", "accept-after-post"} {
		Hit(name) // returns: nothing is armed
	}
	if n := testing.AllocsPerRun(1000, func() { Hit("accept-after-journal") }); n != 0 {
		t.Fatalf("Hit allocates %v times per call; want 0", n)
	}
}

func BenchmarkHitUnarmed(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		Hit("accept-after-journal")
	}
}
