// Command chimirror-bench measures a chimirror server against floors taken
// in the same run on the same machine, and prints the table of the README's
// Benchmarks section. The server is the chimirror binary named by
// --chimirror (else the one beside this executable, else the one on PATH);
// the floors are this binary itself, re-executed as hidden commands, so the
// server binary carries none of the lab.
package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/chimirror/chimirror/internal/cli"
)

// The hidden commands: the floors this binary runs as its own children.
const (
	// wsFloorArg serves the minimal WebSocket server and the TCP echo
	// until stdin closes (cmdWSFloor).
	wsFloorArg = "ws-floor"
	// getppidArg is the syscall loop, run in and out of jobs
	// (cmdGetppidLoop).
	getppidArg = "getppid"
)

func main() {
	cli.Exit("chimirror-bench", run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case wsFloorArg:
			return cmdWSFloor(os.Stdin, stdout)
		case getppidArg:
			return cmdGetppidLoop(args[1:], stdout)
		}
	}
	return cmdBench(args, stdout, stderr)
}

// findChimirror returns the chimirror binary to measure: flagged if it is
// given (a name without a slash is looked up on PATH, as a shell does),
// else "chimirror" in the directory of self (this executable), else the
// one lookPath finds. The error names --chimirror.
func findChimirror(flagged, self string, lookPath func(string) (string, error)) (string, error) {
	if flagged != "" {
		p, err := lookPath(flagged)
		if err != nil {
			return "", fmt.Errorf("--chimirror: %w", err)
		}
		return p, nil
	}
	if p, err := lookPath(filepath.Join(filepath.Dir(self), "chimirror")); err == nil {
		return p, nil
	}
	if p, err := lookPath("chimirror"); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("no chimirror binary beside %s or on PATH: build one (go build ./cmd/chimirror) and give its path with --chimirror PATH", self)
}

// chimirrorBinary is findChimirror for this process.
func chimirrorBinary(flagged string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the chimirror binary: %w", err)
	}
	return findChimirror(flagged, self, exec.LookPath)
}
