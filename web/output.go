package web

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/supervisor"
	"github.com/chimirror/chimirror/supervisor/spool"
)

// A job's spooled output (issue 16 §4), the same on both listeners:
//
//	GET /jobs/JOBID/output            public: the job's tenant only
//	GET /api/v1/jobs/JOBID/output     admin: any job
//
// Query: stream=stdout|stderr|all (default all: both, interleaved in the
// order they were read, as 2>&1 would show them); follow=1 streams the
// output as it is spooled until the job ends (no Range then); download=1
// asks the browser to save it (Content-Disposition).
//
// The answer is the spooled bytes, byte-exact, as application/octet-stream
// with Range support (http.ServeContent: 206, multipart ranges, 416 past
// the end); X-Chimirror-Job-State says running, finished or lost. A
// running job's answer is what was spooled when the request came.
//
// Statuses: 400 a malformed job ID or stream; 404 a job that does not
// exist, or is another tenant's (the same answer: a tenant never learns
// which IDs are others'), or keeps no spool (its app and policy do not
// spool); 410 a spool pruned by spool_retention; 401 as for WebSocket.

// jobStateHeader carries the job's state with its output.
const jobStateHeader = "X-Chimirror-Job-State"

// followPoll is how often a followed spool is read for more.
const followPoll = 100 * time.Millisecond

// followWriteTimeout bounds each write of a followed spool to its client.
const followWriteTimeout = 30 * time.Second

// writeDeadline gives the answer's next writes d to complete, so a client
// that stops reading is dropped; a writer without deadlines (a test's
// recorder) is written without.
func writeDeadline(rc *http.ResponseController, d time.Duration) error {
	if err := rc.SetWriteDeadline(time.Now().Add(d)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// findJob is job id's record: live if it runs, else the ledger's.
func findJob(sup *supervisor.Supervisor, raw string) (accounting.Record, bool, error) {
	id, err := canonicalJobID(raw)
	if err != nil {
		return accounting.Record{}, false, err
	}
	if rec, _, ok := sup.Record(id); ok {
		return rec, true, nil
	}
	l := sup.Ledger()
	if l == nil {
		return accounting.Record{}, false, noSuchJob(id)
	}
	rec, err := l.Record(id)
	if errors.Is(err, accounting.ErrNotFound) {
		return accounting.Record{}, false, noSuchJob(id)
	}
	if err != nil {
		return accounting.Record{}, false, fmt.Errorf("job %s: %w", id, err)
	}
	return rec, false, nil
}

// serveOutput answers a request for rec's spool; see above. running says
// whether the job was running when rec was read.
func serveOutput(w http.ResponseWriter, r *http.Request, sup *supervisor.Supervisor, rec accounting.Record, running bool, log *slog.Logger) (retErr error) {
	q := r.URL.Query()
	sel := spool.SelectAll
	name := "all"
	if s := q.Get("stream"); s != "" {
		var err error
		if sel, err = spool.ParseSelect(s); err != nil {
			return errorf(http.StatusBadRequest, "%v", err)
		}
		name = s
	}
	if !rec.Spool || sup.SpoolDir() == "" {
		return errorf(http.StatusNotFound, "job %s keeps no spool: its app is interactive and its policy has spool = false", rec.ID)
	}
	sf, err := sup.OpenSpool(rec.ID)
	if errors.Is(err, os.ErrNotExist) {
		return errorf(http.StatusGone, "the spool of job %s was pruned (spool_retention)", rec.ID)
	}
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, sf.Close()) }()
	state := string(rec.State)
	h := w.Header()
	h.Set(jobStateHeader, state)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	if q.Get("download") == "1" {
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", rec.ID+"."+name))
	}
	if q.Get("follow") == "1" {
		followOutput(w, r, sup, sf.Tail(sel), rec.ID, running, log)
		return nil
	}
	var mod time.Time // a growing file's answers are never "not modified"
	if !running {
		mod = sf.ModTime()
	}
	http.ServeContent(w, r, "", mod, sf.Stream(sel))
	return nil
}

// followOutput streams what a job spools until the spool's exit event, or
// until the job is gone without one (lost, or its spool failed), the
// client leaves, or the server shuts down. Each write has a deadline, so a
// client that stops reading is dropped. Once the answer has begun, a
// failure can only end it early: it is logged.
func followOutput(w http.ResponseWriter, r *http.Request, sup *supervisor.Supervisor, t *spool.Tail, id string, running bool, log *slog.Logger) {
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		if err := writeDeadline(rc, followWriteTimeout); err != nil {
			return // the connection is gone
		}
		n, err := t.Read(w)
		if err != nil {
			log.Debug("follow output: ended early", "job", id, "err", err)
			return
		}
		if n > 0 {
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if t.Exit() != nil || !running {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		if _, _, ok := sup.Record(id); !ok || !sup.Accepting() {
			running = false // one last read: what the job wrote before its end
		}
	}
}

// jobOutput is the admin API's GET /api/v1/jobs/{id}/output: any job's.
func (a *Admin) jobOutput(w http.ResponseWriter, r *http.Request, _ string) error {
	rec, running, err := findJob(a.sup, r.PathValue("id"))
	if err != nil {
		return err
	}
	return serveOutput(w, r, a.sup, rec, running, a.log)
}

// jobEvents is the admin API's GET /api/v1/jobs/{id}/events: any job's
// events, as its tenant reads them (http_events.go), with no resume token.
func (a *Admin) jobEvents(w http.ResponseWriter, r *http.Request, _ string) error {
	rec, _, err := findJob(a.sup, r.PathValue("id"))
	if err != nil {
		return err
	}
	// In the table while it runs, and while its end awaits its client.
	job, err := a.sup.Attachable(rec.ID)
	if err != nil {
		job = nil // ended and let go: its spool has its events, if it keeps one
	}
	return serveEvents(w, r, a.sup, a.log, job, rec)
}
