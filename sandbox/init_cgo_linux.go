//go:build cgo

// init_linux.c holds the C init (see its header); importing "C" builds it
// into the binary, where its constructor takes InitArg before Go starts.

package sandbox

import "C"

// haveCInit: every sandbox's init is the C one, so no Go runtime starts or
// stays alive per job.
const haveCInit = true
