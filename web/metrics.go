package web

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chimirror/chimirror/supervisor"
)

// Metrics is the server's Prometheus registry (prometheus/client_golang),
// shared by the public Server, which counts starts, refusals and setup
// latency, and the Admin, which serves it. The zero of a nil *Metrics
// records nothing.
type Metrics struct {
	reg        *prometheus.Registry
	starts     prometheus.Counter
	rejections *prometheus.CounterVec
	ended      *prometheus.CounterVec
	setup      prometheus.Histogram
	bytes      *prometheus.CounterVec
}

// NewMetrics registers the server's counters. Watch then adds the values
// read from a supervisor when scraped; it exists before the supervisor so
// that the supervisor's OnEnd can count into it.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.starts = prometheus.NewCounter(prometheus.CounterOpts{Name: "chimirror_starts_total",
		Help: "Jobs started (a process was made)."})
	m.rejections = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chimirror_rejections_total",
		Help: "Connections refused before a job started, by reason."}, []string{"reason"})
	m.ended = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chimirror_jobs_ended_total",
		Help: "Jobs ended, by reason."}, []string{"reason"})
	m.setup = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "chimirror_setup_seconds",
		Help:    "From the upgrade request to the job bridged to its client.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chimirror_bytes_total",
		Help: "Bytes moved between ended jobs and their clients, by channel."}, []string{"channel"})
	m.reg.MustRegister(m.starts, m.rejections, m.ended, m.setup, m.bytes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Watch registers the values read from sup at each scrape: sessions by
// state, cgroup errors, replay memory and ledger write errors. Call it once.
func (m *Metrics) Watch(sup *supervisor.Supervisor) {
	sessions := prometheus.NewDesc("chimirror_sessions", "Jobs in the session table, by state.", []string{"state"}, nil)
	m.reg.MustRegister(funcCollector{
		desc: sessions,
		collect: func(ch chan<- prometheus.Metric) {
			running := len(sup.Jobs())
			ch <- prometheus.MustNewConstMetric(sessions, prometheus.GaugeValue, float64(running), "running")
			ch <- prometheus.MustNewConstMetric(sessions, prometheus.GaugeValue, float64(sup.Running()-running), "starting")
		},
	})
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "chimirror_cgroup_errors_total",
		Help: "Failures to make, read or delete a job's sandbox."}, func() float64 { return float64(sup.CgroupErrors()) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chimirror_replay_memory_bytes",
		Help: "Bytes every job's replay ring holds now (output events not yet let go)."}, func() float64 { return float64(sup.ReplayMemoryUsed()) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chimirror_replay_memory_max_bytes",
		Help: "replay_memory_max: the bound of every ring together; full, jobs' output waits."}, func() float64 { return float64(sup.ReplayMemoryMax()) }))
	if l := sup.Ledger(); l != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "chimirror_ledger_write_errors_total",
			Help: "Ledger writes that failed (their records are written again later)."}, func() float64 { return float64(l.WriteErrors()) }))
	}
}

type funcCollector struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (f funcCollector) Describe(ch chan<- *prometheus.Desc) { ch <- f.desc }
func (f funcCollector) Collect(ch chan<- prometheus.Metric) { f.collect(ch) }

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// JobEnded counts a job's end and its bytes; it fits supervisor.Config.OnEnd.
func (m *Metrics) JobEnded(info supervisor.JobInfo, e supervisor.Exit) {
	if m == nil {
		return
	}
	m.ended.WithLabelValues(string(e.Reason)).Inc()
	m.bytes.WithLabelValues("stdin").Add(float64(info.Counters.StdinBytes))
	m.bytes.WithLabelValues("stdout").Add(float64(info.Counters.StdoutBytes))
	m.bytes.WithLabelValues("stderr").Add(float64(info.Counters.StderrBytes))
}

func (m *Metrics) started(since time.Time) {
	if m == nil {
		return
	}
	m.starts.Inc()
	m.setup.Observe(time.Since(since).Seconds())
}

// rejectReasons are the reason labels of refusals, by status.
var rejectReasons = map[int]string{
	http.StatusNotFound: "unknown-app", http.StatusForbidden: "origin", http.StatusUnauthorized: "auth",
	http.StatusTooManyRequests: "busy", http.StatusServiceUnavailable: "unavailable",
	http.StatusBadRequest: "bad-request", http.StatusUpgradeRequired: "not-websocket",
	http.StatusMethodNotAllowed: "method",
}

// rejected counts a refusal; the reason is a short label for its status.
func (m *Metrics) rejected(status int) {
	if m == nil {
		return
	}
	reason, ok := rejectReasons[status]
	if !ok {
		reason = "other"
	}
	m.rejections.WithLabelValues(reason).Inc()
}
