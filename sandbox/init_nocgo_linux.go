//go:build !cgo

package sandbox

// haveCInit: without cgo the Go init (RunInit) sets sandboxes up and stays
// PID 1 itself (with GOMAXPROCS=1), at several host pids and ~2 MB per job.
const haveCInit = false
