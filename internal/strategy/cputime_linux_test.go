package strategy

import "syscall"

// threadCPU is the CPU time the calling OS thread has used, in
// nanoseconds, and true; benchmarks lock their thread and report it per op
// beside ns/op, which on a shared machine counts time spent waiting for a
// core too.
func threadCPU() (int64, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_THREAD, &ru); err != nil {
		return 0, false
	}
	return ru.Utime.Nano() + ru.Stime.Nano(), true
}
