package policies

import (
	"fmt"
	"strings"
	"syscall"
)

// signals is every signal name chimirror accepts, wherever it is written: a
// policy's or an app's exit_signal, and a client's /signal event
// (chimirror.v1) or channel 6 message (channel.chimirror.v1). This is the
// one list; names are written as the kernel's without "SIG".
var signals = []struct {
	name string
	sig  syscall.Signal
	// client: a client may send it to its job. These are what a terminal
	// user needs; the rest only end a job.
	client bool
}{
	{"HUP", syscall.SIGHUP, true}, {"INT", syscall.SIGINT, true}, {"QUIT", syscall.SIGQUIT, false},
	{"KILL", syscall.SIGKILL, true}, {"USR1", syscall.SIGUSR1, true}, {"USR2", syscall.SIGUSR2, true},
	{"PIPE", syscall.SIGPIPE, false}, {"ALRM", syscall.SIGALRM, false}, {"TERM", syscall.SIGTERM, true},
	{"CONT", syscall.SIGCONT, false}, {"ABRT", syscall.SIGABRT, false}, {"SEGV", syscall.SIGSEGV, false},
	{"BUS", syscall.SIGBUS, false}, {"FPE", syscall.SIGFPE, false}, {"ILL", syscall.SIGILL, false},
	{"TRAP", syscall.SIGTRAP, false}, {"SYS", syscall.SIGSYS, false}, {"XCPU", syscall.SIGXCPU, false},
	{"XFSZ", syscall.SIGXFSZ, false},
}

// ParseExitSignal resolves an exit signal written as "TERM", "SIGTERM" or
// "term". The error says why a name is refused and which names are not.
func ParseExitSignal(name string) (syscall.Signal, error) {
	n := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(name)), "SIG")
	if n == "STOP" || n == "TSTP" {
		return 0, fmt.Errorf("%q only pauses a job, and the grace would then run out on it: name one it can end on, like TERM", name)
	}
	for _, s := range signals {
		if n == s.name {
			return s.sig, nil
		}
	}
	names := make([]string, len(signals))
	for i, s := range signals {
		names[i] = s.name
	}
	return 0, fmt.Errorf("unknown signal %q (use one of %s)", name, strings.Join(names, " "))
}

// ClientSignal resolves a signal a client sends, named exactly as the
// protocols document it ("INT"). The error lists the names a client may
// send.
func ClientSignal(name string) (syscall.Signal, error) {
	var names []string
	for _, s := range signals {
		if s.client {
			if name == s.name {
				return s.sig, nil
			}
			names = append(names, s.name)
		}
	}
	return 0, fmt.Errorf("%q is not one of %s", name, strings.Join(names, " "))
}
