package sandbox

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newTestRunner(t *testing.T) *Runner {
	t.Helper()
	r, err := NewRunner(slog.New(slog.NewTextHandler(io.Discard, nil)), RunnerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
		if n := r.Running(); n != 0 {
			t.Errorf("%d processes left after Close", n)
		}
	})
	return r
}

func sh(script string) Spec {
	return Spec{Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"}}
}

func waitDone(t *testing.T, p *Process) ExitStatus {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("pid %d did not exit", p.Pid)
	}
	return p.Status()
}

// Ensure exit codes and signals are reported as the shell would.
func TestRunner_ExitStatus(t *testing.T) {
	r := newTestRunner(t)
	tests := []struct {
		name   string
		script string
		code   int
		sig    syscall.Signal
		str    string
	}{
		{"zero", "exit 0", 0, 0, "exit 0"},
		{"code", "exit 3", 3, 0, "exit 3"},
		{"killed", "kill -KILL $$", 137, syscall.SIGKILL, "signal KILL"},
		{"terminated", "kill -TERM $$", 143, syscall.SIGTERM, "signal TERM"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := r.Start(sh(tc.script))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			st := waitDone(t, p)
			if st.Code != tc.code || st.Signal != tc.sig || st.String() != tc.str {
				t.Fatalf("status %+v (%s)", st, st)
			}
			if err := p.Signal(syscall.SIGTERM); !errors.Is(err, ErrExited) {
				t.Fatalf("signal after exit: %v, want ErrExited", err)
			}
		})
	}
}

// Ensure stdin and stderr share one socket, stdout is a pipe of its own, and
// stdin can be closed alone: stderr still flows after it.
func TestRunner_StdioLayout(t *testing.T) {
	r := newTestRunner(t)
	p, err := r.Start(sh(`cat >&2; echo out; echo after >&2; ` +
		`[ -S /proc/self/fd/0 ] && [ -p /proc/self/fd/1 ] && [ /proc/self/fd/0 -ef /proc/self/fd/2 ] && echo layout`))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.Stdio.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	stderr, err := io.ReadAll(p.Stdio)
	if err != nil {
		t.Fatal(err)
	}
	if string(stderr) != "ping\nafter\n" {
		t.Fatalf("stderr %q", stderr)
	}
	out, err := io.ReadAll(p.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "out\nlayout\n" {
		t.Fatalf("stdout %q, want the fd layout confirmed", out)
	}
	if st := waitDone(t, p); st.Code != 0 {
		t.Fatalf("cat: %s", st)
	}
}

// Ensure a leader's exit kills what is left of its process group, and that
// orphans adopted by the subreaper leave no zombie.
func TestRunner_GroupKilledOnExitNoZombies(t *testing.T) {
	r := newTestRunner(t)
	p, err := r.Start(sh(`sleep 30 & echo $!; (sleep 0.05; exit 0) & exit 0`))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	line, err := bufio.NewReader(p.Stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, p)
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err := os.Stat("/proc/" + strconv.Itoa(child))
		if errors.Is(err, os.ErrNotExist) {
			break // killed and reaped: no zombie either
		}
		if time.Now().After(deadline) {
			st, rerr := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat")
			t.Fatalf("group member %d survived the leader: %s %v", child, st, rerr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Ensure Signal reaches the whole group and Kill ends a TERM-ignorer.
func TestRunner_SignalGroup(t *testing.T) {
	r := newTestRunner(t)
	p, err := r.Start(sh(`trap '' TERM; echo ready; while :; do sleep 0.05; done`))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := bufio.NewReader(p.Stdout).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
		t.Fatal("exited on TERM it ignores")
	case <-time.After(200 * time.Millisecond):
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if st := waitDone(t, p); st.Signal != syscall.SIGKILL {
		t.Fatalf("status %s", st)
	}
}

// Ensure an inherited descriptor without close-on-exec never reaches a job.
func TestRunner_InheritedFdsClosed(t *testing.T) {
	// Make a descriptor the way a launcher would: no O_CLOEXEC.
	fd, err := syscall.Open("/etc/hostname", syscall.O_RDONLY, 0)
	if err != nil {
		t.Skip("needs /etc/hostname to open a test descriptor")
	}
	defer syscall.Close(fd)
	r := newTestRunner(t)
	p, err := r.Start(sh(`ls /proc/$$/fd`))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	out, err := io.ReadAll(p.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(strings.Fields(string(out)), " "); got != "0 1 2" {
		t.Fatalf("job fds %q, want 0 1 2 (inherited fd %d leaked?)", got, fd)
	}
	waitDone(t, p)
}

// Ensure only one Runner owns the process's children at a time.
func TestRunner_Exclusive(t *testing.T) {
	newTestRunner(t)
	if _, err := NewRunner(slog.Default(), RunnerOptions{}); !errors.Is(err, ErrRunnerBusy) {
		t.Fatalf("second runner: %v", err)
	}
}

// Ensure Close kills what still runs.
func TestRunner_CloseKills(t *testing.T) {
	r, err := NewRunner(slog.New(slog.NewTextHandler(io.Discard, nil)), RunnerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Start(sh(`exec sleep 30`))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if st := p.Status(); st.Signal != syscall.SIGKILL {
		t.Fatalf("status %s", st)
	}
	if _, err := r.Start(sh("true")); !errors.Is(err, ErrClosed) {
		t.Fatalf("start after close: %v", err)
	}
}
