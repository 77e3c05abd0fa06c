package web

import (
	"os"
	"testing"

	"github.com/chimirror/chimirror/sandbox"
)

// TestMain lets the test binary be a sandboxed job's init helper: the
// in-process runner re-executes /proc/self/exe sandbox-init.
func TestMain(m *testing.M) {
	if sandbox.IsInit(os.Args) {
		sandbox.RunInit()
	}
	os.Exit(m.Run())
}
