//go:build unix

package metrics

import (
	"syscall"
	"time"
)

// ProcessCPU returns the CPU time (user and system) the process has used so
// far, and whether the platform reports it. Benchmarks of the stores use it
// to count the work of the goroutines that write in the background (batch
// writers, settlement queues), which ns/op does not see.
func ProcessCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
