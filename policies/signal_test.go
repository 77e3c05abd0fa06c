package policies

import (
	"strings"
	"syscall"
	"testing"
)

// Ensure exit signals are read in every spelling the docs allow, and that a
// refusal says why.
func TestParseExitSignal(t *testing.T) {
	tests := []struct {
		name, in string
		want     syscall.Signal
		wantErr  string
	}{
		{name: "plain", in: "TERM", want: syscall.SIGTERM},
		{name: "SIG prefix", in: "SIGTERM", want: syscall.SIGTERM},
		{name: "lower case", in: "term", want: syscall.SIGTERM},
		{name: "lower case with prefix", in: "sigusr1", want: syscall.SIGUSR1},
		{name: "last of the list", in: "XFSZ", want: syscall.SIGXFSZ},
		{name: "unknown", in: "FOO", wantErr: `unknown signal "FOO" (use one of HUP INT`},
		{name: "number", in: "15", wantErr: "unknown signal"},
		{name: "empty", in: "", wantErr: "unknown signal"},
		{name: "stop only pauses", in: "SIGSTOP", wantErr: "only pauses a job"},
		{name: "tstp only pauses", in: "tstp", wantErr: "only pauses a job"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseExitSignal(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseExitSignal(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseExitSignal(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
		})
	}
}

// Ensure a client may send only the signals the protocols document, named
// exactly, and that a refusal lists them.
func TestClientSignal(t *testing.T) {
	for _, name := range []string{"INT", "TERM", "HUP", "USR1", "USR2", "KILL"} {
		if _, err := ClientSignal(name); err != nil {
			t.Errorf("ClientSignal(%q): %v", name, err)
		}
	}
	for _, name := range []string{"QUIT", "SIGINT", "int", "STOP", ""} {
		sig, err := ClientSignal(name)
		if err == nil {
			t.Errorf("ClientSignal(%q) = %v, want a refusal", name, sig)
		} else if !strings.Contains(err.Error(), "is not one of HUP INT KILL USR1 USR2 TERM") {
			t.Errorf("ClientSignal(%q): %v, want the list of names", name, err)
		}
	}
}
