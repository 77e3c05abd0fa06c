//go:build cgo

// reaper_linux.c holds the C PID 1 (see its header); importing "C" builds it
// into the binary.

package sandbox

import "C"

// haveCReaper: the init helper hands PID 1 over to the C reaper, so no Go
// runtime stays alive per job.
const haveCReaper = true
