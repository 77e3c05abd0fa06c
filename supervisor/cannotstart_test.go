package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"syscall"
	"testing"

	"github.com/chimirror/chimirror/sandbox"
)

// TestCannotStartErrnos: with the app's files as they were, the cause's
// errno decides: what a retry cannot change is ErrCannotStart, what runs
// short for a while is not.
func TestCannotStartErrnos(t *testing.T) {
	t.Parallel()
	app := &App{Name: "sh", Path: "/bin/sh", Args: []string{"sh"}, Dir: "/"}
	tests := []struct {
		name      string
		cause     error
		permanent bool
	}{
		{"exec: no such file (an interpreter)", fmt.Errorf("start /x: %w", syscall.ENOENT), true},
		{"exec: permission denied", fmt.Errorf("start /x: %w", syscall.EACCES), true},
		{"exec format error", fmt.Errorf("start /x: %w", syscall.ENOEXEC), true},
		{"a view path that is gone", fmt.Errorf("sandbox view: %w", &fs.PathError{Op: "lstat", Path: "/x", Err: syscall.ENOENT}), true},
		{"user namespaces refused", fmt.Errorf("start init helper: %w", syscall.EPERM), true},
		{"clone: out of processes", fmt.Errorf("start init helper: %w", syscall.EAGAIN), false},
		{"clone: out of memory", fmt.Errorf("start init helper: %w", syscall.ENOMEM), false},
		{"cgroup busy", fmt.Errorf("make cgroup: %w", syscall.EBUSY), false},
		{"out of descriptors", fmt.Errorf("socketpair: %w", syscall.EMFILE), false},
		{"ids exhausted", fmt.Errorf("take ids: %w", sandbox.ErrNoIDs), false},
		{"runner closed", sandbox.ErrClosed, false},
		{"a sandbox's text report", errors.New("sandbox setup: start /x: exec: Exec format error"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := cannotStart(app, tc.cause)
			if got := errors.Is(err, ErrCannotStart); got != tc.permanent {
				t.Fatalf("cannotStart(%v) = %v; permanent %v, want %v", tc.cause, err, got, tc.permanent)
			}
			if err != nil && !errors.Is(err, tc.cause) {
				t.Errorf("%v does not wrap its cause", err)
			}
		})
	}
}
