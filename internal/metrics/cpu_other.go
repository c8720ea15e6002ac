//go:build !unix

package metrics

import "time"

// ProcessCPU reports no CPU time where getrusage is missing.
func ProcessCPU() (time.Duration, bool) { return 0, false }
