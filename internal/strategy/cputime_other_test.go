//go:build !linux

package strategy

func threadCPU() (int64, bool) { return 0, false }
