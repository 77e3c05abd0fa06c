package sandbox

import (
	"os"
	"testing"
)

// TestMain lets the test binary be its own init helper, as runc's
// integration tests do: the runner re-executes /proc/self/exe sandbox-init.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == InitArg {
		RunInit()
	}
	os.Exit(m.Run())
}
