package stats

import (
	"testing"

	promreg "github.com/llmoneapi/llmoneapi/internal/metrics"
)

// cpuPerOp starts counting the process's CPU time for b; the function it
// returns, called after b's loop, reports it per op as cpu-ns/op. Unlike
// ns/op it counts the goroutines that write in the background, so that a
// batching sink's benchmark shows what a record costs in all.
func cpuPerOp(b *testing.B) func() {
	start, ok := promreg.ProcessCPU()
	return func() {
		if end, _ := promreg.ProcessCPU(); ok && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}
