//go:build !cgo

package sandbox

// haveCReaper: without cgo the Go init helper stays PID 1 itself (with
// GOMAXPROCS=1), at several host pids and ~2 MB per job.
const haveCReaper = false
