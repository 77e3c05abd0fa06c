package web

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/supervisor"
)

// jobJSON is a record as the API shows it: running jobs carry "live".
type jobJSON struct {
	accounting.Record
	Live *liveJSON `json:"live,omitempty"`
}

// liveJSON is a running job's usage now: traffic is current, cgroup
// readings are from the last sample (SampledAt).
type liveJSON struct {
	CPUNs              int64     `json:"cpu_ns"`
	CPUPercent         *float64  `json:"cpu_percent,omitempty"`
	MemoryCurrentBytes int64     `json:"memory_current_bytes"`
	MemoryPeakBytes    int64     `json:"memory_peak_bytes"`
	Pids               int64     `json:"pids"`
	StdinBytes         int64     `json:"stdin_bytes"`
	StdoutBytes        int64     `json:"stdout_bytes"`
	StderrBytes        int64     `json:"stderr_bytes"`
	MessagesIn         int64     `json:"messages_in"`
	SampledAt          time.Time `json:"sampled_at,omitzero"`
}

func liveOf(info supervisor.JobInfo) *liveJSON {
	l := &liveJSON{MemoryCurrentBytes: -1, MemoryPeakBytes: -1, StdinBytes: info.Counters.StdinBytes,
		StdoutBytes: info.Counters.StdoutBytes, StderrBytes: info.Counters.StderrBytes, MessagesIn: info.Counters.MessagesIn,
		SampledAt: info.UsageAt}
	if info.Sandboxed && !info.UsageAt.IsZero() {
		u := info.Usage
		l.CPUNs, l.MemoryCurrentBytes, l.MemoryPeakBytes, l.Pids = u.CPUUserNs+u.CPUSystemNs, u.MemoryCurrentBytes, u.MemoryPeakBytes, u.PidsCurrent
	}
	if info.CPUPercent >= 0 && info.Sandboxed {
		p := info.CPUPercent
		l.CPUPercent = &p
	}
	return l
}

// running is a running job's record with its live usage.
func (a *Admin) running(id string) (jobJSON, bool) {
	rec, info, ok := a.sup.Record(id)
	if !ok {
		return jobJSON{}, false
	}
	return runningJSON(rec, info), true
}

const (
	defaultPage = 50
	maxPage     = 1000
)

func (a *Admin) listJobs(w http.ResponseWriter, r *http.Request, _ string) error {
	v := r.URL.Query()
	q := accounting.Query{State: v.Get("state"), Tenant: v.Get("tenant"), App: v.Get("app"), Reason: v.Get("reason"),
		Policy: v.Get("policy"), Cursor: v.Get("cursor"), Limit: defaultPage}
	if q.State == "" {
		q.State = "all"
	}
	var err error
	if q.Since, err = parseTime("since", v.Get("since")); err != nil {
		return err
	}
	if q.Until, err = parseTime("until", v.Get("until")); err != nil {
		return err
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPage {
			return errorf(http.StatusBadRequest, "bad limit %q: 1 to %d", s, maxPage)
		}
		q.Limit = n
	}
	if err := q.Validate(); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if a.ledger == nil {
		return errorf(http.StatusServiceUnavailable, "this server keeps no ledger")
	}
	page, err := a.ledger.List(q)
	if err != nil {
		return err
	}
	out := struct {
		Jobs []jobJSON `json:"jobs"`
		Next string    `json:"next,omitempty"`
	}{Jobs: make([]jobJSON, 0, len(page.Records)), Next: page.Next}
	for _, rec := range page.Records {
		if rec.State.Open() {
			if j, ok := a.running(rec.ID); ok {
				j.LastSeen = rec.LastSeen
				out.Jobs = append(out.Jobs, j)
				continue
			}
		}
		out.Jobs = append(out.Jobs, jobJSON{Record: rec})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *Admin) getJob(w http.ResponseWriter, r *http.Request, _ string) error {
	id := r.PathValue("id")
	if _, err := accounting.ParseID(id); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	if a.ledger == nil {
		return errorf(http.StatusServiceUnavailable, "this server keeps no ledger")
	}
	rec, samples, err := a.ledger.Get(id)
	if errors.Is(err, accounting.ErrNotFound) {
		return errorf(http.StatusNotFound, "%v", err)
	}
	if err != nil {
		return err
	}
	j := jobJSON{Record: rec}
	if live, ok := a.running(rec.ID); ok {
		live.LastSeen = rec.LastSeen
		j = live
	}
	samples = closeSamples(samples, j)
	writeJSON(w, http.StatusOK, map[string]any{"job": j, "samples": samples})
	return nil
}

// closeSamples ends a job's samples with its latest reading: the ledger
// skips samples that did not change, so an idle job may have one sample
// for its whole life. A running job gets its live reading; an ended one
// its final CPU at ended_at (its memory as last sampled).
func closeSamples(samples []accounting.Sample, j jobJSON) []accounting.Sample {
	if samples == nil {
		samples = []accounting.Sample{}
	}
	var last accounting.Sample
	if n := len(samples); n > 0 {
		last = samples[n-1]
	}
	var end accounting.Sample
	switch {
	case j.Live != nil && !j.Live.SampledAt.IsZero():
		l := j.Live
		end = accounting.Sample{At: l.SampledAt, CPUNs: l.CPUNs, MemoryCurrentBytes: l.MemoryCurrentBytes, PidsCurrent: l.Pids,
			StdinBytes: l.StdinBytes, StdoutBytes: l.StdoutBytes, StderrBytes: l.StderrBytes}
	case !j.State.Open() && !j.EndedAt.IsZero() && len(samples) > 0:
		end = last
		end.At, end.CPUNs = j.EndedAt, j.Usage.CPUNs()
		end.StdinBytes, end.StdoutBytes, end.StderrBytes = j.Traffic.StdinBytes, j.Traffic.StdoutBytes, j.Traffic.StderrBytes
	default:
		return samples
	}
	if end.At.After(last.At) {
		samples = append(samples, end)
	}
	return samples
}

func (a *Admin) cancelJob(w http.ResponseWriter, r *http.Request, label string) error {
	id, err := canonicalJobID(r.PathValue("id"))
	if err != nil {
		return err
	}
	err = a.sup.Cancel(id, label)
	if err == nil {
		a.log.Info("job cancelled by operator", "job", id, "by", label)
		writeJSON(w, http.StatusAccepted, map[string]string{"id": id, "state": "cancelling"})
		return nil
	}
	if !errors.Is(err, supervisor.ErrNoJob) {
		return err
	}
	if a.ledger != nil {
		if rec, gerr := a.ledger.Record(id); gerr == nil {
			return errorf(http.StatusConflict, "%s has already ended (%s, %s)", id, rec.State, rec.Reason)
		}
	}
	return errorf(http.StatusNotFound, "no such job: %s", id)
}
