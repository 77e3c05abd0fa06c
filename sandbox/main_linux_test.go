package sandbox

import (
	"os"
	"testing"
)

// TestMain lets the test binary be its own init helper, as runc's
// integration tests do: the runner re-executes /proc/self/exe sandbox-init.
func TestMain(m *testing.M) {
	if IsInit(os.Args) {
		RunInit()
	}
	os.Exit(m.Run())
}
