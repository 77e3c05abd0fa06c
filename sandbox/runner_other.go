//go:build !linux

package sandbox

import (
	"errors"
	"log/slog"
	"os"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Runner is Linux-only; elsewhere NewRunner fails with errors.ErrUnsupported.
type Runner struct{}

// NewRunner is unsupported on this OS.
func NewRunner(*slog.Logger, RunnerOptions) (*Runner, error) { return nil, errors.ErrUnsupported }

// DefaultSeccomp has no profile outside Linux.
func DefaultSeccomp() *specs.LinuxSeccomp { return &specs.LinuxSeccomp{} }

func (r *Runner) Close() error                 { return nil }
func (r *Runner) Running() int                 { return 0 }
func (r *Runner) Start(Spec) (*Process, error) { return nil, errors.ErrUnsupported }

// Process is Linux-only.
type Process struct {
	Pid    int
	Stdio  *os.File
	Stdout *os.File
}

func (p *Process) Done() <-chan struct{}       { return nil }
func (p *Process) Status() ExitStatus          { return ExitStatus{} }
func (p *Process) Signal(syscall.Signal) error { return errors.ErrUnsupported }
func (p *Process) Kill() error                 { return errors.ErrUnsupported }
func (p *Process) CloseStdin() error           { return errors.ErrUnsupported }
func (p *Process) Close() error                { return nil }

func (p *Process) AfterExit(f func()) {}

func (p *Process) Sandboxed() bool       { return false }
func (p *Process) Usage() (Usage, error) { return Usage{}, errors.ErrUnsupported }

// Available: sandboxing is Linux-only.
func Available() error { return errors.ErrUnsupported }

// CgroupVersion: none outside Linux.
func CgroupVersion() int { return 0 }

// RunInit is Linux-only.

func RunInit() { panic("sandbox-init is Linux-only") }

// Pool and Initiator are Linux-only; the fallback pool never has one ready.
type Pool struct{}

type Initiator struct{}

func (r *Runner) NewPool(*slog.Logger, Isolation, int) *Pool { return &Pool{} }
func (p *Pool) Get() *Initiator                              { return nil }
func (p *Pool) Close()                                       {}
func (r *Runner) Prepare(Isolation) (*Initiator, error)      { return nil, errors.ErrUnsupported }
func (in *Initiator) Launch(Spec) (*Process, error)          { return nil, errors.ErrUnsupported }
func (in *Initiator) Discard() error                         { return nil }

// DefaultCgroupParent is where job cgroups live on Linux.
const DefaultCgroupParent = "chimirror"

// Leftover is a dead server's job cgroup; there are none off Linux.
type Leftover struct{ Name string }

func Leftovers(string) ([]*Leftover, error) { return nil, nil }
func (l *Leftover) Path() string            { return "" }
func (l *Leftover) Kill() error             { return errors.ErrUnsupported }
func (l *Leftover) Live() (bool, error)     { return false, errors.ErrUnsupported }
func (l *Leftover) Usage() (Usage, error)   { return Usage{}, errors.ErrUnsupported }
func (l *Leftover) Delete() error           { return errors.ErrUnsupported }
func (p *Process) CgroupPath() string       { return "" }
func RemoveParent(string) error             { return nil }

// CheckView has nothing to check where no job is sandboxed.
func CheckView(View) error { return nil }
