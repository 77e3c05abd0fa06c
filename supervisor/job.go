package supervisor

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor/spool"
)

// Job is one running process, its replay ring and its clients.
//
// Lifecycle, with the goroutines that own each part:
//
//	Start ── fork ──► Run(client)
//	                    ├─ spool writer (spooled jobs)     ring ─► spool
//	                    ├─ relay (two pumps)               stdout, stderr ─► ring
//	                    │                                   once drained and reaped:
//	                    │                                   the spool writer waited for,
//	                    │                                   the end, spooled and recorded, ─► ring
//	                    └─ caller's goroutine: the first attachment (see Attach):
//	                         input loop  client ─► stdin;  writer  ring ─► client
//	Run returns once the end is recorded and delivered (or nobody will come
//	for it: see attach.go), and every attachment has returned.
//
// Termination (client gone, cancel, shutdown) closes stdin, sends the app's
// exit signal to the process group and arms a grace timer that kills the
// group. When the leader exits, the sandbox kills whatever is left of the
// group and a drain timer bounds how long output is still read.
type Job struct {
	ID       string
	App      *App // with the tenant's policy, if it has one
	Tenant   *Tenant
	Remote   string
	Client   string // Request.Client: what the per-client cap counts
	Protocol string
	Started  time.Time

	sup   *Supervisor
	log   *slog.Logger
	proc  *sandbox.Process
	spool *spool.Writer // nil: not spooled

	// The spool writer (spool.go): spoolStop is closed by stopSpooler,
	// spoolDone by spoolLoop, which sets spoolErr before. spoolEndSeq is
	// the exit event's seq, set by closeSpool.
	spoolStop, spoolDone chan struct{}
	spoolErr             error
	spoolEndSeq          uint64

	stdinBytes, stdoutBytes, stderrBytes, messagesIn atomic.Int64
	messagesOut                                      atomic.Int64 // of attached clients gone
	lastIO                                           atomic.Int64 // unix ns of the last byte either way

	// inputMu is held while a stdin write or close is applied and
	// answered: they apply one at a time, in the order they come. A
	// signal does not take it, so that it is not held behind stdin the
	// program does not read.
	inputMu sync.Mutex
	// stdinStreams: what the job took of each numbered stdin stream, the
	// last used first, at most MaxStdinStreams; under inputMu.
	stdinStreams []*stdinStream
	// answerMu is held for reading while any client input is applied and
	// answered, and for writing while a client is given the job's end: the
	// end is never reported before an answer the client awaits.
	answerMu sync.RWMutex
	// stdinMu is held across a stdin write and its count (writeStdin), and
	// by finish while it takes the counters: bytes the program may have
	// read, and exited on, are never left out of the final record.
	stdinMu sync.Mutex

	// begun waits, once, for the start record's commit (see StartRecorded);
	// once the process exists, it then runs the Started hooks.
	begun func()
	// recorded waits for the final record's commit (set by finish, called
	// by Run before the cgroup is deleted).
	recorded func() error

	mu         sync.Mutex
	rec        accounting.Record // the ledger's record; its snapshots are written
	usage      sandbox.Usage     // the sampler's last reading
	usageAt    time.Time
	cpuPercent float64 // between the last two readings; -1 before two
	reason     Reason  // the first cause of termination wins
	detail     string
	procExited bool
	grace      *time.Timer
	wall, idle *time.Timer // policy limits; stopped when the process exits

	// Output and clients (attach.go). ring, resume and detachTimeout are
	// set before the job is published as running.
	ring          *ring
	resume        string
	detachTimeout time.Duration
	attachReady   chan struct{} // closed by Run once its first client is in
	endSeq        atomic.Uint64 // the end's seq once it is in the ring
	settling      bool          // ended, in the table until delivered: the caps do not count it (under sup.mu)
	settled       chan struct{} // closed once the end is delivered or abandoned
	attachments   sync.WaitGroup

	amu         sync.Mutex // before j.mu
	primary     *attachment
	watchers    map[*attachment]bool
	readers     int // readers of its events that are not attachments (AddReader), under amu
	detachTimer *time.Timer
	abandoned   bool // nobody will read the output again
	delivered   bool
	settledDone bool
	released    bool // no attachment is added any more
}

// Counters are a job's traffic so far.
type Counters struct {
	StdinBytes, StdoutBytes, StderrBytes, MessagesIn int64
}

// Counters returns the job's traffic so far.
func (j *Job) Counters() Counters {
	return Counters{j.stdinBytes.Load(), j.stdoutBytes.Load(), j.stderrBytes.Load(), j.messagesIn.Load()}
}

// Traffic is c as a record's traffic (MessagesOut is the client's to say).
func (c Counters) Traffic() accounting.Traffic {
	return accounting.Traffic{StdinBytes: c.StdinBytes, StdoutBytes: c.StdoutBytes, StderrBytes: c.StderrBytes,
		MessagesIn: c.MessagesIn}
}

// oomDetail is the detail recorded with ReasonOOM.
func oomDetail(kills int64) string { return fmt.Sprintf("%d OOM kill(s) in the job's cgroup", kills) }

// snapshot is the job's record and its info as they stand now.
func (j *Job) snapshot() (accounting.Record, JobInfo) {
	info := j.info()
	j.mu.Lock()
	rec := j.rec
	j.mu.Unlock()
	return rec, info
}

// info is a snapshot; the caller holds neither lock.
func (j *Job) info() JobInfo {
	j.mu.Lock()
	u, at, lim, pct := j.usage, j.usageAt, j.rec.Limits, j.cpuPercent
	if at.IsZero() {
		pct = -1
	}
	j.mu.Unlock()
	return JobInfo{ID: j.ID, App: j.App.Name, Tenant: j.Tenant.Name, Policy: policyName(j.App), Pid: j.proc.Pid, Remote: j.Remote,
		Protocol: j.Protocol, Started: j.Started, Counters: j.Counters(), Usage: u, UsageAt: at, CPUPercent: pct,
		Sandboxed: j.proc.Sandboxed(), Cgroup: j.proc.CgroupPath(), Limits: lim}
}

// record writes a snapshot of the job's record to the ledger; with wait,
// it returns once the snapshot is on disk. A failed write is logged; the
// ledger keeps the record and writes it again later.
func (j *Job) record(wait bool) {
	if j.sup.ledger == nil {
		return
	}
	j.mu.Lock()
	snap := j.rec
	j.mu.Unlock()
	if err := j.sup.ledger.Put(&snap, wait); err != nil {
		j.log.Error("ledger: record job", "state", snap.State, "err", err)
	}
}

// sample reads the job for the sampler: its cgroup when sandboxed (which
// also enforces the OOM and cpu_time limits) and its traffic.
func (j *Job) sample() accounting.Sample {
	now := time.Now()
	c := j.Counters()
	smp := accounting.Sample{At: now, MemoryCurrentBytes: -1,
		StdinBytes: c.StdinBytes, StdoutBytes: c.StdoutBytes, StderrBytes: c.StderrBytes}
	if !j.proc.Sandboxed() {
		return smp
	}
	u, err := j.proc.Usage()
	if err != nil {
		if u.OOMKills > 0 { // read, but the sandbox failed to end the rest
			j.log.Warn("read usage", "err", err)
			j.checkOOM(u.OOMKills)
			j.kill() // the reason is set: no later terminate would end it
		}
		return smp // else the job is ending; its cgroup may be gone
	}
	j.mu.Lock()
	prev, prevAt := j.usage, j.usageAt
	if prevAt.IsZero() { // the first reading: since the start
		prevAt = j.Started
	}
	if dt := now.Sub(prevAt); dt > 0 {
		j.cpuPercent = 100 * float64(u.CPUUserNs+u.CPUSystemNs-prev.CPUUserNs-prev.CPUSystemNs) / float64(dt)
	}
	j.usage, j.usageAt = u, now
	j.mu.Unlock()
	smp.CPUNs, smp.MemoryCurrentBytes, smp.PidsCurrent = u.CPUUserNs+u.CPUSystemNs, u.MemoryCurrentBytes, u.PidsCurrent
	j.checkOOM(u.OOMKills)
	if j.App.Policy != nil && j.App.Policy.CPUTime > 0 {
		j.checkCPUTime(u)
	}
	return smp
}

// Log is the job's logger (it carries the job ID).
func (j *Job) Log() *slog.Logger { return j.log }

// StartRecorded returns once the job's start record is durable in the
// ledger, or writing it failed (logged; the ledger keeps the record to write
// it again), and the Started hooks have run (see Hooks). Nothing of the job
// reaches its client before, so a client told of a job can count on its
// record. Run calls it first; a caller that tells the client itself (the
// /job event) calls it before that.
func (j *Job) StartRecorded() { j.begun() }

// Abort ends a job whose client never attached (the upgrade failed).
func (j *Job) Abort() { j.Run(nil) }

// Run runs the job with c as its first attached client until the job has
// ended, its end is delivered (or nobody will come for it) and every
// client is closed. It returns the job's end. A nil c means there is no
// client: the job is ended at once.
func (j *Job) Run(c Client) Exit {
	defer j.sup.release(j)
	j.StartRecorded()
	var first *attachment
	j.amu.Lock()
	if c != nil {
		first = j.newAttachment(c, 0, false, true)
		j.primary = first
		j.attachments.Add(1)
	}
	j.amu.Unlock()
	close(j.attachReady)
	var maxOutput int64
	if pol := j.App.Policy; pol != nil {
		maxOutput = pol.MaxOutputBytes
	}
	maxOutput = j.spoolLimit(maxOutput)
	out := newRelay(j.ring, relayConfig{
		Stdout: j.proc.Stdout, Stderr: j.proc.Stdio,
		StdoutBytes: &j.stdoutBytes, StderrBytes: &j.stderrBytes, LastIO: &j.lastIO,
		MaxOutputBytes: maxOutput,
		Text:           !j.App.Binary,
		Stop:           j.terminate,
		Report:         j.finish,
		Ended:          j.ended,
		Log:            j.log,
	})
	j.startSpooler()
	out.start()
	j.proc.AfterExit(func() {
		j.exited()
		out.exited(j.sup.drain)
	})
	j.armLimits()

	if first == nil {
		j.amu.Lock()
		j.abandonLocked(ReasonClientGone, "upgrade failed")
		j.amu.Unlock()
	} else {
		j.serve(first)
	}
	e := out.wait()
	<-j.settled
	j.releaseClients()
	j.ring.close()
	if j.recorded != nil {
		if err := j.recorded(); err != nil {
			j.log.Error("ledger: record job end", "err", err)
		}
		j.amendMessagesOut()
	}
	if err := j.proc.Close(); err != nil {
		if j.proc.Sandboxed() {
			j.sup.cgroupErrors.Add(1)
		}
		j.log.Warn("close job descriptors", "err", err)
	}
	return e
}

func describeClientErr(err error) string {
	if err == nil || errors.Is(err, io.EOF) {
		return "client closed"
	}
	return err.Error()
}

// apply applies one client input and answers it.
func (j *Job) apply(in Input) {
	j.messagesIn.Add(1)
	j.lastIO.Store(time.Now().UnixNano())
	j.answerMu.RLock()
	defer j.answerMu.RUnlock()
	if in.Kind != InputSignal {
		j.inputMu.Lock()
		defer j.inputMu.Unlock()
	}
	var herr error
	switch in.Kind {
	case InputStdin:
		herr = j.writeNumbered(in)
	case InputCloseStdin:
		herr = j.proc.CloseStdin()
	case InputSignal:
		herr = j.proc.Signal(in.Signal)
	}
	if herr != nil {
		herr = fmt.Errorf("job %s: %w", j.ID, herr)
		j.log.Debug("input not applied", "err", herr)
	}
	if in.Done != nil {
		in.Done(herr)
	}
}

// ErrStdinGap refuses numbered stdin past what the job has taken of its
// stream: the bytes between were lost, and writing these would hide it.
var ErrStdinGap = errors.New("numbered stdin past what the job has taken")

// MaxStdinStreams is how many numbered stdin streams (Input.Stream) a job
// remembers: a stream it has forgotten starts again where its next input
// says.
const MaxStdinStreams = 16

// stdinStream is what a job has taken of one numbered stdin stream.
type stdinStream struct {
	name  string
	taken int64
}

// writeNumbered writes an InputStdin's data: of numbered data, the part
// the job has not taken of its stream (see Input.Stream). inputMu is
// held, so the count it compares with is every earlier input's, a write
// still under way when its connection died included. Bytes a failed write
// did not take count as taken: their input was answered with the error,
// and is not sent again.
func (j *Job) writeNumbered(in Input) error {
	p := in.Data
	var st *stdinStream
	if in.Stream != "" {
		st = j.stdinStream(in.Stream, in.Offset)
		switch {
		case in.Offset > st.taken:
			return fmt.Errorf("%w: offset %d, after %d bytes of the stream taken", ErrStdinGap, in.Offset, st.taken)
		case in.Offset+int64(len(p)) <= st.taken:
			return nil // taken before a cut: sent again
		}
		p = p[st.taken-in.Offset:]
	}
	err := j.writeStdin(p)
	if st != nil {
		st.taken = in.Offset + int64(len(in.Data))
	}
	return err
}

// stdinStream is the job's record of numbered stream name, made (taken
// up to offset, where a stream starts or was forgotten) if it has none,
// and moved to the front; inputMu is held.
func (j *Job) stdinStream(name string, offset int64) *stdinStream {
	for i, st := range j.stdinStreams {
		if st.name == name {
			copy(j.stdinStreams[1:i+1], j.stdinStreams[:i])
			j.stdinStreams[0] = st
			return st
		}
	}
	st := &stdinStream{name: name, taken: offset}
	if len(j.stdinStreams) < MaxStdinStreams {
		j.stdinStreams = append(j.stdinStreams, nil)
	}
	copy(j.stdinStreams[1:], j.stdinStreams)
	j.stdinStreams[0] = st
	return st
}

// writeStdin writes p to the job's stdin and counts the bytes written. The
// count is taken under stdinMu with the write: once the write returns,
// the program may read p, exit and be reaped, and its relay report the
// end (finish), before this goroutine runs again.
func (j *Job) writeStdin(p []byte) error {
	j.stdinMu.Lock()
	defer j.stdinMu.Unlock()
	n, err := j.proc.Stdio.Write(p)
	if testStdinWritten != nil {
		testStdinWritten()
	}
	j.stdinBytes.Add(int64(n))
	return err
}

// testStdinWritten, when set (by tests that do not run in parallel), is
// called after each stdin write, before its bytes are counted.
var testStdinWritten func()

// finalCounters are the job's counters for its final record, once its
// process is reaped and its output drained: a stdin write under way is
// counted first. Nothing of the job reads stdin any more: the write
// deadline ends a write still waiting (on a socket whose other end was
// shut down for writing but is still held open), so that it cannot hold
// the end back.
func (j *Job) finalCounters() Counters {
	if err := j.proc.Stdio.SetWriteDeadline(time.Unix(1, 0)); err != nil {
		j.log.Warn("end stdin writes", "err", err)
	}
	j.stdinMu.Lock()
	defer j.stdinMu.Unlock()
	return j.Counters()
}

// terminate begins ending the job for reason, unless it is already ending.
func (j *Job) terminate(reason Reason, detail string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.terminateLocked(reason, detail)
}

// cancel is terminate for an operator's cancel: by goes on the record only
// if the cancel is what ends the job (not a limit that fired first).
func (j *Job) cancel(by, detail string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.terminateLocked(ReasonCancelled, detail) {
		j.rec.CancelledBy = by
	}
}

// terminateLocked starts the end, unless it has started or the process
// has exited; it reports whether it did. j.mu is held.
func (j *Job) terminateLocked(reason Reason, detail string) bool {
	if j.reason != "" || j.procExited {
		return false
	}
	j.reason, j.detail = reason, detail
	j.log.Info("terminating job", "reason", reason, "detail", detail,
		"signal", sandbox.SignalName(j.App.ExitSignal), "grace", j.App.Grace)
	if err := j.proc.CloseStdin(); err != nil {
		j.log.Debug("close stdin", "err", err)
	}
	// Unblock a stdin write the process will never read.
	if err := j.proc.Stdio.SetWriteDeadline(time.Unix(1, 0)); err != nil {
		j.log.Warn("end stdin writes", "err", err)
	}
	if err := j.proc.Signal(j.App.ExitSignal); err != nil {
		if !errors.Is(err, sandbox.ErrExited) {
			j.log.Warn("send exit signal", "err", err)
		}
		return true
	}
	j.grace = time.AfterFunc(j.App.Grace, j.kill)
	return true
}

// kill ends the job's processes now.
func (j *Job) kill() {
	if err := j.proc.Kill(); err != nil && !errors.Is(err, sandbox.ErrExited) {
		j.log.Error("kill job", "err", err)
	}
}

// exited runs on the reaper once the leader is gone, before the relay hears
// of it: the job's end is settled (no termination starts after it), so its
// timers stop.
func (j *Job) exited() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.procExited = true
	for _, t := range []*time.Timer{j.grace, j.wall, j.idle} {
		if t != nil {
			t.Stop()
		}
	}
}

// armLimits starts the policy's clocks: wall time and idleness.
func (j *Job) armLimits() {
	pol := j.App.Policy
	if pol == nil {
		return
	}
	j.lastIO.Store(time.Now().UnixNano())
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.procExited {
		return
	}
	if pol.WallTime > 0 {
		j.wall = time.AfterFunc(pol.WallTime, func() {
			j.terminate(ReasonWallTime, "ran for wall_time "+pol.WallTime.String())
		})
	}
	if pol.IdleTimeout > 0 {
		j.idle = time.AfterFunc(pol.IdleTimeout, j.checkIdle)
	}
}

// checkIdle ends the job if no byte moved for idle_timeout, else waits for
// the rest of it.
func (j *Job) checkIdle() {
	limit := j.App.Policy.IdleTimeout
	quiet := time.Since(time.Unix(0, j.lastIO.Load()))
	if quiet >= limit {
		j.terminate(ReasonIdle, "no input or output for idle_timeout "+limit.String())
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.procExited && j.reason == "" {
		j.idle.Reset(limit - quiet)
	}
}

// checkOOM records why the job ends once the OOM killer has struck in it
// (n kills). The sandbox ends all of it (Isolation.OOMGroup, the policy's
// OOM semantics); this only names the reason before the exit does.
func (j *Job) checkOOM(n int64) {
	if n == 0 {
		return
	}
	j.mu.Lock()
	first := j.reason == "" && !j.procExited
	if first {
		j.reason, j.detail = ReasonOOM, oomDetail(n)
	}
	j.mu.Unlock()
	if first {
		j.log.Info("terminating job", "reason", ReasonOOM, "detail", "OOM kill in the job's cgroup: the sandbox kills all of it")
	}
}

// checkCPUTime ends the job once usage u passes cpu_time.
func (j *Job) checkCPUTime(u sandbox.Usage) {
	limit := j.App.Policy.CPUTime
	if used := time.Duration(u.CPUUserNs + u.CPUSystemNs); used > limit {
		j.terminate(ReasonCPUTime, fmt.Sprintf("used %v of CPU, cpu_time is %v", used.Round(time.Millisecond), limit))
	}
}

// cgroupUsage is a cgroup's reading as the ledger records it.
func cgroupUsage(u sandbox.Usage) accounting.Usage {
	return accounting.Usage{CPUUserNs: u.CPUUserNs, CPUSystemNs: u.CPUSystemNs, CPUThrottledNs: u.CPUThrottledNs,
		MemoryPeakBytes: u.MemoryPeakBytes, OOMKills: u.OOMKills, PidsPeak: max(u.PidsPeak, 0)}
}

// recordEnd queues the job's final record. Run waits for it to be on disk
// before it deletes the job's cgroup: the client hears of the end while
// the commit runs, and if the server dies in between, recovery still
// finds the cgroup and its final counters.
func (j *Job) recordEnd(e Exit, cnt Counters) {
	st := e.Status
	code := st.Code
	out := j.messagesOutNow() // takes j.amu, which comes before j.mu
	j.mu.Lock()
	r := &j.rec
	r.State, r.Reason, r.Detail, r.ExitCode, r.EndedAt = accounting.StateFinished, string(e.Reason), e.Detail, &code, time.Now()
	r.Signal = ""
	if st.Signal != 0 {
		r.Signal = sandbox.SignalName(st.Signal)
	}
	if e.Sandboxed {
		r.Usage = cgroupUsage(e.Usage)
	} else { // the rusage of the process and the descendants it reaped
		r.Usage = accounting.Usage{CPUUserNs: int64(st.UserCPU), CPUSystemNs: int64(st.SystemCPU), MemoryPeakBytes: st.MaxRSSBytes}
	}
	r.Traffic = cnt.Traffic()
	r.Traffic.MessagesOut = out
	snap := *r
	j.mu.Unlock()
	if j.sup.ledger != nil {
		j.recorded = j.sup.ledger.PutLater(&snap)
	}
}

// amendMessagesOut brings the final record's messages_out up to date
// once the end is delivered: the record taken at the exit counted only the
// messages sent by then. Like the end's own record, it is on disk before
// the job lets go of its cgroup and its slot.
func (j *Job) amendMessagesOut() {
	n := j.messagesOutNow()
	j.mu.Lock()
	changed := j.rec.Traffic.MessagesOut != n
	j.rec.Traffic.MessagesOut = n
	snap := j.rec
	j.mu.Unlock()
	if !changed {
		return
	}
	if err := j.sup.ledger.PutLater(&snap)(); err != nil {
		j.log.Error("ledger: record messages_out", "err", err)
	}
}

// messagesOutNow is how many messages the job's attached clients have
// been sent so far: those gone and the one attached now.
func (j *Job) messagesOutNow() int64 {
	n := j.messagesOut.Load()
	j.amu.Lock()
	if p := j.primary; p != nil {
		n += p.c.MessagesOut()
	}
	j.amu.Unlock()
	return n
}

// finish takes the job's end for its relay, which calls it once output is
// in the ring and the leader reaped, and puts the end in the ring
// afterwards.
func (j *Job) finish() Exit {
	j.stopSpooler() // every event in the ring is spooled, or the spool failed
	st := j.proc.Status()
	var usage sandbox.Usage
	var uerr error
	sandboxed := j.proc.Sandboxed()
	if sandboxed { // the cgroup still exists: Run deletes it after us
		usage, uerr = j.proc.Usage()
		if uerr != nil {
			j.log.Warn("read final usage", "err", uerr)
		}
	}
	j.mu.Lock()
	e := Exit{Status: st, Reason: j.reason, Detail: j.detail, Usage: usage, Sandboxed: sandboxed && uerr == nil}
	j.mu.Unlock()
	if e.Reason == "" && e.Sandboxed && usage.OOMKills > 0 {
		e.Reason, e.Detail = ReasonOOM, oomDetail(usage.OOMKills)
	}
	if e.Reason == "" {
		e.Reason = ReasonExit
		if st.Signal != 0 {
			e.Reason = ReasonSignal
		}
	}
	cnt := j.finalCounters()
	attrs := []any{"reason", e.Reason, "status", st.String(), "detail", e.Detail,
		"elapsed", time.Since(j.Started).Round(time.Millisecond),
		"stdin_bytes", cnt.StdinBytes, "stdout_bytes", cnt.StdoutBytes, "stderr_bytes", cnt.StderrBytes}
	if e.Sandboxed {
		attrs = append(attrs, "cpu_user", time.Duration(usage.CPUUserNs), "cpu_system", time.Duration(usage.CPUSystemNs),
			"memory_peak_bytes", usage.MemoryPeakBytes, "oom_kills", usage.OOMKills, "pids_limit_hits", usage.PidsLimitHits,
			"cpu_throttled", time.Duration(usage.CPUThrottledNs))
	} else {
		attrs = append(attrs, "cpu_user", st.UserCPU, "cpu_system", st.SystemCPU)
	}
	j.log.Info("job ended", attrs...)
	j.closeSpool(e) // durable before the final record
	j.recordEnd(e, cnt)
	j.sup.jobEnded(j, e)
	return e
}
