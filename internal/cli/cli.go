// Package cli is what chimirror's binaries (chimirror and chimirror-bench)
// share as command-line programs: exit codes, flag errors as exit status 2,
// and how main ends.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
)

// ExitCode is an error that only sets the exit status: whatever went wrong
// has been said already.
type ExitCode int

func (e ExitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// ParseFlags parses args into fs. A bad flag is ExitCode(2), fs having
// printed why and its usage; -h is flag.ErrHelp.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	err := fs.Parse(args)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return ExitCode(2)
}

// Exit ends the program named name as err says: status 0 for nil or -h,
// an ExitCode's status, or 1 after printing "name: err" to stderr.
func Exit(name string, err error) {
	var code ExitCode
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.As(err, &code):
		os.Exit(int(code))
	default:
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// RaceEnabled reports whether this binary was built with -race (tests build
// the binaries they run the same way).
func RaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}
