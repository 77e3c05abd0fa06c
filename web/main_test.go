package web

import (
	"fmt"
	"log/slog"
	"os"
	"testing"

	"github.com/chimirror/chimirror/sandbox"
)

// testRunner is the one sandbox.Runner of this test binary (it owns every
// child of the process). Every test server's supervisor shares it, so the
// tests may run in parallel.
var testRunner *sandbox.Runner

// TestMain lets the test binary be a sandboxed job's init helper (the
// runner re-executes /proc/self/exe sandbox-init), and makes the runner.
func TestMain(m *testing.M) {
	if sandbox.IsInit(os.Args) {
		sandbox.RunInit()
	}
	r, err := sandbox.NewRunner(slog.New(slog.DiscardHandler), sandbox.RunnerOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox runner:", err)
		os.Exit(1)
	}
	testRunner = r
	code := m.Run()
	if err := r.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close sandbox runner:", err)
		code = 1
	}
	os.Exit(code)
}
