package policies

import (
	"fmt"
	"strings"
)

// signalNames are the exit signals a policy may name. The list is the same as
// sandbox.ParseSignal's, which turns the name into a signal number; policies
// only checks names, so that it does not depend on the sandbox.
var signalNames = []string{
	"HUP", "INT", "QUIT", "KILL", "USR1", "USR2", "PIPE", "ALRM", "TERM", "CONT",
	"ABRT", "SEGV", "BUS", "FPE", "ILL", "TRAP", "SYS", "XCPU", "XFSZ",
}

// CanonicalSignal accepts a signal name as "TERM", "SIGTERM" or "term" and
// returns it as sandbox.ParseSignal's names are written: upper case, without
// "SIG" ("TERM").
func CanonicalSignal(name string) (string, error) {
	n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "SIG")
	if n == "STOP" || n == "TSTP" {
		return "", fmt.Errorf("%q only pauses a job, and the grace would then run out on it: name one it can end on, like TERM", name)
	}
	for _, s := range signalNames {
		if n == s {
			return s, nil
		}
	}
	return "", fmt.Errorf("unknown signal %q (use one of %s)", name, strings.Join(signalNames, " "))
}
