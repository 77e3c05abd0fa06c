package web

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/gorilla/websocket"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/supervisor"
)

// serveAttach reattaches a client to running job id:
//
//	GET /jobs/ID/attach?after=SEQ[&watch=1]   (WebSocket, any sub-protocol)
//
// It takes the tenant's token as a new job does, and the job's resume
// token in X-Chimirror-Resume or ?resume=. The refusals, before the
// upgrade, each leave the job as it was:
//
//	401  no tenant token where tenants are configured, or no resume token
//	403  a wrong resume token (counted with wrong tenant tokens: 429 past
//	     the limit), or an Origin not allowed
//	404  no such job running, or it is another tenant's
//	400  a bad after (not a number, or past the job's last event) or watch
//	409  the job is ending with nobody to deliver to (a watcher may still come)
//	429  the job has MaxWatchers watchers
//	426  not a WebSocket upgrade
//
// Without watch the client becomes the job's attached client and the one
// before is closed with 4300 (see Job.Attach). The handler serves the
// client until it goes, as the job's owner of it.
func (s *Server) serveAttach(w http.ResponseWriter, r *http.Request, id string) error {
	if !websocket.IsWebSocketUpgrade(r) {
		return errorf(http.StatusUpgradeRequired, "/jobs/%s/attach is a WebSocket endpoint", id)
	}
	proto, tenant, err := s.admitClient(r)
	if err != nil {
		return err
	}
	job, err := s.resumable(r, tenant, id)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var o supervisor.AttachOptions
	if a := q.Get("after"); a != "" {
		n, err := strconv.ParseUint(a, 10, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "after=%q: want the seq of the last event you have", a)
		}
		o.After, o.AfterSet = n, true
	}
	switch q.Get("watch") {
	case "", "0":
	case "1":
		o.Watch = true
	default:
		return errorf(http.StatusBadRequest, "watch=%q: want 1 or 0", q.Get("watch"))
	}
	if err := job.CanAttach(o); err != nil {
		return attachError(err)
	}
	hw := &hijackWriter{ResponseWriter: w}
	hdr := http.Header{headerJob: {job.ID}}
	if proto != "" {
		hdr.Set("Sec-Websocket-Protocol", proto)
	}
	ws, err := s.upgrader.Upgrade(hw, r, hdr)
	if err != nil { // gorilla has answered the client
		job.Log().Info("attach: upgrade failed", "err", err)
		return nil
	}
	wc := newWSConn(ws, hw.bc, job.Log(), s.opts.Limits)
	wc.acks = proto == ProtoV1 && r.Header.Get(headerAck) == "1"
	c := s.client(proto, wc, job)
	if err := job.Attach(c, o); err != nil {
		job.Log().Info("attach refused after the upgrade", "err", err)
		if derr := c.Dismiss(supervisor.DismissGone, attachRefusal(err)); derr != nil {
			job.Log().Debug("dismiss attaching client", "err", derr)
		}
	}
	return nil
}

// resumable is tenant's running job id, if the request holds its resume
// token (X-Chimirror-Resume, or ?resume=). Wrong resume tokens count
// against the client's address with wrong tenant tokens.
func (s *Server) resumable(r *http.Request, tenant *supervisor.Tenant, raw string) (*supervisor.Job, error) {
	id, err := canonicalJobID(raw)
	if err != nil {
		return nil, err
	}
	job, err := s.sup.Attachable(id)
	if err != nil || job.Tenant.Name != tenant.Name {
		return nil, noSuchJob(id)
	}
	token := r.Header.Get(headerResume)
	if token == "" {
		token = r.URL.Query().Get("resume")
	}
	if token == "" {
		return nil, unauthorized("a resume token is required: " + headerResume + ": TOKEN, or ?resume=TOKEN")
	}
	if !job.CheckResume(token) {
		host := clientHost(r)
		if s.limiter.blocked(host) {
			return nil, s.limiter.refusal(host, "resume tokens")
		}
		s.limiter.fail(host)
		return nil, errorf(http.StatusForbidden, "wrong resume token for %s", id)
	}
	return job, nil
}

// canonicalJobID is a job ID from a request in its canonical spelling
// (JOB00000042 for job42, JOB42, 42), or a 400 for a malformed one.
func canonicalJobID(raw string) (string, error) {
	seq, err := accounting.ParseID(raw)
	if err != nil {
		return "", errorf(http.StatusBadRequest, "%v", err)
	}
	return accounting.FormatID(seq), nil
}

// noSuchJob is the one answer for a job that does not exist, is another
// tenant's, or is not running where it must be: a tenant never learns
// which IDs exist (the same text as the output's, findJob's).
func noSuchJob(id string) error { return errorf(http.StatusNotFound, "no such job: %s", id) }

// attachError is the refusal of an attach the job does not take.
func attachError(err error) error {
	switch {
	case errors.Is(err, supervisor.ErrTooManyWatchers):
		return &httpError{Status: http.StatusTooManyRequests, Msg: err.Error(), RetryAfter: "5"}
	case errors.Is(err, supervisor.ErrBadPosition):
		return errorf(http.StatusBadRequest, "%v", err)
	case errors.Is(err, supervisor.ErrJobEnding):
		return errorf(http.StatusConflict, "%v", err)
	}
	return errorf(http.StatusNotFound, "%v", err)
}

// attachRefusal is the close text of an attach the job refused once the
// connection was upgraded (it changed in between).
func attachRefusal(err error) string {
	switch {
	case errors.Is(err, supervisor.ErrTooManyWatchers):
		return "too many watchers"
	case errors.Is(err, supervisor.ErrBadPosition):
		return "after is past the job's last event"
	case errors.Is(err, supervisor.ErrJobEnding):
		return "the job is ending"
	}
	return "the job is gone"
}
