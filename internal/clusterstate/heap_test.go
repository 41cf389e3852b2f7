package clusterstate

import (
	"runtime"
	"testing"
)

// reportHeap reports, in unit, the heap that 10,000 objects made by
// cached (one object as the cache keeps it) take.
func reportHeap(b *testing.B, unit string, cached func(i int) any) {
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		kept := make([]any, 10000)
		for i := range kept {
			kept[i] = cached(i)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc), unit)
		runtime.KeepAlive(kept)
	}
}
