// Package accounting is the job ledger: one durable record per job in a
// bbolt file, written ahead of the job, grouped into shared commits, and
// queried for job listings and accounting reports.
//
// It is the mainframe's SMF and Slurm's sacct in one embedded file. It knows
// nothing of cgroups, WebSockets or TOML: the supervisor fills the records.
package accounting

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RecordVersion is written into every record as "v". A reader accepts every
// version up to its own and ignores fields it does not know, so records
// written by this version are read by the next one; a record from a newer
// version is still read, with its unknown fields ignored.
const RecordVersion = 1

// State is where a job is in its life.
type State string

const (
	StateStarting State = "starting" // admitted and recorded; its process is being made
	StateRunning  State = "running"  // its process exists
	StateFinished State = "finished" // ended, with its final usage
	StateLost     State = "lost"     // the server died while it ran; closed by recovery
)

// Open reports whether a job in state s may still be running.
func (s State) Open() bool { return s == StateStarting || s == StateRunning }

// ReasonLost is the reason of every record closed by recovery.
const ReasonLost = "lost"

// Record is one job. Its JSON form is the ledger's stored format and the
// `--json` output of `chimirror job`; it is documented in the README.
// Fields never change meaning; new ones are added with omitempty.
type Record struct {
	V int `json:"v"`

	// identity
	ID         string   `json:"id"`
	App        string   `json:"app"`
	Tenant     string   `json:"tenant"`
	Policy     string   `json:"policy,omitempty"`
	Command    []string `json:"command"`
	RemoteAddr string   `json:"remote_addr,omitempty"`
	UserAgent  string   `json:"user_agent,omitempty"`
	Protocol   string   `json:"protocol,omitempty"`
	Sandboxed  bool     `json:"sandboxed"`
	Cgroup     string   `json:"cgroup,omitempty"` // the job's cgroup name, once it runs
	Pid        int      `json:"pid,omitempty"`    // on the host
	// Spool: the job's output is kept in the server's spool dir, in the
	// file named after its ID (DATA_DIR/spool/ID.spool), from its start.
	Spool bool `json:"spool,omitempty"`

	// outcome
	State  State  `json:"state"`
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
	// ExitCode is the process's exit code, or 128+signal (shell
	// convention); absent until the job has ended, and for lost jobs.
	ExitCode    *int   `json:"exit_code,omitempty"`
	Signal      string `json:"signal,omitempty"`       // "KILL" when a signal ended it
	CancelledBy string `json:"cancelled_by,omitempty"` // the admin token's label

	// timing
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	// LastSeen is when the supervisor last saw the job alive (each sample
	// tick); a lost job ends at its LastSeen. A running job's record stores
	// none: it is the ledger's heartbeat. A record that stores one while
	// open is an orphan, its server dead: recovery wrote the dead server's
	// last heartbeat into it before the next server's first tick.
	LastSeen time.Time `json:"last_seen,omitzero"`

	Usage   Usage   `json:"usage"`
	Traffic Traffic `json:"traffic"`
	Limits  Limits  `json:"limits"`
}

// Usage is what a job consumed. For sandboxed jobs it is read from the
// job's cgroup; for plain jobs from the rusage of its process tree.
type Usage struct {
	CPUUserNs       int64 `json:"cpu_user_ns"`
	CPUSystemNs     int64 `json:"cpu_system_ns"`
	CPUThrottledNs  int64 `json:"cpu_throttled_ns"`
	MemoryPeakBytes int64 `json:"memory_peak_bytes"` // -1: unknown
	OOMKills        int64 `json:"oom_kills"`
	PidsPeak        int64 `json:"pids_peak,omitempty"` // absent when the kernel does not say
}

// CPUNs is user plus system CPU time.
func (u Usage) CPUNs() int64 { return u.CPUUserNs + u.CPUSystemNs }

// Traffic is what moved between the job and its client.
type Traffic struct {
	StdinBytes  int64 `json:"stdin_bytes"`
	StdoutBytes int64 `json:"stdout_bytes"`
	StderrBytes int64 `json:"stderr_bytes"`
	MessagesIn  int64 `json:"messages_in"`
	// MessagesOut counts the messages sent to the client but the last one
	// that reports the end (chimirror.v1's /exit, the channel status).
	MessagesOut int64 `json:"messages_out"`
}

// Bytes is the total either way.
func (t Traffic) Bytes() int64 { return t.StdinBytes + t.StdoutBytes + t.StderrBytes }

// Limits are the limits in force for the job; zero means none.
type Limits struct {
	MemoryMaxBytes int64   `json:"memory_max_bytes,omitempty"`
	CPUCores       float64 `json:"cpu_cores,omitempty"`
	PidsMax        int64   `json:"pids_max,omitempty"`
	CPUTimeNs      int64   `json:"cpu_time_ns,omitempty"`
	WallTimeNs     int64   `json:"wall_time_ns,omitempty"`
	IdleTimeoutNs  int64   `json:"idle_timeout_ns,omitempty"`
	MaxOutputBytes int64   `json:"max_output_bytes,omitempty"`
	GraceNs        int64   `json:"grace_ns,omitempty"`
}

// Sample is one interval reading of a running job, for its charts.
type Sample struct {
	At                 time.Time `json:"t"`
	CPUNs              int64     `json:"cpu_ns"`    // cumulative user+system
	MemoryCurrentBytes int64     `json:"mem_bytes"` // -1: unknown (plain job)
	PidsCurrent        int64     `json:"pids,omitempty"`
	StdinBytes         int64     `json:"stdin_bytes"`
	StdoutBytes        int64     `json:"stdout_bytes"` // cumulative, like the bytes below
	StderrBytes        int64     `json:"stderr_bytes"`
}

// Elapsed is the job's wall time: to its end, or to now if it is open.
func (r *Record) Elapsed(now time.Time) time.Duration {
	end := r.EndedAt
	if end.IsZero() {
		end = now
	}
	if end.Before(r.StartedAt) {
		return 0
	}
	return end.Sub(r.StartedAt)
}

// FormatID is the job ID of ledger sequence n.
func FormatID(n uint64) string { return fmt.Sprintf("JOB%08d", n) }

// ParseID is the sequence number of a job ID ("JOB00000042", or "42").
func ParseID(id string) (uint64, error) {
	n, err := strconv.ParseUint(strings.TrimPrefix(strings.ToUpper(id), "JOB"), 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad job ID %q: want JOB followed by a number", id)
	}
	return n, nil
}
