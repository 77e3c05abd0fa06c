package web

import (
	"fmt"
	"net/http"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/supervisor"
)

func (a *Admin) reportQuery(r *http.Request) (accounting.ReportQuery, error) {
	v := r.URL.Query()
	q := accounting.ReportQuery{By: v.Get("by"), CPUSecondRate: a.opts.CPUSecondRate, GiBHourRate: a.opts.GiBHourRate}
	if q.By == "" {
		q.By = "tenant"
	}
	var err error
	if q.Since, err = parseTime("since", v.Get("since")); err != nil {
		return q, err
	}
	if q.Until, err = parseTime("until", v.Get("until")); err != nil {
		return q, err
	}
	if err := q.Validate(); err != nil {
		return q, errorf(http.StatusBadRequest, "%v", err)
	}
	return q, nil
}

func (a *Admin) acct(w http.ResponseWriter, r *http.Request, _ string) error {
	q, err := a.reportQuery(r)
	if err != nil {
		return err
	}
	if a.ledger == nil {
		return errorf(http.StatusServiceUnavailable, "this server keeps no ledger")
	}
	groups, err := a.ledger.Report(q)
	if err != nil {
		return err
	}
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		writeJSON(w, http.StatusOK, map[string]any{"by": q.By, "since": q.Since, "until": q.Until, "groups": groups})
		return nil
	case "csv":
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="chimirror-acct-by-%s.csv"`, q.By))
		return accounting.WriteReportCSV(w, q.By, groups)
	default:
		return errorf(http.StatusBadRequest, "bad format %q: json or csv", f)
	}
}

func (a *Admin) tenants(w http.ResponseWriter, _ *http.Request, _ string) error {
	jobs := a.sup.Jobs()
	running := make(map[string]int)
	for _, j := range jobs {
		running[j.Tenant]++
	}
	type tenantJSON struct {
		Name        string            `json:"name"`
		Running     int               `json:"running"`
		MaxSessions int               `json:"max_sessions"`
		Today       *accounting.Group `json:"today,omitempty"`
	}
	list := []tenantJSON{}
	ts := a.sup.Tenants()
	if len(ts) == 0 {
		ts = []*supervisor.Tenant{supervisor.PublicTenant}
	}
	today := make(map[string]accounting.Group)
	if a.ledger != nil {
		now := time.Now()
		midnight := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, now.Location())
		groups, err := a.ledger.Report(accounting.ReportQuery{By: "tenant", Since: midnight,
			CPUSecondRate: a.opts.CPUSecondRate, GiBHourRate: a.opts.GiBHourRate})
		if err != nil {
			return err
		}
		for _, g := range groups {
			today[g.Key] = g
		}
	}
	for _, t := range ts {
		tj := tenantJSON{Name: t.Name, Running: running[t.Name], MaxSessions: t.MaxSessions}
		g, ok := today[t.Name]
		if !ok {
			g = accounting.Group{Key: t.Name, Reasons: map[string]int{}}
		}
		tj.Today = &g
		list = append(list, tj)
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenants": list, "running": len(jobs), "max_sessions": a.sup.MaxSessions()})
	return nil
}

func (a *Admin) policies(w http.ResponseWriter, _ *http.Request, _ string) error {
	type policyJSON struct {
		Name           string  `json:"name"`
		Source         string  `json:"source"`
		CPU            float64 `json:"cpu,omitempty"`
		MemoryMaxBytes int64   `json:"memory_max_bytes,omitempty"`
		PidsMax        int64   `json:"pids_max,omitempty"`
		WallTimeNs     int64   `json:"wall_time_ns,omitempty"`
		CPUTimeNs      int64   `json:"cpu_time_ns,omitempty"`
		IdleTimeoutNs  int64   `json:"idle_timeout_ns,omitempty"`
		MaxOutputBytes int64   `json:"max_output_bytes,omitempty"`
		Network        bool    `json:"network"`
		User           string  `json:"user"`
		UserNamespace  bool    `json:"user_namespace"`
		Initiators     int     `json:"initiators"`
	}
	list := []policyJSON{}
	if a.opts.Policies != nil {
		for _, p := range a.opts.Policies() {
			list = append(list, policyJSON{Name: p.Name, Source: p.Source, CPU: p.CPU, MemoryMaxBytes: p.MemoryMaxBytes,
				PidsMax: p.PidsMax, WallTimeNs: int64(p.WallTime), CPUTimeNs: int64(p.CPUTime), IdleTimeoutNs: int64(p.IdleTimeout),
				MaxOutputBytes: p.MaxOutputBytes, Network: p.Network, User: p.User, UserNamespace: p.UserNamespace, Initiators: p.Initiators})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"policies": list})
	return nil
}
