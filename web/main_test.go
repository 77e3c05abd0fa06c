package web

import (
	"testing"

	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/sandbox/sandboxtest"
)

// testRunner is the one sandbox.Runner of this test binary: every test
// server's supervisor shares it, so the tests may run in parallel.
var testRunner *sandbox.Runner

func TestMain(m *testing.M) { sandboxtest.Main(m, &testRunner) }
