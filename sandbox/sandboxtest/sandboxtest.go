// Package sandboxtest is a test binary's side of the sandbox: the binary is
// its own jobs' init, and it owns the one Runner its tests share (a Runner
// owns every child of its process), so that they may run in parallel.
package sandboxtest

import (
	"fmt"
	"log/slog"
	"os"
	"testing"

	"github.com/chimirror/chimirror/sandbox"
)

// Main is a test binary's TestMain: it runs the init when the sandbox
// re-executes the binary as one, and otherwise runs m with a Runner set in
// *r, closed when the tests are done. It never returns.
func Main(m *testing.M, r **sandbox.Runner) {
	if sandbox.IsInit(os.Args) {
		sandbox.RunInit()
	}
	runner, err := sandbox.NewRunner(slog.New(slog.DiscardHandler), sandbox.RunnerOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox runner:", err)
		os.Exit(1)
	}
	*r = runner
	code := m.Run()
	if err := runner.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close sandbox runner:", err)
		code = 1
	}
	os.Exit(code)
}
