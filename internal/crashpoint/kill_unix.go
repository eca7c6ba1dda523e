//go:build unix

package crashpoint

import (
	"os"
	"syscall"
)

// kill sends SIGKILL to this process and does not return.
func kill() {
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	// SIGKILL cannot be caught; the kernel ends every thread before this
	// one runs on. Block in case it is delivered a moment late.
	select {}
}
