package supervisor

import (
	"runtime/debug"
	"runtime/metrics"
)

// The Go runtime's soft memory limit (Config.TuneMemoryLimit).
//
// The collector lets the heap grow to twice what was live at its last
// cycle (GOGC=100). Full replay rings are live and long-lived, so without a
// limit a server whose rings are full grows to twice their size: 1,000
// detached jobs with full 256 KiB rings cost 480–526 MB of RSS where the
// rings hold 262 MB. The rings are bounded by replay_memory_max, so they
// need no headroom of their own: the limit is that bound, plus the usual
// headroom (GOGC's twice) for everything else the server holds, plus
// memoryLimitSlack. It is never below twice the live heap, so the
// collector never runs more often than GOGC would have it for a server
// whose rings are empty.

// memoryLimitSlack is headroom on top of the limit for the runtime's own
// allocations between cycles.
const memoryLimitSlack = 16 << 20

// memoryLimitFor is the limit for a live heap of liveBytes, ringBytes of it
// in rings bounded by ringMaxBytes.
func memoryLimitFor(ringMaxBytes, liveBytes, ringBytes int64) int64 {
	other := max(liveBytes-ringBytes, 0)
	return ringMaxBytes + 2*other + memoryLimitSlack
}

// liveHeapMetric is the heap the last collection found live.
const liveHeapMetric = "/gc/heap/live:bytes"

// tuneMemoryLimit sets the runtime's limit from the heap now, when the
// server asked for it; the sampler calls it every tick.
func (s *Supervisor) tuneMemoryLimit() {
	if !s.tuneMemory {
		return
	}
	m := []metrics.Sample{{Name: liveHeapMetric}}
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindUint64 {
		return // a runtime without the metric: the limit stays as it was
	}
	debug.SetMemoryLimit(memoryLimitFor(s.budget.max, int64(m[0].Value.Uint64()), s.budget.Used()))
}

// ReplayMemoryMax is the bound of every job's ring together.
func (s *Supervisor) ReplayMemoryMax() int64 { return s.budget.max }
