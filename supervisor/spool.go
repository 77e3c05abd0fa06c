package supervisor

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/sandbox"
	"github.com/chimirror/chimirror/supervisor/spool"
)

// The spool (issue 16 §4): a batch job's output, and any job's whose
// policy says spool = true, is kept in Config.SpoolDir (DATA_DIR/spool),
// one file per job named after it (spool.Path), in the format the spool
// package documents. The job's record says spool: true from its start
// record on, so a record links to its file by the job's ID.
//
// Ordering, which recovery and readers count on:
//
//	Start     file made (header, dir entry synced) before the process forks
//	spooler   the job's spool writer appends the ring's events in seq order
//	          as they come (every chunk the output limit lets through); the
//	          ring keeps each until it is spooled, so a slow spool holds the
//	          pumps back as a slow client does, and nothing is dropped (an
//	          abandoned ring still takes events for the spool)
//	finish    once the pumps are done, the spooler appends what the ring
//	          still holds and returns; the exit event (with the seq the end
//	          then gets in the ring) is appended and the file fsync'd and
//	          closed, then the final record is written, then the end goes
//	          into the ring
//
// so a finished record's spool is whole and durable, and a job lost with
// its server keeps the spool it had written (recovery seals it: see
// Recovery.SetSpoolDir). Files are pruned by age (SpoolRetention).
//
// The spool consumes the job's ring: its events are the ring's, one spool
// event per ring event, numbered with the ring's seq (Event.Seq, the seq
// chimirror.v1 clients see), consecutive from 1, the exit event with the
// end's. The ring evicts no event before it is spooled, so a client told
// of a gap (evicted events) finds them in the spool (OpenSpool,
// spool.File.EventsAfter). Every ring event fits one spool event: see
// the assertion below.

// ReasonSpoolFailed ends a job whose spool could not be written (the disk
// is full): its output would otherwise be lost without a trace.
const ReasonSpoolFailed Reason = "spool-failed"

// DefaultSpoolMaxOutputBytes bounds a spooled job whose policy sets no
// max_output: a spool is never unbounded.
const DefaultSpoolMaxOutputBytes = 1 << 30

// spoolPruneEvery is how often old spool files are pruned, and
// spoolPruneMost how many one pass removes at most (the next pass goes on).
const (
	spoolPruneEvery = time.Hour
	spoolPruneMost  = 10000
)

// spoolState is the supervisor's part of the spool.
type spoolState struct {
	dir       string        // "": nothing is spooled, and spooled apps cannot start
	retention time.Duration // 0: files are kept
	pruneDone chan struct{} // closed when the prune loop has returned (or never ran)
}

// Spooled reports whether a's jobs keep a spool: batch jobs, and those of
// a policy with spool = true.
func (a *App) Spooled() bool { return a.RunsBatch() || a.Policy != nil && a.Policy.Spool }

// RunsBatch reports whether a's jobs run as batch jobs (mode = "batch" on
// the app or its policy): to completion, with no client attached.
func (a *App) RunsBatch() bool {
	switch a.Mode {
	case policies.ModeBatch:
		return true
	case policies.ModeInteractive:
		return false
	}
	return a.Policy != nil && a.Policy.Batch
}

// SpoolDir is where spools are kept ("" when none are).
func (s *Supervisor) SpoolDir() string { return s.spool.dir }

// OpenSpool opens job id's spool for reading, whether the job runs or has
// ended: a snapshot of the events spooled when it is called (see
// spool.File; EventsAfter reads the events after a ring seq). The error
// is os.ErrNotExist (errors.Is) when the job has no spool file: it keeps
// none (its record's Spool is false), its spool was pruned
// (SpoolRetention), or this server keeps no spools.
func (s *Supervisor) OpenSpool(id string) (*spool.File, error) {
	n, err := accounting.ParseID(id)
	if err != nil {
		return nil, fmt.Errorf("open spool: %w", err)
	}
	id = accounting.FormatID(n) // the file's name, whatever the spelling
	if s.spool.dir == "" {
		return nil, fmt.Errorf("open spool of job %s: this server keeps no spools: %w", id, os.ErrNotExist)
	}
	s.mu.Lock()
	j := s.jobs[id]
	s.mu.Unlock()
	if j != nil {
		j.FlushSpool()
	}
	return spool.Open(spool.Path(s.spool.dir, id))
}

// FlushSpool writes what the job's spool writer has gathered and not yet
// written (spool.Writer.Flush), so that a reader who opens the spool file
// next sees every event the job's ring has let go. A job that keeps no
// spool, or whose spool is closed, has nothing to flush. A spool that
// failed, before or in this flush, ends the job as ReasonSpoolFailed (its
// next event or its end finds the failure, and logs it); the reader reads
// the events written before it.
func (j *Job) FlushSpool() {
	if j.spool == nil {
		return
	}
	if err := j.spool.Flush(); err != nil {
		j.log.Debug("spool: flush for a reader", "err", err)
	}
}

// startSpool takes cfg's spool settings and starts the pruner; Shutdown
// waits for it (stopLoops).
func (s *Supervisor) startSpool(cfg Config) {
	s.spool = spoolState{dir: cfg.SpoolDir, retention: cfg.SpoolRetention, pruneDone: make(chan struct{})}
	if s.spool.dir == "" || s.spool.retention <= 0 {
		close(s.spool.pruneDone)
		return
	}
	go s.spoolPruneLoop()
}

// spoolPruneLoop removes spool files older than the retention, at start
// and then every spoolPruneEvery, until Shutdown. A running job's file is
// never removed.
func (s *Supervisor) spoolPruneLoop() {
	s.periodically(s.spool.pruneDone, spoolPruneEvery, func() bool {
		s.pruneSpool(time.Now())
		return true
	})
}

// pruneSpool is one pass of the pruner at now: at most spoolPruneMost files.
func (s *Supervisor) pruneSpool(now time.Time) int {
	running := func(id string) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.jobs[id] != nil
	}
	n, err := spool.Prune(s.stopLoops, s.spool.dir, now.Add(-s.spool.retention), running, spoolPruneMost)
	if err != nil && !errors.Is(err, s.stopLoops.Err()) {
		s.log.Error("spool retention", "err", err)
	}
	if n > 0 {
		s.log.Info("spool retention: pruned old spools", "files", n, "spool_retention", s.spool.retention)
	}
	return n
}

// openSpool makes job j's spool when its app spools.
func (s *Supervisor) openSpool(j *Job) error {
	if !j.App.Spooled() {
		return nil
	}
	if s.spool.dir == "" {
		return fmt.Errorf("%w: app %s spools its output (mode = \"batch\" or spool = true) but this server keeps no spool dir", ErrCannotStart, j.App.Name)
	}
	w, err := spool.Create(s.spool.dir, j.ID)
	if err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	j.spool = w
	return nil
}

// dropSpool removes the spool of a job that never started.
func (j *Job) dropSpool() {
	if j.spool == nil {
		return
	}
	if err := errors.Join(j.spool.Close(0, nil), os.Remove(j.spool.Path())); err != nil {
		j.log.Warn("remove the spool of a job that did not start", "err", err)
	}
}

// spoolLimit is the output limit of the job: max_output, or
// DefaultSpoolMaxOutputBytes for a spooled job that has none.
func (j *Job) spoolLimit(maxOutput int64) int64 {
	if j.spool != nil && maxOutput <= 0 {
		return DefaultSpoolMaxOutputBytes
	}
	return maxOutput
}

// Every ring event fits one spool event, so it keeps its seq: the relay's
// reads are at most bigChunkBytes (this fails to compile otherwise).
const _ = uint64(spool.MaxPayloadBytes - bigChunkBytes)

// startSpooler starts the job's spool writer (spoolLoop) if the job
// spools, before its first event; stopSpooler ends it and waits for it.
func (j *Job) startSpooler() {
	if j.spool == nil {
		return
	}
	j.ring.spoolAll()
	j.spoolStop, j.spoolDone = make(chan struct{}), make(chan struct{})
	go j.spoolLoop()
}

// spoolLoop is the job's spool writer: it appends the ring's events to
// the spool in seq order, each with its seq, and lets the ring evict them
// once appended. It returns once spoolStop is closed and it has taken
// every event in the ring, or when the spool fails, which ends the job
// (ReasonSpoolFailed) and lifts the ring's spool floor.
func (j *Job) spoolLoop() {
	defer close(j.spoolDone)
	defer j.ring.spoolDone()
	for want := uint64(1); ; {
		ev, err := j.ring.spoolNext(want, j.spoolStop)
		if err != nil {
			return // stopped with every event taken, or the ring is gone
		}
		err = j.spoolEvent(ev, want)
		ev.Release()
		if err != nil {
			j.spoolErr = err
			j.terminate(ReasonSpoolFailed, err.Error())
			return
		}
		want = ev.Seq + 1
	}
}

// spoolEvent appends ring event ev, due as seq want, to the spool.
func (j *Job) spoolEvent(ev Event, want uint64) error {
	if ev.Seq != want || ev.Exit != nil { // the spool floor and stopSpooler rule both out
		return fmt.Errorf("job %s: spool: ring event %d (end %v) where output event %d was due", j.ID, ev.Seq, ev.Exit != nil, want)
	}
	k := spool.KindStdout
	if ev.Stream == Stderr {
		k = spool.KindStderr
	}
	if testSpooling != nil {
		if err := testSpooling(ev.Seq); err != nil {
			return fmt.Errorf("job %s: spool: %w", j.ID, err)
		}
	}
	if err := j.spool.Append(k, ev.Seq, ev.Data); err != nil {
		return fmt.Errorf("job %s: %w", j.ID, err)
	}
	j.ring.spooledTo(ev.Seq)
	return nil
}

// testSpooling, when set (by tests that do not run in parallel), is
// called by each spool writer before it appends an event: a slow spool,
// or (an error) a failed one.
var testSpooling func(seq uint64) error

// stopSpooler ends the spool writer once it has spooled what the ring
// holds, and waits for it; finish calls it first, once the pumps are done.
// A spool that failed when the job was past ending by it (its process had
// exited) still makes its end ReasonSpoolFailed: the record then says the
// spool is not whole.
func (j *Job) stopSpooler() {
	if j.spool == nil {
		return
	}
	close(j.spoolStop)
	<-j.spoolDone
	if j.spoolErr == nil {
		// What the spool gathered is written now, and a failure that
		// came after the last event (a direct write's) is seen.
		if err := j.spool.Flush(); err != nil {
			j.spoolErr = fmt.Errorf("job %s: %w", j.ID, err)
		}
	}
	if j.spoolErr == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.reason == "" {
		j.reason, j.detail = ReasonSpoolFailed, j.spoolErr.Error()
	}
}

// closeSpool appends the exit event, numbered as the end will be in the
// ring (the event after the ring's last: the pumps are done, and finish
// puts the end in next), and makes the spool durable; finish calls it
// after stopSpooler and before the final record is written. A spool that
// failed gets no exit event: it is not whole.
func (j *Job) closeSpool(e Exit) {
	if j.spool == nil {
		return
	}
	_, _, last, _ := j.ring.held()
	j.spoolEndSeq = last + 1
	if j.spoolErr != nil {
		if err := j.spool.Close(0, nil); err != nil {
			j.log.Debug("spool: close after its failure", "err", err)
		}
		return
	}
	se := &spool.Exit{Code: e.Status.Code, Reason: string(e.Reason), Detail: e.Detail}
	if e.Status.Signal != 0 {
		se.Signal = sandbox.SignalName(e.Status.Signal)
	}
	if err := j.spool.Close(j.spoolEndSeq, se); err != nil {
		j.log.Error("spool: close", "err", err)
	}
}

// SetSpoolDir tells a recovery where the dead server kept its spools
// (Config.SpoolDir): Run then seals the spool of each job it closes as
// lost before closing its record, so the record's spool flag (set from the
// job's start) names a whole, durable file, readable as any other. Call it
// before Run.
func (r *Recovery) SetSpoolDir(dir string) { r.spoolDir = dir }

// sealSpool makes a lost job's spool whole (spool.Seal) and says so in its
// record's detail. A record whose file is gone, or cannot be sealed, loses
// its spool flag: readers then say it has none rather than fail.
func (r *Recovery) sealSpool(rec *accounting.Record) {
	if !rec.Spool {
		return
	}
	if r.spoolDir == "" {
		rec.Spool = false
		return
	}
	in, err := spool.Seal(spool.Path(r.spoolDir, rec.ID))
	if err != nil {
		r.log.Warn("recover: the lost job's spool is unreadable", "job", rec.ID, "err", err)
		rec.Spool = false
		return
	}
	rec.Detail += fmt.Sprintf("; its spool keeps %d bytes of stdout and %d of stderr written until then", in.StdoutBytes, in.StderrBytes)
}
