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
//	relay     every chunk the output limit lets through is appended, in the
//	          order read, before it is sent to the client (if any)
//	finish    the exit event is appended and the file fsync'd and closed,
//	          then the final record is written
//
// so a finished record's spool is whole and durable, and a job lost with
// its server keeps the spool it had written (recovery seals it: see
// Recovery.SetSpoolDir). Files are pruned by age (SpoolRetention).

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
	if err := errors.Join(j.spool.Close(nil), os.Remove(j.spool.Path())); err != nil {
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

// spoolTap is the relay's Tap for a spooled job (nil for another): it
// appends each chunk as an event; the first failure ends the job.
func (j *Job) spoolTap() func(Stream, []byte) {
	if j.spool == nil {
		return nil
	}
	return func(s Stream, p []byte) {
		k := spool.KindStdout
		if s == Stderr {
			k = spool.KindStderr
		}
		if _, err := j.spool.Append(k, p); err != nil && !errors.Is(err, spool.ErrClosed) {
			j.terminate(ReasonSpoolFailed, err.Error())
		}
	}
}

// closeSpool appends the exit event and makes the spool durable; finish
// calls it before the final record is written.
func (j *Job) closeSpool(e Exit) {
	if j.spool == nil {
		return
	}
	se := &spool.Exit{Code: e.Status.Code, Reason: string(e.Reason), Detail: e.Detail}
	if e.Status.Signal != 0 {
		se.Signal = sandbox.SignalName(e.Status.Signal)
	}
	if err := j.spool.Close(se); err != nil {
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
