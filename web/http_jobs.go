package web

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/chimirror/chimirror/supervisor"
)

// Jobs over plain HTTP (issue 16 §3, §4), on the public listener:
//
//	POST /apps/NAME/jobs        submit a batch job; the body is its stdin
//	GET  /jobs/JOBID/output     its spooled output (output.go)
//	     /jobs/JOBID/events, /stdin, /signal, DELETE /jobs/JOBID
//	                            the job as it runs (http_events.go)
//	GET  /jobs/JOBID/attach     reattach over WebSocket (attach.go)
//
// Submit runs the app's job with no client (mode = "batch"). The body is
// written to the job's stdin as it arrives, which is then closed (EOF)
// unless ?stdin=open. The answer, once the body is in, is 201 with a
// Location (the job's output) and
//
//	{"id": "JOB…", "resume": TOKEN, "events": URL, "stdin": URL,
//	 "output": URL, "stdin_bytes": N}
//
// resume is the job's resume token: with it a client reads the job's
// events as they come (events: SSE or long-poll), appends to its stdin
// (stdin, when submitted with ?stdin=open), signals or ends it (see
// http_events.go), or watches it over WebSocket at
// /jobs/JOBID/attach?watch=1 (see attach.go). output is its spool.
//
// stdin_bytes is how much of the body the job took: less than the body
// when the job ended (or closed its stdin) before reading it all. Tenant
// auth, the caps and their 429 (with Retry-After) are the WebSocket
// endpoint's, and so is the Origin check: a browser page of another origin
// cannot submit. An interactive app answers 409: its jobs live as long as
// their client, and a submit has none (running it anyway would hold a
// session until wall_time with no one to see it, against what its operator
// chose); set mode = "batch" on the app or its policy.

// submitDrainBytes is how much of a submit's body is still read, and
// dropped, once its job takes no more stdin.
const submitDrainBytes = 1 << 20

// submitChunkBytes is how much of a submit's body is read and written to
// the job's stdin at a time.
const submitChunkBytes = 64 << 10

// routeJobs serves the HTTP job routes; ok is false for any other request.
func (s *Server) routeJobs(w http.ResponseWriter, r *http.Request) (ok bool, err error) {
	p := r.URL.EscapedPath()
	if rest, found := strings.CutPrefix(p, "/apps/"); found && r.Method == http.MethodPost {
		if name, ok := strings.CutSuffix(rest, "/jobs"); ok && !strings.Contains(name, "/") {
			return true, s.submit(w, r, name)
		}
	}
	rest, found := strings.CutPrefix(p, "/jobs/")
	if !found {
		return false, nil
	}
	id, tail, _ := strings.Cut(rest, "/")
	switch tail {
	case "output", "attach":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return true, errorf(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
		}
		if tail == "attach" {
			return true, s.serveAttach(w, r, id)
		}
		return true, s.output(w, r, id)
	}
	return s.routeJob(w, r, id, tail) // http_events.go
}

// submit starts a batch job of app name with the request's body as stdin.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, name string) error {
	app, ok := s.sup.App(name)
	if !ok {
		return errorf(http.StatusNotFound, "unknown app %q", name)
	}
	if !s.originAllowed(r) {
		return errorf(http.StatusForbidden, "origin %q is not allowed", r.Header.Get("Origin"))
	}
	tenant, err := s.authenticate(r)
	if err != nil {
		return err
	}
	if !app.RunsBatch() {
		return errorf(http.StatusConflict, "app %s is interactive: open it over WebSocket at /apps/%s (only an app or policy with mode = \"batch\" takes submitted jobs)", name, name)
	}
	keepOpen := false
	switch v := r.URL.Query().Get("stdin"); v {
	case "", "close":
	case "open":
		keepOpen = true
	default:
		return errorf(http.StatusBadRequest, "bad stdin %q: open or close", v)
	}
	job, err := s.startJob(r, app, tenant, "/apps/"+name, "", "http")
	if err != nil {
		return err
	}
	b, err := job.RunBatch()
	if err != nil { // RunsBatch was checked: a reload made it interactive since
		job.Abort()
		return errorf(http.StatusConflict, "%v", err)
	}
	took, _, err := feedStdin(b, r.Body, keepOpen)
	if err != nil {
		b.Cancel("submit: " + err.Error())
		job.Log().Info("submit failed: job cancelled", "err", err)
		return errorf(http.StatusBadRequest, "reading the request body: %v", err)
	}
	jobURL := strings.TrimRight(s.opts.Edge.BasePath, "/") + "/jobs/" + job.ID
	w.Header().Set("Location", jobURL+"/output")
	writeJSON(w, http.StatusCreated, map[string]any{
		"id":          job.ID,
		"resume":      job.ResumeToken(),
		"events":      jobURL + "/events",
		"stdin":       jobURL + "/stdin",
		"output":      jobURL + "/output",
		"stdin_bytes": took,
	})
	return nil
}

// stdinSink is a job's stdin as a writer that is not its client has it.
type stdinSink interface {
	Write(p []byte) (int, error)
	CloseStdin() error
}

// feedStdin writes body to dst and closes it unless keepOpen; it returns
// how many bytes the job took, and whether it stopped taking them before
// the body's end. A job that stops taking stdin (ended, or closed it) is
// no error: at most submitDrainBytes more of the body are read and
// dropped, so that a client still sending gets its answer, and a client
// that sends on and on holds nothing (net/http closes a connection whose
// body was left unread). An error is the body's.
func feedStdin(dst stdinSink, body io.Reader, keepOpen bool) (took int64, stopped bool, err error) {
	buf := make([]byte, submitChunkBytes)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				if _, err := io.CopyN(io.Discard, body, submitDrainBytes); err != nil && !errors.Is(err, io.EOF) {
					return took, true, err
				}
				return took, true, nil
			}
			took += int64(n)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return took, false, rerr
		}
	}
	if !keepOpen {
		// An error is the job's end meanwhile: there is nothing to close.
		if err := dst.CloseStdin(); err != nil {
			return took, true, nil
		}
	}
	return took, false, nil
}

// output serves a job's spool to its tenant.
func (s *Server) output(w http.ResponseWriter, r *http.Request, id string) error {
	tenant, err := s.authenticate(r)
	if err != nil {
		return err
	}
	rec, running, err := findJob(s.sup, id)
	if err != nil {
		return err
	}
	if tenant != supervisor.PublicTenant && rec.Tenant != tenant.Name {
		return errorf(http.StatusNotFound, "no such job: %s", rec.ID)
	}
	return serveOutput(w, r, s.sup, rec, running, s.log)
}
