// Package supervisor owns the job lifecycle: admission against caps, job IDs,
// the table of running jobs, the pumps between a process and its client, and
// termination (exit signal, grace, kill) for every way a job can end.
package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
)

func policyName(a *App) string {
	if a.Policy == nil {
		return ""
	}
	return a.Policy.Name
}

// sampleLoop reads every running job each SampleEvery, in one goroutine
// for all jobs: a sandboxed job's cgroup (OOM kills, CPU time, memory; on
// v1 this reading is also when the sandbox ends the rest of a job the OOM
// killer struck: sandbox.Isolation.OOMGroup) and every job's traffic. The readings go to the ledger as
// one transaction per tick (samples and last_seen), and records whose
// write failed earlier are written again.
func (s *Supervisor) sampleLoop() {
	defer close(s.sampleDone)
	t := time.NewTicker(s.sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stopLoops.Done():
			return
		case <-t.C:
		}
		s.sample()
		s.tuneMemoryLimit()
	}
}

func (s *Supervisor) sample() {
	s.mu.Lock()
	jobs := make([]*Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		if j.proc != nil {
			jobs = append(jobs, j)
		}
	}
	s.mu.Unlock()
	items := make([]accounting.TickItem, 0, len(jobs))
	for _, j := range jobs {
		sample := j.sample()
		items = append(items, accounting.TickItem{ID: j.ID, Sample: sample})
	}
	if s.ledger == nil {
		return
	}
	var err error
	if len(items) == 0 {
		err = s.ledger.Flush()
	} else {
		err = s.ledger.Tick(time.Now(), items)
	}
	if err != nil {
		s.log.Warn("ledger sample tick", "err", err)
	}
}

var (
	// ErrBusy is returned by Start when max_sessions jobs are running.
	ErrBusy = errors.New("too many sessions")
	// ErrShuttingDown is returned by Start once Shutdown has begun.
	ErrShuttingDown = errors.New("server is shutting down")
	// ErrUnknownApp is returned by Start for a name that is not configured.
	ErrUnknownApp = errors.New("unknown app")
	// ErrNoJob is returned for a job ID that is not running.
	ErrNoJob = errors.New("no such running job")
	// ErrTenantBusy is returned by Start when the tenant's max_sessions
	// jobs are running.
	ErrTenantBusy = errors.New("too many sessions for this tenant")
	// ErrClientBusy is returned by Start when the client's address has
	// MaxSessionsPerClient jobs running.
	ErrClientBusy = errors.New("too many sessions from this address")
	// ErrCannotStart is wrapped by Start's error when the job could not
	// start for a reason no retry fixes (see cannotStart): the app, its
	// files or its policy need mending first. Any other start failure may
	// pass, as the host frees memory, processes or ids.
	ErrCannotStart = errors.New("the app cannot run")
)

// App is one configured program, fully resolved: Path is absolute and Env is
// the complete allow-listed environment, both fixed when the config loaded.
type App struct {
	Name       string
	Path       string
	Args       []string // argv, including argv[0]
	Dir        string
	Env        []string // NAME=value
	ExitSignal syscall.Signal
	Grace      time.Duration
	// Binary apps exchange raw bytes when no sub-protocol is negotiated.
	Binary bool
	// Policy is the job class: limits, namespaces, user. With the sandbox
	// off only its time and output limits apply.
	Policy *policies.Policy
	// ReadOnly are host paths this app's sandboxed jobs see read-only
	// besides their policy's view and Dir (quick mode: the program).
	ReadOnly []string
	// PassHeaders are the request headers withheld by default (Cookie,
	// Authorization, Proxy-Authorization) that this app's jobs get as
	// HTTP_* variables, canonical.
	PassHeaders []string
	// Mode is the app's own mode key: policies.ModeBatch or
	// ModeInteractive, which win over its policy's; "": the policy's (see
	// RunsBatch).
	Mode string
}

// Tenant is who runs a job. Its Policy, when set, replaces the app's.
type Tenant struct {
	Name        string
	TokenSHA256 [32]byte // sha256 of the bearer token
	Policy      *policies.Policy
	MaxSessions int // 0: only the global cap
}

// PublicTenant is everyone when no tenants are configured.
var PublicTenant = &Tenant{Name: "public"}

// Runner starts jobs' processes. *sandbox.Runner is the real one; only
// one can exist in a process, so the caller makes it and several
// supervisors (tests running in parallel) may share it. A stand-in that
// runs plain processes suits tests that do not test the kernel; its
// NewPool may return nil (no prepared sandboxes).
type Runner interface {
	Start(sandbox.Spec) (*sandbox.Process, error)
	NewPool(log *slog.Logger, tmpl sandbox.Isolation, size int) *sandbox.Pool
}

// Config is what a Supervisor needs. Zero durations take the defaults below.
type Config struct {
	// Runner starts the jobs. nil: New makes a sandbox.Runner with the
	// default options, and Shutdown closes it.
	Runner Runner
	// Hide lists the server's own files (config, policy dir, data dir,
	// binary): no job's view shows them, even inside a path it binds.
	Hide        []string
	Apps        []App
	Tenants     []Tenant // none: everyone is PublicTenant
	MaxSessions int
	// MaxSessionsPerClient caps the jobs of one client address
	// (Request.Client), so that one client cannot take every session; 0:
	// no cap but MaxSessions.
	MaxSessionsPerClient int
	// Drain bounds how long output is still read after the job's process has
	// exited (a descendant that escaped the kill may hold the stdout pipe or the socket).
	Drain time.Duration
	// OnEnd, when set, is called once per job as it ends, before its client
	// is told. It runs on the job's goroutine and must not block for long.
	// It is a subscription made by New (see Subscribe) that lasts as long as
	// the Supervisor; Reload does not change it.
	OnEnd func(JobInfo, Exit)
	// Sandbox runs every job in its own cgroup and namespaces, per its
	// app's policy. Off: plain processes (development, or not root).
	Sandbox bool
	// SampleEvery is how often running jobs are read (cgroup usage and
	// traffic) and sampled into the ledger; 0 means DefaultSampleEvery.
	SampleEvery time.Duration
	// Ledger, when set, records every job (write-ahead) and issues job
	// IDs. Without it, IDs are unique only for the Supervisor's life.
	Ledger *accounting.Ledger
	// CgroupParent is where this supervisor's job cgroups live (see
	// sandbox.Isolation). Empty: CgroupParentFor(Ledger) with a ledger,
	// which is what Recover sweeps, else sandbox.DefaultCgroupParent.
	CgroupParent string
	// Retention, when set with a Ledger, prunes records of jobs that
	// started longer ago than this, at start and then hourly.
	Retention time.Duration
	// SpoolDir holds the spools of batch jobs and of spool = true
	// policies (see spool.go); "": such apps' jobs cannot start.
	SpoolDir string
	// SpoolRetention, when set with a SpoolDir, prunes spool files last
	// written longer ago than this, at start and then hourly.
	SpoolRetention time.Duration
	// ReplayMemoryMaxBytes bounds the replay rings of all jobs together
	// (replay_memory_max); 0 means DefaultReplayMemoryMax. When it is
	// spent, jobs' output waits (see ring).
	ReplayMemoryMaxBytes int64
	// TuneMemoryLimit keeps the Go runtime's soft memory limit at what
	// full rings need (see memlimit.go). It is process-wide: only a server
	// that is the process's one supervisor sets it, and not when the
	// operator set GOMEMLIMIT.
	TuneMemoryLimit bool
}

// Defaults for Config and App.
const (
	DefaultMaxSessions = 1024
	DefaultGrace       = 5 * time.Second
	DefaultDrain       = 2 * time.Second
	DefaultExitSignal  = policies.DefaultExitSignal
	DefaultSampleEvery = 5 * time.Second
)

// ReasonStartFailed is recorded for a job whose process could not be made
// (its client got an error, never a session).
const ReasonStartFailed Reason = "start-failed"

// Supervisor runs jobs. It is safe for concurrent use.
type Supervisor struct {
	log       *slog.Logger
	runner    Runner
	ownRunner *sandbox.Runner // made by New, closed by Shutdown
	hide      []string
	drain     time.Duration
	box       bool

	// hooksMu is held for reading while hooks run, so that unsubscribing
	// waits for them.
	hooksMu sync.RWMutex
	hooks   []*Hooks
	// usageLoops counts the Usage hooks' goroutines; after usageClosed
	// (set by Shutdown, under hooksMu) none is started.
	usageLoops  sync.WaitGroup
	usageClosed bool

	ledger       *accounting.Ledger
	cgroupParent string
	budget       *budget // every job's ring
	// settling counts the jobs in the table whose process has ended, their
	// end not yet delivered (Job.settling): the caps count processes, and
	// an ended job waiting for its client to come back holds none.
	settling   int
	tuneMemory bool // Config.TuneMemoryLimit

	poolMu      sync.Mutex
	pools       map[poolKey]*prepared              // prepared sandboxes, per policy and app paths in use
	poolsClosed bool                               // by Shutdown: no pool is made after
	filters     map[*policies.Policy]seccompFilter // compiled per policy in use

	sampleEvery time.Duration
	stopLoops   context.Context // done when Shutdown stops the sampler and the pruner
	stopCancel  context.CancelFunc
	sampleDone  chan struct{}
	pruneDone   chan struct{}
	spool       spoolState

	apps         atomic.Pointer[map[string]*App]
	tenants      atomic.Pointer[[]*Tenant]
	maxSessions  atomic.Int64
	maxPerClient atomic.Int64
	lastID       atomic.Uint64 // without a ledger
	started      atomic.Uint64
	cgroupErrors atomic.Int64

	mu        sync.Mutex
	jobs      map[string]*Job
	admitting map[*Job]bool // admitted, waiting for their ID
	closing   bool
	wg        sync.WaitGroup // one per job, from Start until its resources are released
}

// New starts a Supervisor and its sandbox runner. Call Shutdown to stop it.
func New(log *slog.Logger, cfg Config) (*Supervisor, error) {
	runner, own := cfg.Runner, (*sandbox.Runner)(nil)
	if runner == nil {
		r, err := sandbox.NewRunner(log, sandbox.RunnerOptions{})
		if err != nil {
			return nil, fmt.Errorf("start sandbox runner: %w", err)
		}
		runner, own = r, r
	}
	s := &Supervisor{
		log:       log,
		runner:    runner,
		ownRunner: own,
		hide:      cfg.Hide,
		drain:     cfg.Drain,
		box:       cfg.Sandbox,
		jobs:      make(map[string]*Job),
		pools:     make(map[poolKey]*prepared),
		filters:   make(map[*policies.Policy]seccompFilter),

		admitting:    make(map[*Job]bool),
		ledger:       cfg.Ledger,
		cgroupParent: cfg.CgroupParent,

		sampleEvery: cfg.SampleEvery,
		sampleDone:  make(chan struct{}),
		budget:      newBudget(cfg.ReplayMemoryMaxBytes),
		tuneMemory:  cfg.TuneMemoryLimit,
	}
	if s.drain <= 0 {
		s.drain = DefaultDrain
	}
	if s.cgroupParent == "" && s.ledger != nil {
		s.cgroupParent = CgroupParentFor(s.ledger)
	}
	if s.sampleEvery <= 0 {
		s.sampleEvery = DefaultSampleEvery
	}
	s.stopLoops, s.stopCancel = context.WithCancel(context.Background())
	if onEnd := cfg.OnEnd; onEnd != nil {
		s.Subscribe(Hooks{Ended: func(info JobInfo, e Exit, _ accounting.Record) { onEnd(info, e) }})
	}
	s.Reload(cfg)
	s.tuneMemoryLimit() // before the first job: rings may fill before the first tick
	go s.sampleLoop()
	s.pruneDone = make(chan struct{})
	if s.ledger != nil && cfg.Retention > 0 {
		go s.pruneLoop(cfg.Retention)
	} else {
		close(s.pruneDone)
	}
	s.startSpool(cfg)
	return s, nil
}

// Hooks are one subscriber's callbacks on every job's life (Subscribe);
// any may be nil. They run on the jobs' goroutines (Started perhaps on
// the one that calls StartRecorded), for several jobs at once, so they
// must be safe for concurrent use. They must not block (queue the news
// and return), nor call Subscribe or an unsubscribe, which wait for
// running hooks.
//
// A job whose process started gets exactly one Started and then exactly
// one Ended, however short it is; Started returns before Ended is called.
// A job that never got a process (start-failed) gets neither. A
// subscriber that joins while a job runs gets only its Ended.
type Hooks struct {
	// Started is called when the job's start record is durable
	// (StartRecorded), before anything of the job reaches its client. rec
	// is its record then: state running, with its pid.
	Started func(info JobInfo, rec accounting.Record)
	// Ended is called once output is drained and the process reaped,
	// before the client is told. rec is the final record, which may still
	// be committing to the ledger.
	Ended func(info JobInfo, e Exit, rec accounting.Record)
	// Usage is called every UsageEvery (DefaultUsageEvery when 0) until
	// unsubscribe or Shutdown, on a goroutine of the subscription's own.
	// running returns every running job as it stands (Jobs: traffic
	// counted to the moment, cgroup usage as of the last sample); a
	// subscriber with no use for a tick returns without calling it, and
	// the tick then costs nothing.
	Usage      func(running func() []JobInfo)
	UsageEvery time.Duration
}

// DefaultUsageEvery is how often a Usage hook is called by default.
const DefaultUsageEvery = time.Second

// Subscribe calls h's hooks for every job from now on, until unsubscribe,
// which may be called more than once. Once unsubscribe returns, none of
// h's hooks is running or will be called.
func (s *Supervisor) Subscribe(h Hooks) (unsubscribe func()) {
	p := &h
	stop := make(chan struct{})
	done := make(chan struct{})
	s.hooksMu.Lock()
	s.hooks = append(s.hooks, p)
	if h.Usage != nil && !s.usageClosed {
		s.usageLoops.Add(1)
		go s.usageLoop(p, stop, done)
	} else {
		close(done)
	}
	s.hooksMu.Unlock()
	return sync.OnceFunc(func() {
		s.hooksMu.Lock()
		s.hooks = slices.DeleteFunc(s.hooks, func(q *Hooks) bool { return q == p })
		s.hooksMu.Unlock()
		close(stop)
		<-done
	})
}

// usageLoop calls h.Usage each h.UsageEvery until stop is closed or
// Shutdown stops the loops; done is closed when it has returned.
func (s *Supervisor) usageLoop(h *Hooks, stop <-chan struct{}, done chan<- struct{}) {
	defer s.usageLoops.Done()
	defer close(done)
	every := h.UsageEvery
	if every <= 0 {
		every = DefaultUsageEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-s.stopLoops.Done():
			return
		case <-t.C:
			h.Usage(s.Jobs)
		}
	}
}

// jobStarted runs the Started hooks for j, once its start record is
// durable.
func (s *Supervisor) jobStarted(j *Job) {
	s.fire(j, func(h *Hooks) func(JobInfo, accounting.Record) { return h.Started })
}

// jobEnded runs the Ended hooks for j, whose final record is made.
func (s *Supervisor) jobEnded(j *Job, e Exit) {
	s.fire(j, func(h *Hooks) func(JobInfo, accounting.Record) {
		if h.Ended == nil {
			return nil
		}
		return func(info JobInfo, rec accounting.Record) { h.Ended(info, e, rec) }
	})
}

// fire calls the hook pick chooses of every subscriber that has one, with
// j as it stands: read once, and only when some subscriber has the hook.
func (s *Supervisor) fire(j *Job, pick func(*Hooks) func(JobInfo, accounting.Record)) {
	s.hooksMu.RLock()
	defer s.hooksMu.RUnlock()
	var rec accounting.Record
	var info JobInfo
	read := false
	for _, h := range s.hooks {
		call := pick(h)
		if call == nil {
			continue
		}
		if !read {
			rec, info = j.snapshot()
			read = true
		}
		call(info, rec)
	}
}

// pruneEvery is how often old records are pruned.
const pruneEvery = time.Hour

// pruneLoop deletes records older than retention, in bounded transactions
// (the ledger's Prune), until Shutdown.
func (s *Supervisor) pruneLoop(retention time.Duration) {
	s.periodically(s.pruneDone, pruneEvery, func() bool {
		n, err := s.ledger.Prune(s.stopLoops, time.Now().Add(-retention), 500)
		if errors.Is(err, context.Canceled) {
			s.log.Info("ledger retention: stopped for shutdown; the rest is pruned after the restart", "jobs", n)
			return false
		}
		if err != nil {
			s.log.Error("ledger retention", "err", err)
		} else if n > 0 {
			s.log.Info("ledger retention: pruned old records", "jobs", n, "retention", retention)
		}
		return true
	})
}

// periodically runs pass at once, then every interval, until Shutdown or
// until pass returns false; then it closes done. It runs on the caller's
// goroutine, which Shutdown waits for through done.
func (s *Supervisor) periodically(done chan struct{}, every time.Duration, pass func() bool) {
	defer close(done)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-s.stopLoops.Done():
			return
		case <-t.C:
		}
		if !pass() {
			return
		}
		t.Reset(every)
	}
}

// Reload swaps the app set and caps. Running jobs keep what they started with.
func (s *Supervisor) Reload(cfg Config) {
	apps := make(map[string]*App, len(cfg.Apps))
	for i := range cfg.Apps {
		a := cfg.Apps[i]
		if a.Grace <= 0 {
			a.Grace = DefaultGrace
		}
		if a.ExitSignal == 0 {
			a.ExitSignal = DefaultExitSignal
		}
		apps[a.Name] = &a
	}
	s.apps.Store(&apps)
	tenants := make([]*Tenant, len(cfg.Tenants))
	for i := range cfg.Tenants {
		t := cfg.Tenants[i]
		tenants[i] = &t
	}
	s.tenants.Store(&tenants)
	s.maxSessions.Store(int64(cmp.Or(max(cfg.MaxSessions, 0), DefaultMaxSessions)))
	s.maxPerClient.Store(int64(max(cfg.MaxSessionsPerClient, 0)))
	s.syncPools(cfg)
}

// poolKey is what a prepared sandbox is made for: a policy, by name so a
// reload that leaves it as it was keeps its pool, and the app's paths its
// view binds (appPaths).
type poolKey struct {
	policy string
	paths  string
}

// prepared is a pool and what it prepares: the template of policy pol's
// jobs. Only jobs of that very policy take from it.
type prepared struct {
	pol  *policies.Policy // its size is pol.Initiators
	tmpl sandbox.Isolation
	pool *sandbox.Pool
}

// appPaths is what of a's own its jobs' views bind: its dir and ReadOnly.
func appPaths(a *App) string { return a.Dir + "\x00" + strings.Join(a.ReadOnly, "\x00") }

// seccompFilter is a policy's compiled filter, or why it would not compile.
type seccompFilter struct {
	f   *sandbox.SeccompFilter
	err error
}

// poolUse is a policy in use and an app it is in use for.
type poolUse struct {
	pol *policies.Policy
	app *App
}

// poolsFor is every policy and app paths cfg's jobs may run with.
func poolsFor(cfg Config) map[poolKey]poolUse {
	inUse := make(map[poolKey]poolUse)
	for i := range cfg.Apps {
		a := &cfg.Apps[i]
		if a.Policy != nil {
			inUse[poolKey{a.Policy.Name, appPaths(a)}] = poolUse{a.Policy, a}
		}
		for _, t := range cfg.Tenants {
			if t.Policy != nil {
				inUse[poolKey{t.Policy.Name, appPaths(a)}] = poolUse{t.Policy, a}
			}
		}
	}
	return inUse
}

// PreparedMost is the most sandboxes cfg's pools hold prepared at once,
// by policy: a pool per policy and app paths in use.
func PreparedMost(cfg Config) map[*policies.Policy]int {
	most := make(map[*policies.Policy]int)
	for _, u := range poolsFor(cfg) {
		if u.pol.Initiators > 0 {
			most[u.pol] += sandbox.PoolHolds(u.pol.Initiators)
		}
	}
	return most
}

// syncPools compiles the seccomp filter of each policy in use (by an app,
// or a tenant for any app), keeps one pool of prepared sandboxes for each
// policy and app paths in use whose policy asks for initiators, and closes
// the pools no longer in use. A pool whose template and size a reload left
// as they were is kept, with its prepared sandboxes.
func (s *Supervisor) syncPools(cfg Config) {
	if !s.box {
		return
	}
	inUse := poolsFor(cfg)
	filters := make(map[*policies.Policy]seccompFilter)
	for _, u := range inUse {
		if _, ok := filters[u.pol]; !ok {
			f, err := compileSeccomp(u.pol)
			if err != nil {
				s.log.Error("policy's seccomp profile does not compile: its jobs will not start", "policy", u.pol.Name, "err", err)
			}
			filters[u.pol] = seccompFilter{f, err}
		}
	}
	s.poolMu.Lock()
	s.filters = filters
	if cfg.Hide != nil {
		s.hide = cfg.Hide
	}
	if s.poolsClosed {
		s.poolMu.Unlock()
		return
	}
	var stale []*sandbox.Pool
	for k, u := range inUse {
		var tmpl sandbox.Isolation
		var err error
		if u.pol.Initiators > 0 && filters[u.pol].err == nil {
			tmpl, err = s.isolationLocked(u.pol, u.app, "")
		}
		want := u.pol.Initiators > 0 && filters[u.pol].err == nil && err == nil
		if p, ok := s.pools[k]; ok {
			if want && p.pol.Initiators == u.pol.Initiators && reflect.DeepEqual(p.tmpl, tmpl) {
				p.pol = u.pol
				continue
			}
			stale = append(stale, p.pool)
			delete(s.pools, k)
		}
		if !want {
			continue
		}
		if pool := s.runner.NewPool(s.log.With("pool", u.pol.Name, "app", u.app.Name), tmpl, u.pol.Initiators); pool != nil {
			s.pools[k] = &prepared{pol: u.pol, tmpl: tmpl, pool: pool}
		}
	}
	for k, p := range s.pools {
		if _, ok := inUse[k]; !ok {
			stale = append(stale, p.pool)
			delete(s.pools, k)
		}
	}
	s.poolMu.Unlock()
	for _, p := range stale {
		p.Close()
	}
}

// compileSeccomp is pol's filter, or nil for seccomp = "off".
func compileSeccomp(pol *policies.Policy) (*sandbox.SeccompFilter, error) {
	switch pol.Seccomp {
	case policies.SeccompOff:
		return nil, nil
	case policies.SeccompDefault:
		return sandbox.CompileSeccomp(sandbox.DefaultSeccomp())
	}
	return sandbox.CompileSeccomp(pol.SeccompProfile)
}

// closePools closes every pool, for good: a reload racing Shutdown makes
// no new one.
func (s *Supervisor) closePools() {
	s.poolMu.Lock()
	pools := s.pools
	s.pools = make(map[poolKey]*prepared)
	s.poolsClosed = true
	s.poolMu.Unlock()
	for _, p := range pools {
		p.pool.Close()
	}
}

// CgroupParentFor is where the jobs of ledger l's server live: one parent
// per ledger, so recovery after a crash sweeps that server's cgroups and
// never another's (the ledger's lock says which server owns them).
func CgroupParentFor(l *accounting.Ledger) string {
	return sandbox.DefaultCgroupParent + "/" + l.Instance()
}

// isolation is the sandbox of a job of policy pol for app a, for job id
// ("" for a pool template).
func (s *Supervisor) isolation(pol *policies.Policy, a *App, id string) (sandbox.Isolation, error) {
	s.poolMu.Lock()
	defer s.poolMu.Unlock()
	return s.isolationLocked(pol, a, id)
}

// ViewOf is the view of app a's jobs under policy pol, hide hidden in it:
// the policy's paths, and the app's own dir and ReadOnly paths read-only.
func ViewOf(pol *policies.Policy, a *App, hide []string) sandbox.View {
	view := sandbox.View{RO: append(slices.Clip(pol.ReadOnly), a.ReadOnly...), RW: pol.ReadWrite, Tmpfs: pol.Tmpfs, Hide: hide, Sys: pol.Sys}
	if a.Dir != "" && a.Dir != "/" {
		view.RO = append(view.RO, a.Dir)
	}
	return view
}

func (s *Supervisor) isolationLocked(pol *policies.Policy, a *App, id string) (sandbox.Isolation, error) {
	f, ok := s.filters[pol]
	if !ok { // a policy the last Reload did not see in use
		f.f, f.err = compileSeccomp(pol)
		s.filters[pol] = f
	}
	if f.err != nil {
		return sandbox.Isolation{}, fmt.Errorf("policy %s: %w", pol.Name, f.err)
	}
	view := ViewOf(pol, a, s.hide)
	iso := sandbox.Isolation{
		ID: id, CgroupParent: s.cgroupParent, Resources: pol.LinuxResources(), OOMGroup: pol.OOMGroup(),
		Rlimits: pol.Rlimits(), Network: pol.Network,
		TmpSizeBytes: pol.TmpSizeBytes, UID: pol.UID, GID: pol.GID, DynamicUser: pol.DynamicUser,
		UserNamespace: pol.UserNamespace, View: view, Seccomp: f.f,
	}
	if !pol.DynamicUser {
		iso.UserName, iso.GroupName = pol.User, pol.Group
	}
	return iso, nil
}

// start launches spec in a prepared sandbox of its policy and dir when one
// is ready, and prepares one on the spot otherwise (or if the prepared one
// fails: it may have been killed while it waited).
func (s *Supervisor) start(j *Job, spec sandbox.Spec) (*sandbox.Process, error) {
	if spec.Isolation != nil {
		var pool *sandbox.Pool
		s.poolMu.Lock()
		if p := s.pools[poolKey{j.App.Policy.Name, appPaths(j.App)}]; p != nil && p.pol == j.App.Policy {
			pool = p.pool
		}
		s.poolMu.Unlock()
		if pool != nil {
			if in := pool.Get(); in != nil {
				p, err := in.Launch(spec)
				if err == nil {
					return p, nil
				}
				j.log.Warn("prepared sandbox failed; preparing a new one", "err", err)
			}
		}
		j.begun() // write-ahead: the record before the job's own cgroup
	}
	return s.runner.Start(spec)
}

// Tenants returns the configured tenants; none means everyone is public.
func (s *Supervisor) Tenants() []*Tenant { return *s.tenants.Load() }

// App returns the configured app called name.
func (s *Supervisor) App(name string) (*App, bool) {
	a, ok := (*s.apps.Load())[name]
	return a, ok
}

// Apps returns the configured app names, sorted.
func (s *Supervisor) Apps() []string {
	m := *s.apps.Load()
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (s *Supervisor) admitLocked(j *Job) error {
	if s.closing {
		return ErrShuttingDown
	}
	if int64(len(s.jobs)-s.settling+len(s.admitting)) >= s.maxSessions.Load() {
		return ErrBusy
	}
	t, perClient := j.Tenant, s.maxPerClient.Load()
	tenantCap := t != nil && t.MaxSessions > 0
	clientCap := perClient > 0 && j.Client != ""
	if !tenantCap && !clientCap {
		return nil
	}
	var byTenant, byClient int64
	count := func(o *Job) {
		if tenantCap && o.Tenant.Name == t.Name {
			byTenant++
		}
		if clientCap && o.Client == j.Client {
			byClient++
		}
	}
	for _, o := range s.jobs {
		if !o.settling {
			count(o)
		}
	}
	for o := range s.admitting {
		count(o)
	}
	if tenantCap && byTenant >= int64(t.MaxSessions) {
		return fmt.Errorf("%w %q (max_sessions %d)", ErrTenantBusy, t.Name, t.MaxSessions)
	}
	if clientCap && byClient >= perClient {
		return fmt.Errorf("%w %s (max_sessions_per_client %d)", ErrClientBusy, j.Client, perClient)
	}
	return nil
}

// Request is everything about a new job that comes from its client.
type Request struct {
	App    string
	Tenant *Tenant  // nil: PublicTenant
	Env    []string // request variables (CGI), appended after the app's allow-list
	Remote string
	// Client is who the per-client cap counts: the client's address (an
	// IPv6 client's /64); "" is never capped.
	Client    string
	UserAgent string
	Protocol  string
}

// Start admits and starts a job. The caller must then call Run or Abort.
// Its steps: resolve the app and tenant, admit the job against the caps,
// record it (write-ahead) and give it its ID, make its spec, start its
// process, and publish it as running. A job that fails after admission is
// recorded as start-failed and released.
func (s *Supervisor) Start(req Request) (*Job, error) {
	j, err := s.newJob(req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if err := s.admitLocked(j); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	s.admitting[j] = true // holds the slot while the record is written
	s.wg.Add(1)
	s.mu.Unlock()
	s.recordStart(j, req)
	spec, err := s.specOf(j, req)
	if err != nil { // the policy's: the same for every job of it
		err = fmt.Errorf("%w: %w", ErrCannotStart, err)
	}
	if err == nil {
		err = s.openSpool(j)
	}
	s.started.Add(1)
	var p *sandbox.Process
	if err == nil {
		p, err = s.start(j, spec)
	}
	if err != nil {
		return nil, s.startFailed(j, spec, err)
	}
	s.running(j, p, req, spec.Isolation != nil)
	return j, nil
}

// newJob is a job of req's app for req's tenant (PublicTenant when none),
// under the tenant's policy when it has one.
func (s *Supervisor) newJob(req Request) (*Job, error) {
	app, ok := s.App(req.App)
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownApp, req.App)
	}
	tenant := req.Tenant
	if tenant == nil {
		tenant = PublicTenant
	}
	if tenant.Policy != nil { // the tenant's class replaces the app's
		a := *app
		a.Policy = tenant.Policy
		app = &a
	}
	j := &Job{App: app, Tenant: tenant, Remote: req.Remote, Client: req.Client, Protocol: req.Protocol, sup: s,
		resume: newResumeToken(), attachReady: make(chan struct{}), settled: make(chan struct{}),
		watchers: make(map[*attachment]bool)}
	if pol := app.Policy; pol != nil {
		j.detachTimeout = pol.DetachTimeout
	}
	return j, nil
}

// recordStart gives an admitted job its record and ID, and moves it from
// the admitting set into the session table.
//
// Write-ahead: a sandbox made for the job has a cgroup named after it, so
// its record is on disk before that cgroup exists. Otherwise the record
// commits while the job forks (a plain job has no cgroup and dies with the
// server; a prepared sandbox's cgroup predates the job, and recovery sweeps
// it as unrecorded), but before anyone is told the job started: see
// StartRecorded.
func (s *Supervisor) recordStart(j *Job, req Request) {
	app := j.App
	j.rec = accounting.Record{App: app.Name, Tenant: j.Tenant.Name, Policy: policyName(app),
		Command: app.Args, RemoteAddr: req.Remote, UserAgent: req.UserAgent, Protocol: req.Protocol,
		Sandboxed: s.box && app.Policy != nil, Limits: limitsOf(app), Spool: app.Spooled()}
	j.begun = func() {}
	if s.ledger != nil {
		begun := s.ledger.BeginNow(&j.rec)
		j.begun = sync.OnceFunc(func() {
			if err := begun(); err != nil {
				// The job runs; the ledger keeps the record to write it again.
				s.log.Error("ledger: record job start", "job", j.rec.ID, "err", err)
			}
		})
	} else {
		j.rec.ID, j.rec.State, j.rec.StartedAt = accounting.FormatID(s.lastID.Add(1)), accounting.StateStarting, time.Now()
	}
	j.ID = j.rec.ID
	j.log = s.log.With("job", j.ID, "app", app.Name, "tenant", j.Tenant.Name)
	s.mu.Lock()
	delete(s.admitting, j)
	s.jobs[j.ID] = j
	s.mu.Unlock()
}

// specOf is what the job's process is started from: the app's program and
// environment, the request's variables and the job's own, and, for a
// sandboxed job, its isolation.
func (s *Supervisor) specOf(j *Job, req Request) (sandbox.Spec, error) {
	app := j.App
	env := make([]string, 0, len(app.Env)+len(req.Env)+4)
	env = append(env, app.Env...)
	env = append(env, req.Env...)
	// UNIQUE_ID as websocketd (and Apache's mod_unique_id) set it.
	env = append(env, "UNIQUE_ID="+j.ID, "CHIMIRROR_JOB_ID="+j.ID, "CHIMIRROR_APP="+app.Name, "CHIMIRROR_TENANT="+j.Tenant.Name)
	spec := sandbox.Spec{Path: app.Path, Args: app.Args, Env: env, Dir: app.Dir}
	if j.rec.Sandboxed {
		iso, err := s.isolation(app.Policy, app, j.ID)
		if err != nil {
			return spec, err
		}
		spec.Isolation = &iso
	}
	return spec, nil
}

// startFailed records why the job's process could not be made, releases
// the job, and returns the error its client gets.
func (s *Supervisor) startFailed(j *Job, spec sandbox.Spec, cause error) error {
	j.begun()
	if spec.Isolation != nil {
		s.cgroupErrors.Add(1)
	}
	if !errors.Is(cause, ErrCannotStart) {
		cause = cmp.Or(cannotStart(j.App, cause), cause)
	}
	err := fmt.Errorf("start job %s: %w", j.ID, cause)
	j.rec.State, j.rec.Reason, j.rec.Detail, j.rec.EndedAt = accounting.StateFinished, string(ReasonStartFailed), err.Error(), time.Now()
	j.dropSpool()
	j.rec.Spool = false
	j.record(true)
	s.release(j)
	return err
}

// running publishes the job's process p. The job is in the table already
// (Cancel, Record and the sampler may look at it): its record changes
// under j.mu, before its process is published under s.mu, so whoever sees
// the process sees it running.
func (s *Supervisor) running(j *Job, p *sandbox.Process, req Request, sandboxed bool) {
	j.mu.Lock()
	j.rec.State, j.rec.Pid, j.rec.Cgroup = accounting.StateRunning, p.Pid, p.CgroupPath()
	j.mu.Unlock()
	replay := int64(DefaultReplayBytes)
	if pol := j.App.Policy; pol != nil && pol.ReplayBytes > 0 {
		replay = pol.ReplayBytes
	}
	j.ring = newRing(s.budget, replay)
	s.mu.Lock()
	j.proc = p
	j.Started = time.Now()
	closing := s.closing
	s.mu.Unlock()
	j.record(false)
	// From here StartRecorded also announces the job to the Started hooks,
	// once: before that its process did not exist.
	begun := j.begun
	j.begun = sync.OnceFunc(func() { begun(); s.jobStarted(j) })
	j.log.Info("job started", "pid", p.Pid, "remote", req.Remote, "protocol", req.Protocol,
		"sandboxed", sandboxed, "policy", policyName(j.App))
	if closing { // Shutdown began while we forked and could not see this job
		j.terminate(ReasonShutdown, "server shutting down")
	}
}

// limitsOf is what the ledger records as the limits in force.
func limitsOf(a *App) accounting.Limits {
	l := accounting.Limits{GraceNs: int64(a.Grace)}
	if p := a.Policy; p != nil {
		l.MemoryMaxBytes, l.CPUCores, l.PidsMax = p.MemoryMaxBytes, p.CPU, p.PidsMax
		l.CPUTimeNs, l.WallTimeNs, l.IdleTimeoutNs = int64(p.CPUTime), int64(p.WallTime), int64(p.IdleTimeout)
		l.MaxOutputBytes = p.MaxOutputBytes
	}
	return l
}

func (s *Supervisor) release(j *Job) {
	s.mu.Lock()
	if j.settling {
		s.settling--
	}
	delete(s.jobs, j.ID)
	s.mu.Unlock()
	s.wg.Done()
}

// runningJob is the job id if its process exists, else nil. j.proc is
// written under s.mu, so it is read under it too.
func (s *Supervisor) runningJob(id string) *Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.jobs[id]; j != nil && j.proc != nil && j.endSeq.Load() == 0 {
		return j
	}
	return nil
}

// Attachable returns the job id for Attach: running, or ended with its end
// not yet delivered (detached). It returns ErrNoJob for any other.
func (s *Supervisor) Attachable(id string) (*Job, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j := s.jobs[id]; j != nil && j.proc != nil {
		return j, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrNoJob, id)
}

// ReplayMemoryUsed is the bytes every job's ring holds now, of
// ReplayMemoryMax.
func (s *Supervisor) ReplayMemoryUsed() int64 { return s.budget.Used() }

// Cancel ends a running job as an operator command (JES $C): exit signal,
// grace, kill. by names the operator, for the record.
func (s *Supervisor) Cancel(id, by string) error {
	j := s.runningJob(id)
	if j == nil {
		return fmt.Errorf("%w: %s", ErrNoJob, id)
	}
	detail := "cancelled by operator"
	if by != "" {
		detail += " " + by
	}
	j.cancel(by, detail)
	return nil
}

// JobInfo is a snapshot of one running job.
type JobInfo struct {
	ID       string
	App      string
	Tenant   string
	Policy   string
	Pid      int
	Remote   string
	Protocol string
	Started  time.Time
	Counters Counters
	// Usage is the last sampler reading, taken at UsageAt (zero before
	// the first tick); valid when Sandboxed.
	Usage   sandbox.Usage
	UsageAt time.Time
	// CPUPercent is the CPU used between the last two samples, in percent
	// of one core; -1 before there are two.
	CPUPercent float64
	Sandboxed  bool
	Cgroup     string // relative to the server's own cgroup; "" when plain
	Limits     accounting.Limits
}

// Jobs lists the running jobs, oldest first.
func (s *Supervisor) Jobs() []JobInfo {
	s.mu.Lock()
	out := make([]JobInfo, 0, len(s.jobs))
	for _, j := range s.jobs {
		if j.proc == nil || j.endSeq.Load() != 0 { // not yet, or no longer running
			continue
		}
		out = append(out, j.info())
	}
	s.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out
}

// Record is a running job's ledger record as it stands, with its usage and
// traffic so far, or false if id is not running.
func (s *Supervisor) Record(id string) (accounting.Record, JobInfo, bool) {
	j, err := s.Attachable(id) // ended but not yet delivered: its final record
	if err != nil {
		return accounting.Record{}, JobInfo{}, false
	}
	rec, info := j.snapshot()
	return rec, info, true
}

// Accepting reports whether Start may still admit jobs (no Shutdown yet).
func (s *Supervisor) Accepting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closing
}

// MaxSessions is the global cap on running jobs.
func (s *Supervisor) MaxSessions() int { return int(s.maxSessions.Load()) }

// CgroupErrors counts failures to make, read or delete a job's sandbox.
func (s *Supervisor) CgroupErrors() int64 { return s.cgroupErrors.Load() }

// Started is how many jobs have had a fork attempt.
func (s *Supervisor) Started() uint64 { return s.started.Load() }

// Ledger is the supervisor's ledger, or nil.
func (s *Supervisor) Ledger() *accounting.Ledger { return s.ledger }

// Running is the number of admitted jobs not yet fully ended.
func (s *Supervisor) Running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.jobs)
}

// Shutdown refuses new jobs, ends every running job through the normal
// termination path (reason shutdown) and waits for them. When ctx expires
// first, the remaining jobs are killed outright. The runner is closed last.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	jobs := make([]*Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		if j.proc != nil { // a job still forking is ended by Start
			jobs = append(jobs, j)
		}
	}
	s.mu.Unlock()
	for _, j := range jobs {
		j.terminate(ReasonShutdown, "server shutting down")
		j.shutdown()
	}
	s.stopCancel() // a long first prune stops between transactions
	<-s.sampleDone
	<-s.pruneDone
	<-s.spool.pruneDone
	s.hooksMu.Lock()
	s.usageClosed = true
	s.hooksMu.Unlock()
	s.usageLoops.Wait()
	s.closePools()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		select {
		case <-done: // both were ready: the jobs made it
		default:
			// Jobs whose processes are gone may still be releasing their
			// cgroups: only those still here outlived it.
			s.mu.Lock()
			n := len(s.jobs) + len(s.admitting)
			s.mu.Unlock()
			if n > 0 {
				err = fmt.Errorf("shutdown: %d jobs outlived the deadline and were killed: %w", n, ctx.Err())
				for _, j := range jobs {
					j.kill()
				}
			}
			<-done
		}
	}
	if s.ownRunner != nil {
		err = errors.Join(err, s.ownRunner.Close())
	}
	if s.box && s.cgroupParent != "" && s.cgroupParent != sandbox.DefaultCgroupParent {
		// Every job cgroup is deleted by now; a leftover one keeps the
		// parent, and the next start's recovery deals with it.
		if perr := sandbox.RemoveParent(s.cgroupParent); perr != nil {
			s.log.Warn("remove job cgroup parent", "err", perr)
		}
	}
	return err
}
