// Package policies is the job-class model: a policy (a TOML file, strictly
// decoded by tomlstrict) names a job's CPU, memory, pids, time and output
// limits, its identity, its view of files and devices, and its seccomp
// filter. The built-in default.toml and strict.toml are embedded; an
// operator's own files come from policy_dir. Everything is checked and
// resolved once, when a policy loads: sizes and durations to numbers,
// signal names to signals (signal.go holds the one list), memory semantics
// (no swap, the whole job ended on OOM) and limits to the OCI runtime-spec
// vocabulary the sandbox takes. The sandbox decides nothing about policy.
package policies

import (
	"errors"
	"fmt"
	"math"
	"os/user"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chimirror/chimirror/tomlstrict"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Policy is one loaded and validated policy file: the limits, identity and
// isolation of every job that runs under it. A zero limit means no limit.
// Policies handed out by a Set are shared: treat them as read-only.
type Policy struct {
	Name   string // the file name without .toml
	Source string // the file it was read from: a path, or "builtin:NAME.toml"

	CPU            float64       // cores the whole job may use (0.5: half a CPU); 0: no limit
	MemoryMaxBytes int64         // memory cgroup limit, with no swap on top; 0: no limit
	PidsMax        int64         // processes and threads at once; 0: no limit
	WallTime       time.Duration // from the job's start until it is ended; 0: no limit
	CPUTime        time.Duration // user+system CPU of all the job's processes; 0: no limit
	IdleTimeout    time.Duration // no I/O in either direction for this long ends the job; 0: none
	MaxOutputBytes int64         // stdout plus stderr bytes; 0: no limit
	// ReplayBytes is the job's replay ring: the last output events kept
	// for a client that reattaches, and how much unacknowledged output
	// the job may write before it waits. Never 0 (DefaultReplayBytes).
	ReplayBytes int64
	// DetachTimeout is how long a job runs on without a client once it
	// lost it; 0: losing the client ends the job.
	DetachTimeout time.Duration
	Network       bool  // true: the host's network; false: a private, empty network namespace
	TmpSizeBytes  int64 // size of the job's own tmpfs (/tmp, /var/tmp, /run, /dev/shm, Tmpfs); 0: the kernel's default (half of RAM)
	// User and Group are as written (names or numeric ids), or the
	// defaults. User "dynamic" (DynamicUser) gives every running job a uid
	// and gid of its own, as systemd's DynamicUser=.
	User, Group   string
	UID, GID      uint32 // User and Group resolved when the policy was loaded; unused when DynamicUser
	DynamicUser   bool
	ExitSignal    syscall.Signal // sent first when the job is ended
	Grace         time.Duration  // between ExitSignal and SIGKILL of the whole job; never 0
	Env           []string       // allow-list entries as written: "NAME" or "NAME=value"
	UserNamespace bool           // run the job in a user namespace of its own
	// Spool keeps every job's output in the server's spool (spool = true);
	// Batch runs every job as a batch job, which always spools (mode =
	// "batch"): to completion, with no client attached. A spooled job's
	// output is bounded by MaxOutputBytes.
	Spool, Batch bool
	// Initiators is how many sandboxes of this class are kept prepared
	// ahead of their jobs (cgroup and namespaces made, helper waiting), so
	// a job's setup is only its hot part; 0 prepares each on demand.
	Initiators int

	// The job's view of the filesystem (see sandbox.View): ReadOnly is
	// DefaultReadOnly (where the host has it, plus networkReadOnly with
	// Network) and the ro key; ReadWrite the rw key; Tmpfs the tmpfs key.
	ReadOnly, ReadWrite, Tmpfs []string
	Sys                        bool // a fresh, read-only /sys
	// Seccomp is SeccompDefault, SeccompOff, or the path of the profile
	// file read into SeccompProfile.
	Seccomp        string
	SeccompProfile *specs.LinuxSeccomp

	rlimits     []specs.POSIXRlimit // in rlimitKinds order, soft = hard
	seccompLine int
}

// Defaults of the keys whose absence does not mean "no limit".
const (
	DefaultUser       = DynamicUser
	DefaultGroup      = "nogroup" // for a named user: or, where it does not exist, the user's primary group
	DefaultExitSignal = syscall.SIGTERM
	DefaultGrace      = 5 * time.Second
	// DefaultReplayBytes is replay_bytes when a policy leaves it out.
	DefaultReplayBytes = 256 << 10
)

// Bounds of replay_bytes and detach_timeout.
const (
	minReplayBytes   = 64 << 10
	maxReplayBytes   = 1 << 30
	maxDetachTimeout = 24 * time.Hour
)

// The values of mode: an interactive job lives as long as its client; a
// batch job runs to completion with no client, its output spooled.
const (
	ModeInteractive = "interactive"
	ModeBatch       = "batch"
)

// ParseMode reads a mode, an app's or a policy's: batch is ModeBatch's.
func ParseMode(m string) (batch bool, err error) {
	switch m {
	case ModeInteractive:
		return false, nil
	case ModeBatch:
		return true, nil
	}
	return false, fmt.Errorf("must be %q or %q, not %q", ModeInteractive, ModeBatch, m)
}

// DynamicUser is the user value that gives each running job ids of its own.
const DynamicUser = "dynamic"

// maxInitiators bounds a pool: each prepared sandbox holds a helper, a
// cgroup and three of the server's descriptors.
const maxInitiators = 256

// CPUPeriodMicros is the CFS period of LinuxResources' CPU quota.
const CPUPeriodMicros = 100000

// Bounds of cpu: the kernel refuses a quota below 1ms per period, and the
// upper bound keeps the quota far from overflowing.
const (
	minCPU = 0.01
	maxCPU = 1e6
)

// RlimitInfinity is RLIM_INFINITY, the value of "unlimited".
const RlimitInfinity = math.MaxUint64

// rlimitKind is a key of [rlimits]. Byte-valued limits also take sizes.
type rlimitKind struct {
	key   string
	typ   string // the OCI (and setrlimit) name
	bytes bool
}

var rlimitKinds = []rlimitKind{
	{"as", "RLIMIT_AS", true},
	{"core", "RLIMIT_CORE", true},
	{"cpu", "RLIMIT_CPU", false}, // seconds
	{"data", "RLIMIT_DATA", true},
	{"fsize", "RLIMIT_FSIZE", true},
	{"memlock", "RLIMIT_MEMLOCK", true},
	{"nofile", "RLIMIT_NOFILE", false},
	{"nproc", "RLIMIT_NPROC", false},
	{"stack", "RLIMIT_STACK", true},
}

// LinuxResources is the policy's cgroup limits in OCI terms: a CPU quota of
// CPU × CPUPeriodMicros per period, a memory limit with Swap (memory plus
// swap, by runc's convention) equal to it, so no swap, and a pids limit.
// Limits the policy does not set are nil. The result is the caller's.
func (p *Policy) LinuxResources() *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if p.CPU > 0 {
		quota := int64(math.Round(p.CPU * CPUPeriodMicros))
		period := uint64(CPUPeriodMicros)
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	if p.MemoryMaxBytes > 0 {
		limit, swap := p.MemoryMaxBytes, p.MemoryMaxBytes
		r.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &swap}
	}
	if p.PidsMax > 0 {
		n := p.PidsMax
		r.Pids = &specs.LinuxPids{Limit: &n}
	}
	return r
}

// OOMGroup is every policy's OOM semantics: when the OOM killer kills one
// of a job's processes, the whole job ends, never left running short of a
// part (a server whose worker died, a pipeline short of a stage). With
// LinuxResources' swap equal to the limit, this is all of what a memory
// limit means; the sandbox only carries it out.
func (p *Policy) OOMGroup() bool { return true }

// Rlimits is the policy's [rlimits] table in OCI terms ("RLIMIT_NOFILE" and
// so on, sorted by type), soft equal to hard; RlimitInfinity is "unlimited".
// Limits the policy does not set are absent: the job inherits the server's.
// The slice is the caller's.
func (p *Policy) Rlimits() []specs.POSIXRlimit {
	return append([]specs.POSIXRlimit(nil), p.rlimits...)
}

// Namespaces lists the namespaces a job gets: pid, mount, uts and ipc
// always; network unless Network; user when UserNamespace. None has a path:
// each job gets new ones.
func (p *Policy) Namespaces() []specs.LinuxNamespace {
	ns := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace},
		{Type: specs.MountNamespace},
		{Type: specs.UTSNamespace},
		{Type: specs.IPCNamespace},
	}
	if !p.Network {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	if p.UserNamespace {
		ns = append(ns, specs.LinuxNamespace{Type: specs.UserNamespace})
	}
	return ns
}

// policyFile is the schema of a policy file. Keys are documented in the
// built-in default.toml. Every value is kept as decoded, so that every bad
// value can be reported together instead of decoding stopping at the first.
type policyFile struct {
	CPU           any `toml:"cpu"`
	Memory        any `toml:"memory"`
	Pids          any `toml:"pids"`
	WallTime      any `toml:"wall_time"`
	CPUTime       any `toml:"cpu_time"`
	IdleTimeout   any `toml:"idle_timeout"`
	MaxOutput     any `toml:"max_output"`
	ReplayBytes   any `toml:"replay_bytes"`
	DetachTimeout any `toml:"detach_timeout"`
	Network       any `toml:"network"`
	TmpSize       any `toml:"tmp_size"`
	User          any `toml:"user"`
	Group         any `toml:"group"`
	ExitSignal    any `toml:"exit_signal"`
	Grace         any `toml:"grace"`
	Env           any `toml:"env"`
	UserNamespace any `toml:"user_namespace"`
	Initiators    any `toml:"initiators"`
	Spool         any `toml:"spool"`
	Mode          any `toml:"mode"`
	RO            any `toml:"ro"`
	RW            any `toml:"rw"`
	Tmpfs         any `toml:"tmpfs"`
	Sys           any `toml:"sys"`
	Seccomp       any `toml:"seccomp"`
	Rlimits       any `toml:"rlimits"` // a table; checked by rlimits
}

var policyNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidName reports whether s may name a policy, an app or a tenant: the
// same rule keeps every name safe in a URL path, a file name and a cgroup.
func ValidName(s string) bool { return policyNameRe.MatchString(s) }

// Parse reads one policy file. Its name is file's base name without
// ".toml". It returns either the policy or every problem found (a syntax or
// type error of the TOML itself is reported alone), sorted by line.
func Parse(file string, data []byte) (*Policy, tomlstrict.Problems) {
	name, ok := strings.CutSuffix(filepath.Base(file), ".toml")
	if !ok {
		return nil, tomlstrict.Problems{{File: file, Msg: "a policy file's name must end in .toml"}}
	}
	return parse(file, name, data)
}

// parse is Parse for a policy whose name does not come from file.
func parse(file, name string, data []byte) (*Policy, tomlstrict.Problems) {
	c := &checker{file: file}
	if !policyNameRe.MatchString(name) {
		c.ps = append(c.ps, tomlstrict.Problem{File: file, Msg: fmt.Sprintf("%q is not a valid policy name (lower-case letters, digits, '.', '_', '-'; at most 64)", name)})
	}
	var pf policyFile
	idx, ps, decoded := tomlstrict.Decode(file, data, &pf)
	c.idx = idx
	c.ps = append(c.ps, ps...)
	if !decoded {
		return nil, c.ps
	}
	p := &Policy{Name: name, Source: file}

	cpuSet := c.cpu(&p.CPU, pf.CPU)
	memSet := c.size(tomlstrict.Key{"memory"}, &p.MemoryMaxBytes, pf.Memory)
	if pf.Pids != nil {
		if n, ok := c.integer(tomlstrict.Key{"pids"}, pf.Pids); ok {
			if n < 1 {
				c.add(tomlstrict.Key{"pids"}, "must be at least 1 (leave pids out for no limit)")
			} else {
				p.PidsMax = n
			}
		}
	}
	wallSet := c.duration(tomlstrict.Key{"wall_time"}, &p.WallTime, pf.WallTime)
	cpuTimeSet := c.duration(tomlstrict.Key{"cpu_time"}, &p.CPUTime, pf.CPUTime)
	c.duration(tomlstrict.Key{"idle_timeout"}, &p.IdleTimeout, pf.IdleTimeout)
	c.size(tomlstrict.Key{"max_output"}, &p.MaxOutputBytes, pf.MaxOutput)
	p.ReplayBytes = DefaultReplayBytes
	if pf.ReplayBytes != nil {
		var n int64
		before := len(c.ps)
		c.size(tomlstrict.Key{"replay_bytes"}, &n, pf.ReplayBytes)
		switch {
		case len(c.ps) > before: // a bad value, reported
		case n < minReplayBytes || n > maxReplayBytes:
			c.add(tomlstrict.Key{"replay_bytes"}, "%s must be from 64KiB to 1GiB", quoted(pf.ReplayBytes))
		default:
			p.ReplayBytes = n
		}
	}
	if c.duration(tomlstrict.Key{"detach_timeout"}, &p.DetachTimeout, pf.DetachTimeout) && p.DetachTimeout > maxDetachTimeout {
		c.add(tomlstrict.Key{"detach_timeout"}, "%s is longer than the most, %v", quoted(pf.DetachTimeout), maxDetachTimeout)
	}
	c.boolean(tomlstrict.Key{"network"}, &p.Network, pf.Network)
	tmpSet := c.size(tomlstrict.Key{"tmp_size"}, &p.TmpSizeBytes, pf.TmpSize)
	rootUser, rootGroup := c.identity(p, pf.User, pf.Group)
	p.ExitSignal = DefaultExitSignal
	if pf.ExitSignal != nil {
		if s, ok := pf.ExitSignal.(string); !ok {
			c.add(tomlstrict.Key{"exit_signal"}, "must be a signal name like \"TERM\", not %s", tomlType(pf.ExitSignal))
		} else if sig, err := ParseExitSignal(s); err != nil {
			c.add(tomlstrict.Key{"exit_signal"}, "%v", err)
		} else {
			p.ExitSignal = sig
		}
	}
	graceSet := c.duration(tomlstrict.Key{"grace"}, &p.Grace, pf.Grace)
	if p.Grace == 0 {
		p.Grace = DefaultGrace
	}
	p.Env = c.env(pf.Env)
	c.boolean(tomlstrict.Key{"user_namespace"}, &p.UserNamespace, pf.UserNamespace)
	if !p.DynamicUser && !p.UserNamespace {
		// Root outside a user namespace owns what root owns on the host:
		// whatever an rw path lets it write, and symlinks the sandbox
		// trusts as an operator's.
		if rootUser {
			c.add(tomlstrict.Key{"user"}, "root outside a user namespace is the host's root: set user_namespace = true, or name another user")
		}
		if rootGroup {
			c.add(tomlstrict.Key{"group"}, "group 0 outside a user namespace is the host's root group: set user_namespace = true, or name another group")
		}
	}
	if pf.Initiators != nil {
		if n, ok := c.integer(tomlstrict.Key{"initiators"}, pf.Initiators); ok {
			if n < 0 || n > maxInitiators {
				c.add(tomlstrict.Key{"initiators"}, "must be from 0 to %d", maxInitiators)
			} else {
				p.Initiators = int(n)
			}
		}
	}
	c.boolean(tomlstrict.Key{"spool"}, &p.Spool, pf.Spool)
	if pf.Mode != nil {
		m, _ := pf.Mode.(string)
		batch, err := ParseMode(m)
		if err != nil {
			c.add(tomlstrict.Key{"mode"}, "must be %q or %q, not %s", ModeInteractive, ModeBatch, quoted(pf.Mode))
		}
		p.Batch = batch
	}
	p.rlimits = c.rlimits(pf.Rlimits)
	c.view(p, pf.RO, pf.RW, pf.Tmpfs)
	c.boolean(tomlstrict.Key{"sys"}, &p.Sys, pf.Sys)
	c.seccomp(p, pf.Seccomp)

	// Combinations, checked only between values that are set and valid.
	// A job can use at most cpu x wall_time of CPU; without a cpu limit that
	// depends on the host's cores, so cpu_time may then exceed wall_time.
	if cpuTimeSet && wallSet && cpuSet {
		if most := float64(p.WallTime) * p.CPU; float64(p.CPUTime) > most {
			c.add(tomlstrict.Key{"cpu_time"}, "%s can never be used up: at cpu = %g a job gets at most %v of CPU within wall_time %s",
				quoted(pf.CPUTime), p.CPU, time.Duration(most).Round(time.Millisecond), quoted(pf.WallTime))
		}
	}
	if tmpSet && memSet && p.TmpSizeBytes > p.MemoryMaxBytes {
		c.add(tomlstrict.Key{"tmp_size"}, "%s is larger than memory %s: files in /tmp are charged to the job's memory",
			quoted(pf.TmpSize), quoted(pf.Memory))
	}
	if graceSet && wallSet && p.Grace > p.WallTime {
		c.add(tomlstrict.Key{"grace"}, "%s is longer than wall_time %s", quoted(pf.Grace), quoted(pf.WallTime))
	}

	if len(c.ps) > 0 {
		sort.SliceStable(c.ps, func(i, j int) bool { return c.ps[i].Line < c.ps[j].Line })
		return nil, c.ps
	}
	return p, nil
}

// quoted writes a raw value as it appeared in the file.
func quoted(r any) string {
	if s, ok := r.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(r)
}

// checker collects the problems of one file.
type checker struct {
	file string
	idx  *tomlstrict.Index
	ps   tomlstrict.Problems
}

func (c *checker) add(k tomlstrict.Key, format string, args ...any) {
	c.ps = append(c.ps, tomlstrict.Problem{File: c.file, Line: c.idx.KeyLine(k), Key: k.String(), Msg: fmt.Sprintf(format, args...)})
}

// cpu sets *dst from r and reports whether a limit was set.
func (c *checker) cpu(dst *float64, r any) bool {
	k := tomlstrict.Key{"cpu"}
	var f float64
	switch v := r.(type) {
	case nil:
		return false
	case int64:
		f = float64(v)
	case float64:
		f = v
	default:
		c.add(k, "must be a number of cores like 0.5 or 2, not %s", tomlType(r))
		return false
	}
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		c.add(k, "must be a number of cores like 0.5 or 2, not %v", f)
	case f < 0:
		c.add(k, "%g must not be negative", f)
	case f == 0:
		return false
	case f < minCPU:
		c.add(k, "%g is below the smallest limit, %g (the kernel's quota is at least 1ms per 100ms)", f, minCPU)
	case f > maxCPU:
		c.add(k, "%g is more cores than any machine has (at most %g)", f, maxCPU)
	default:
		*dst = f
		return true
	}
	return false
}

// size sets *dst from r and reports whether a non-zero size was set.
func (c *checker) size(k tomlstrict.Key, dst *int64, r any) bool {
	if r == nil {
		return false
	}
	var s Size
	if err := s.UnmarshalTOML(r); err != nil {
		c.add(k, "%v", err)
		return false
	}
	*dst = int64(s)
	return s > 0
}

// duration sets *dst from r and reports whether a non-zero duration was set.
func (c *checker) duration(k tomlstrict.Key, dst *time.Duration, r any) bool {
	if r == nil {
		return false
	}
	s, ok := r.(string)
	if !ok {
		c.add(k, "must be a duration with a unit, like \"30s\" or \"5m\", not %s", tomlType(r))
		return false
	}
	d, err := tomlstrict.ParseDuration(s)
	if err != nil {
		c.add(k, "%v", err)
		return false
	}
	*dst = d
	return d > 0
}

func (c *checker) integer(k tomlstrict.Key, r any) (int64, bool) {
	n, ok := r.(int64)
	if !ok {
		c.add(k, "must be an integer, not %s", tomlType(r))
	}
	return n, ok
}

func (c *checker) boolean(k tomlstrict.Key, dst *bool, r any) {
	if r == nil {
		return
	}
	b, ok := r.(bool)
	if !ok {
		c.add(k, "must be true or false, not %s", tomlType(r))
		return
	}
	*dst = b
}

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ValidEnvName reports whether s is an environment variable name.
func ValidEnvName(s string) bool { return envNameRe.MatchString(s) }

// env checks the allow-list's syntax; it does not look variables up.
func (c *checker) env(r any) []string {
	k := tomlstrict.Key{"env"}
	if r == nil {
		return nil
	}
	list, ok := r.([]any)
	if !ok {
		c.add(k, "must be a list of strings like [\"PATH\", \"LANG=C.UTF-8\"], not %s", tomlType(r))
		return nil
	}
	env := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			c.add(k, "must be a list of strings like [\"PATH\", \"LANG=C.UTF-8\"], not a list holding %s", tomlType(e))
			continue
		}
		if name, _, _ := strings.Cut(s, "="); !envNameRe.MatchString(name) {
			c.add(k, "%q is not a variable name", name)
			continue
		}
		env = append(env, s)
	}
	return env
}

// identity resolves user and group into p, and says whether the user and
// group it resolved are root's.
func (c *checker) identity(p *Policy, u, g any) (rootUser, rootGroup bool) {
	p.User, p.Group = DefaultUser, DefaultGroup
	uk, gk := tomlstrict.Key{"user"}, tomlstrict.Key{"group"}
	userOK := true
	primary := "" // the user's primary gid, when known
	if s, ok := c.idString(uk, "user", u); !ok {
		userOK = false
	} else {
		if s != "" {
			p.User = s
		}
		if p.User == DynamicUser {
			p.DynamicUser, p.Group = true, DynamicUser
			if g != nil {
				c.add(gk, "a dynamic user has a group of its own: leave group out, or name a user")
			}
			return false, false
		}
		uid, gid, err := lookupUser(p.User)
		if err != nil {
			c.add(uk, "%v", err)
			userOK = false
		}
		p.UID, primary = uid, gid
		rootUser = userOK && uid == 0
	}
	s, ok := c.idString(gk, "group", g)
	if !ok {
		return rootUser, false
	}
	if s != "" {
		p.Group = s
		gid, found, err := lookupGroup(s)
		switch {
		case err != nil:
			c.add(gk, "%v", err)
		case !found:
			c.add(gk, "unknown group %q", s)
		}
		p.GID = gid
		return rootUser, err == nil && found && gid == 0
	}
	gid, found, err := lookupGroup(DefaultGroup)
	switch {
	case err != nil:
		c.add(gk, "default group: %v", err)
	case found:
		p.GID = gid
	case primary != "":
		// No "nogroup" here (Fedora, say): the user's own group, usually
		// nobody's, is the next best thing.
		gid, ok := parseID(primary)
		if !ok {
			c.add(gk, "user %q has primary group %q, not a number: set group", p.User, primary)
		}
		p.Group, p.GID = primary, gid
	case userOK:
		c.add(gk, "the default group %q does not exist here, and user %q has no primary group: set group", DefaultGroup, p.User)
	}
	return rootUser, false
}

// idString returns a user or group value as a string ("" when absent).
func (c *checker) idString(k tomlstrict.Key, what string, r any) (string, bool) {
	switch v := r.(type) {
	case nil:
		return "", true
	case string:
		if v == "" {
			c.add(k, "must not be empty")
			return "", false
		}
		return v, true
	case int64:
		if v < 0 || v >= math.MaxUint32 {
			c.add(k, "%d is not a valid %s id (0 to %d)", v, what, uint32(math.MaxUint32-1))
			return "", false
		}
		return strconv.FormatInt(v, 10), true
	}
	c.add(k, "must be a %s name or a numeric id, not %s", what, tomlType(r))
	return "", false
}

// parseID reads a numeric user or group id; ok is false for names.
func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

// lookupUser resolves a user name or numeric id into its uid, and the
// primary gid when the system knows the user (a numeric id need not exist).
func lookupUser(s string) (uint32, string, error) {
	if uid, ok := parseID(s); ok {
		u, err := user.LookupId(s)
		var unknown user.UnknownUserIdError
		if errors.As(err, &unknown) {
			return uid, "", nil // a uid need not have a passwd entry
		}
		if err != nil {
			return 0, "", fmt.Errorf("look up uid %s: %w", s, err)
		}
		return uid, u.Gid, nil
	}
	u, err := user.Lookup(s)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		return 0, "", fmt.Errorf("unknown user %q", s)
	}
	if err != nil {
		return 0, "", fmt.Errorf("look up user %q: %w", s, err)
	}
	uid, ok := parseID(u.Uid)
	if !ok {
		return 0, "", fmt.Errorf("user %q has uid %q, not a number", s, u.Uid)
	}
	return uid, u.Gid, nil
}

// lookupGroup resolves a group name or numeric id into its gid; found is
// false for a name the system does not know.
func lookupGroup(s string) (gid uint32, found bool, err error) {
	if gid, ok := parseID(s); ok {
		return gid, true, nil
	}
	g, err := user.LookupGroup(s)
	var unknown user.UnknownGroupError
	if errors.As(err, &unknown) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look up group %q: %w", s, err)
	}
	gid, ok := parseID(g.Gid)
	if !ok {
		return 0, false, fmt.Errorf("group %q has gid %q, not a number", s, g.Gid)
	}
	return gid, true, nil
}

// rlimits checks the [rlimits] table; soft and hard limits are the same.
// (A map field would not do: the TOML decoder quietly leaves a map empty when
// the value is not a table.)
func (c *checker) rlimits(r any) []specs.POSIXRlimit {
	if r == nil {
		return nil
	}
	m, ok := r.(map[string]any)
	if !ok {
		c.add(tomlstrict.Key{"rlimits"}, "must be a table like [rlimits] or { nofile = 64 }, not %s", tomlType(r))
		return nil
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	known := make(map[string]rlimitKind, len(rlimitKinds))
	keys := make([]string, len(rlimitKinds))
	for i, kind := range rlimitKinds {
		known[kind.key] = kind
		keys[i] = kind.key
	}
	values := make(map[string]uint64)
	for _, name := range names {
		k := tomlstrict.Key{"rlimits", name}
		kind, ok := known[name]
		if !ok {
			c.add(k, "unknown rlimit (use %s)", strings.Join(keys, ", "))
			continue
		}
		if n, ok := c.rlimit(k, kind, m[name]); ok {
			values[name] = n
		}
	}
	var out []specs.POSIXRlimit
	for _, kind := range rlimitKinds {
		if n, ok := values[kind.key]; ok {
			out = append(out, specs.POSIXRlimit{Type: kind.typ, Soft: n, Hard: n})
		}
	}
	return out
}

func (c *checker) rlimit(k tomlstrict.Key, kind rlimitKind, v any) (uint64, bool) {
	want := `an integer or "unlimited"`
	if kind.bytes {
		want = `an integer, a size like "8MiB" or "unlimited"`
	}
	switch v := v.(type) {
	case int64:
		if v < 0 {
			c.add(k, "%d must not be negative", v)
			return 0, false
		}
		return uint64(v), true
	case string:
		switch {
		case v == "unlimited" && kind.key == "nofile":
			c.add(k, "cannot be \"unlimited\": the kernel caps open files at fs.nr_open")
		case v == "unlimited":
			return RlimitInfinity, true
		case kind.bytes:
			n, err := ParseSize(v)
			if err != nil {
				c.add(k, "%v", err)
				return 0, false
			}
			return uint64(n), true
		default:
			c.add(k, "must be %s, not %q", want, v)
		}
		return 0, false
	}
	c.add(k, "must be %s, not %s", want, tomlType(v))
	return 0, false
}
