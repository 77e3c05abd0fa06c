package supervisor

import (
	"testing"

	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/sandbox/sandboxtest"
)

// testRunner is the one sandbox.Runner of this test binary: the tests'
// supervisors share it, so the tests may run in parallel.
var testRunner *sandbox.Runner

func TestMain(m *testing.M) { sandboxtest.Main(m, &testRunner) }
