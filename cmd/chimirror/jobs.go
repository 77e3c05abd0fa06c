package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/internal/adminapi"
	"github.com/chimirror/chimirror/internal/cli"
	"github.com/chimirror/chimirror/tomlstrict"
)

// jobSource is where jobs, job, cancel and acct read: a running server's
// admin API, or, when no server runs, the ledger file opened read-only.
type jobSource interface {
	list(q accounting.Query) (listedPage, error)
	get(id string) (json.RawMessage, error)
	report(q accounting.ReportQuery) ([]accounting.Group, error)
	cancel(id string) error
	close() error
	describe() string
}

// listedPage is a page of records; running jobs from the API carry live
// usage, which the table shows instead of the last recorded one (their
// traffic is current already).
type listedPage struct {
	Jobs []listedJob `json:"jobs"`
	Next string      `json:"next,omitempty"`
}

type listedJob struct {
	accounting.Record
	Live *struct {
		CPUNs           int64 `json:"cpu_ns"`
		MemoryPeakBytes int64 `json:"memory_peak_bytes"`
	} `json:"live,omitempty"`
}

// clientFlags are the flags every ledger command shares.
type clientFlags struct {
	config  *string
	dataDir *string
	admin   *string
	token   *string
	json    *bool
	// For an admin listener with TLS: CAs to trust besides the system's
	// and the config's own admin certificate, and a client certificate
	// for admin_client_ca.
	ca, cert, key *string
}

func addClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		config:  fs.String("config", "", "config file (default ./chimirror.toml if present, else the embedded default): says where the admin API and the data dir are"),
		dataDir: fs.String("data-dir", "", "the data dir holding ledger.db and admin.token (default: data_dir from the config)"),
		admin:   fs.String("admin", "", "the server's admin address (default: admin_listen from the config)"),
		token:   fs.String("token", "", "admin token (default $CHIMIRROR_ADMIN_TOKEN, else DATA_DIR/admin.token)"),
		json:    fs.Bool("json", false, "print JSON (stable; documented in the README)"),
		ca:      fs.String("ca", "", "admin TLS: a PEM bundle of CAs to trust besides the system's and the config's admin certificate"),
		cert:    fs.String("cert", "", "admin TLS: client certificate (PEM) for an admin listener with admin_client_ca"),
		key:     fs.String("key", "", "admin TLS: the --cert's private key (PEM)"),
	}
}

// open finds the source: the admin API if a server answers at
// admin_listen, else the ledger file read-only. It also returns the
// configuration it read.
func (f clientFlags) open() (jobSource, *config, error) {
	cfg, err := loadConfig(*f.config)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	if *f.dataDir != "" {
		cfg.DataDir = *f.dataDir
	}
	token := *f.token
	if token == "" {
		token = os.Getenv("CHIMIRROR_ADMIN_TOKEN")
	}
	if token == "" {
		if token, err = readAdminToken(cfg.DataDir); err != nil {
			return nil, nil, fmt.Errorf("%w (or give --token, or set CHIMIRROR_ADMIN_TOKEN)", err)
		}
	}
	switch info, ok := readServerFile(cfg.DataDir); {
	case *f.admin != "":
		cfg.AdminListen = *f.admin
	case ok && ledgerHeld(cfg.DataDir):
		// Where the server holding this data dir really listens. Only
		// while it holds the ledger: the file of a crashed server names
		// a port anyone may have taken since, and the token goes there.
		cfg.AdminListen = info.Admin
	}
	client, err := f.adminHTTP(cfg)
	if err != nil {
		return nil, nil, err
	}
	api := &apiSource{api: &adminapi.Client{Base: adminapi.BaseURL(cfg.AdminListen, cfg.AdminEdge.BasePath, cfg.AdminEdge.TLS != nil),
		Token: token, HTTP: client}}
	switch err := api.api.Ping(2 * time.Second); {
	case err == nil:
		return api, cfg, nil
	case !errors.Is(err, syscall.ECONNREFUSED):
		hint := ""
		if cfg.tls.files.clientCA != "" && *f.cert == "" {
			hint = " (the admin listener asks for a client certificate: give --cert and --key)"
		}
		return nil, nil, fmt.Errorf("admin API at %s: %w%s", cfg.AdminListen, err, hint)
	}
	l, err := accounting.Open(ledgerPath(cfg.DataDir), accounting.Options{ReadOnly: true, LockTimeout: 500 * time.Millisecond})
	if errors.Is(err, accounting.ErrLocked) {
		return nil, nil, fmt.Errorf("a server holds the ledger in %s but its admin API does not answer at %s: give its address with --admin HOST:PORT (its admin_listen or --admin-listen)", cfg.DataDir, cfg.AdminListen)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("no server answers at %s, and the ledger cannot be read: %w", cfg.AdminListen, err)
	}
	return &fileSource{l: l}, cfg, nil
}

// ledgerHeld reports whether a server holds dataDir's ledger now.
func ledgerHeld(dataDir string) bool {
	l, err := accounting.Open(ledgerPath(dataDir), accounting.Options{ReadOnly: true, LockTimeout: 100 * time.Millisecond})
	if err == nil {
		err = l.Close() // nobody holds it: the server file is stale
	}
	return errors.Is(err, accounting.ErrLocked)
}

// adminHTTP is the HTTP client for cfg's admin API. With admin TLS, it
// trusts the config's own admin certificate (likely self-signed), the
// system's roots and --ca, and presents --cert; without, those flags are
// refused rather than ignored.
func (f clientFlags) adminHTTP(cfg *config) (*http.Client, error) {
	if cfg.AdminEdge.TLS == nil {
		if *f.ca != "" || *f.cert != "" || *f.key != "" {
			return nil, fmt.Errorf("--ca, --cert and --key are for an admin listener with TLS, and %s sets none", cfg.Source)
		}
		return &http.Client{Timeout: 30 * time.Second}, nil
	}
	var files []string
	if kp := cfg.tls.admin; kp != nil { // loaded: the config is valid
		certFile, _ := kp.Files()
		files = append(files, certFile)
	}
	if *f.ca != "" {
		files = append(files, *f.ca)
	}
	tc, err := clientTLS(files...)
	if err != nil {
		return nil, fmt.Errorf("trust the admin certificate: %w", err)
	}
	switch {
	case (*f.cert == "") != (*f.key == ""):
		return nil, errors.New("--cert and --key: give both, or neither")
	case *f.cert != "":
		pair, err := tls.LoadX509KeyPair(*f.cert, *f.key)
		if err != nil {
			return nil, fmt.Errorf("--cert %s and --key %s: %w", *f.cert, *f.key, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return &http.Client{Timeout: 30 * time.Second, Transport: tr}, nil
}

// --- the admin API ---------------------------------------------------------

type apiSource struct{ api *adminapi.Client }

func (a *apiSource) describe() string { return "server " + strings.TrimSuffix(a.api.Base, "/api/v1") }
func (a *apiSource) close() error     { return nil }

// do calls the API and decodes a 2xx answer into out; any other status is
// an *adminapi.StatusError carrying the server's message.
func (a *apiSource) do(method, path string, out any) error {
	return tokenHintOn(a.api.Do(method, path, out))
}

// tokenHintOn says how to give the admin token when err is the API's 401.
func tokenHintOn(err error) error {
	var se *adminapi.StatusError
	if errors.As(err, &se) && se.Status == http.StatusUnauthorized {
		se.Msg += " (give --token, or set CHIMIRROR_ADMIN_TOKEN)"
	}
	return err
}

func (a *apiSource) list(q accounting.Query) (listedPage, error) {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("state", q.State)
	set("tenant", q.Tenant)
	set("app", q.App)
	set("cursor", q.Cursor)
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var p listedPage
	err := a.do(http.MethodGet, "/jobs?"+v.Encode(), &p)
	return p, err
}

func (a *apiSource) get(id string) (json.RawMessage, error) {
	var out struct {
		Job json.RawMessage `json:"job"`
	}
	err := a.do(http.MethodGet, "/jobs/"+url.PathEscape(id), &out)
	return out.Job, err
}

func (a *apiSource) report(q accounting.ReportQuery) ([]accounting.Group, error) {
	v := url.Values{"by": {q.By}}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.Format(time.RFC3339Nano))
	}
	var out struct {
		Groups []accounting.Group `json:"groups"`
	}
	err := a.do(http.MethodGet, "/acct?"+v.Encode(), &out)
	return out.Groups, err
}

func (a *apiSource) cancel(id string) error {
	return a.do(http.MethodPost, "/jobs/"+url.PathEscape(id)+"/cancel", nil)
}

// --- the ledger file -------------------------------------------------------

type fileSource struct{ l *accounting.Ledger }

func (f *fileSource) describe() string { return "ledger " + f.l.Path() + " (no server running)" }
func (f *fileSource) close() error     { return f.l.Close() }

func (f *fileSource) list(q accounting.Query) (listedPage, error) {
	p, err := f.l.List(q)
	out := listedPage{Next: p.Next}
	for _, r := range p.Records {
		out.Jobs = append(out.Jobs, listedJob{Record: r})
	}
	return out, err
}

func (f *fileSource) get(id string) (json.RawMessage, error) {
	r, _, err := f.l.Get(id)
	if err != nil {
		return nil, err
	}
	return json.Marshal(r)
}

func (f *fileSource) report(q accounting.ReportQuery) ([]accounting.Group, error) {
	return f.l.Report(q)
}

func (f *fileSource) cancel(id string) error {
	return fmt.Errorf("no server is running: %s cannot be running either", id)
}

// --- commands --------------------------------------------------------------

// cmdJobs is the SDSF-like job list.
func cmdJobs(args []string, stdout, stderr io.Writer) (retErr error) {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	running := fs.Bool("running", false, "only running jobs")
	all := fs.Bool("all", false, "every job, not just the latest 50")
	tenant := fs.String("tenant", "", "only this tenant's jobs")
	app := fs.String("app", "", "only this app's jobs")
	var q accounting.Query
	whenFlag(fs, "since", "only jobs started since: a time (RFC 3339), a date, or a duration ago (\"2h\", \"7d\")", &q.Since)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: chimirror jobs [--running|--all] [--tenant T] [--app A] [--since T] [--json]\n\n"+
			"Lists jobs, newest first: from the running server's admin API, or from the\nledger file when no server runs.\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 || (*running && *all) {
		fs.Usage()
		return cli.ExitCode(2)
	}
	q.Tenant, q.App, q.Limit = *tenant, *app, 50
	if *running {
		q.State = "running"
	}
	if *all {
		q.Limit = 1000 // a page; every page is fetched below
	}
	src, _, err := cf.open()
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, src.close()) }()
	var jobs []listedJob
	for {
		p, err := src.list(q)
		if err != nil {
			return err
		}
		jobs = append(jobs, p.Jobs...)
		if !*all || p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	if *cf.json {
		if jobs == nil {
			jobs = []listedJob{}
		}
		return printJSON(stdout, map[string]any{"jobs": jobs})
	}
	if len(jobs) == 0 {
		fmt.Fprintf(stdout, "no jobs (%s)\n", src.describe())
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOBID\tAPP\tTENANT\tCLASS\tSTATE\tREASON\tSTARTED\tELAPSED\tCPU\tMEM-PEAK\tIO")
	now := time.Now()
	for _, j := range jobs {
		cpu, peak, io := j.Usage.CPUNs(), j.Usage.MemoryPeakBytes, j.Traffic.Bytes()
		if j.Live != nil {
			cpu, peak = j.Live.CPUNs, j.Live.MemoryPeakBytes
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.App, j.Tenant, dash(j.Policy), j.State,
			dash(j.Reason), j.StartedAt.Local().Format("01-02 15:04:05"), fmtElapsed(j.Elapsed(now)),
			fmtElapsed(time.Duration(cpu)), accounting.FormatBytes(peak), accounting.FormatBytes(io))
	}
	return tw.Flush()
}

// jobArgs parses the flags of a command about one job, JOBID included
// (flags may come after it), and opens the job source.
func jobArgs(name, usage string, args []string, stderr io.Writer) (clientFlags, jobSource, string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	id, err := parseJobID(fs, args)
	if err != nil {
		return cf, nil, "", err
	}
	src, _, err := cf.open()
	return cf, src, id, err
}

// parseJobID parses fs's flags, which may come after its one argument, a
// job ID, and returns the ID in its canonical spelling (JOB00000042).
func parseJobID(fs *flag.FlagSet, args []string) (string, error) {
	if err := cli.ParseFlags(fs, reorder(fs, args)); err != nil {
		return "", err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return "", cli.ExitCode(2)
	}
	seq, err := accounting.ParseID(fs.Arg(0))
	if err != nil {
		return "", err
	}
	return accounting.FormatID(seq), nil
}

// cmdJob prints one job's full record.
func cmdJob(args []string, stdout, stderr io.Writer) (retErr error) {
	cf, src, id, err := jobArgs("job", "Usage: chimirror job JOBID [--json]\n\nPrints a job's full ledger record.\n\n", args, stderr)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, src.close()) }()
	raw, err := src.get(id)
	if err != nil {
		return err
	}
	if *cf.json {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		return printJSON(stdout, v)
	}
	var r listedJob
	if err := json.Unmarshal(raw, &r); err != nil {
		return err
	}
	return printRecord(stdout, &r)
}

func printRecord(w io.Writer, j *listedJob) error {
	r := &j.Record
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(tw, "%s\t%v\n", k, v) }
	row("JOBID", r.ID)
	row("APP", r.App)
	row("TENANT", r.Tenant)
	row("CLASS", dash(r.Policy))
	row("COMMAND", quoteArgv(r.Command))
	row("STATE", r.State)
	row("REASON", dash(r.Reason))
	if r.Detail != "" {
		row("DETAIL", r.Detail)
	}
	if r.ExitCode != nil {
		row("EXIT", *r.ExitCode)
	}
	if r.Signal != "" {
		row("SIGNAL", r.Signal)
	}
	if r.CancelledBy != "" {
		row("CANCELLED BY", r.CancelledBy)
	}
	row("STARTED", r.StartedAt.Local().Format(time.RFC3339))
	if !r.EndedAt.IsZero() {
		row("ENDED", r.EndedAt.Local().Format(time.RFC3339))
	}
	row("ELAPSED", fmtElapsed(r.Elapsed(time.Now())))
	row("REMOTE", dash(r.RemoteAddr))
	row("PROTOCOL", dash(r.Protocol))
	row("SANDBOXED", r.Sandboxed)
	row("CPU USER/SYS", fmt.Sprintf("%s / %s", fmtElapsed(time.Duration(r.Usage.CPUUserNs)), fmtElapsed(time.Duration(r.Usage.CPUSystemNs))))
	row("MEM-PEAK", accounting.FormatBytes(r.Usage.MemoryPeakBytes))
	row("OOM KILLS", r.Usage.OOMKills)
	row("STDIN/OUT/ERR", fmt.Sprintf("%s / %s / %s", accounting.FormatBytes(r.Traffic.StdinBytes), accounting.FormatBytes(r.Traffic.StdoutBytes), accounting.FormatBytes(r.Traffic.StderrBytes)))
	row("MESSAGES IN/OUT", fmt.Sprintf("%d / %d", r.Traffic.MessagesIn, r.Traffic.MessagesOut))
	if l := r.Limits; l.MemoryMaxBytes > 0 || l.CPUCores > 0 || l.PidsMax > 0 {
		row("LIMITS", fmt.Sprintf("memory %s, cpu %g, pids %d", accounting.FormatBytes(l.MemoryMaxBytes), l.CPUCores, l.PidsMax))
	}
	return tw.Flush()
}

// cmdCancel is the operator's cancel (JES $C) through the admin API.
func cmdCancel(args []string, stdout, stderr io.Writer) (retErr error) {
	_, src, id, err := jobArgs("cancel", "Usage: chimirror cancel JOBID\n\nEnds a running job: its exit signal, grace, then the kill of its whole cgroup.\n\n", args, stderr)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, src.close()) }()
	if err := src.cancel(id); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: cancelling\n", strings.ToUpper(id))
	return nil
}

// cmdAcct is the accounting report.
func cmdAcct(args []string, stdout, stderr io.Writer) (retErr error) {
	fs := flag.NewFlagSet("acct", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	var q accounting.ReportQuery
	whenFlag(fs, "since", "jobs started since: a time (RFC 3339), a date, or a duration ago (\"24h\", \"7d\")", &q.Since)
	whenFlag(fs, "until", "jobs started before this time", &q.Until)
	by := fs.String("by", "tenant", "group by tenant, app, policy or day")
	format := fs.String("format", "table", "table, csv or json")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: chimirror acct [--since T] [--until T] [--by tenant|app|policy|day] [--format table|csv|json]\n\n"+
			"Sums jobs' usage per group: jobs, CPU seconds, peak memory, GiB-hours of memory,\nbytes, counts by reason, and the cost when [chargeback] rates are configured.\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *cf.json {
		*format = "json"
	}
	q.By = *by
	if err := q.Validate(); err != nil {
		return err
	}
	switch *format {
	case "table", "csv", "json":
	default:
		return fmt.Errorf("--format %q: use table, csv or json", *format)
	}
	src, cfg, err := cf.open()
	if err != nil {
		return err
	}
	// The file's report is priced here; a server prices its own.
	q.CPUSecondRate, q.GiBHourRate = cfg.Chargeback.CPUSecond, cfg.Chargeback.GiBHour
	defer func() { retErr = errors.Join(retErr, src.close()) }()
	groups, err := src.report(q)
	if err != nil {
		return err
	}
	if groups == nil {
		groups = []accounting.Group{}
	}
	switch *format {
	case "json":
		return printJSON(stdout, map[string]any{"by": q.By, "since": q.Since, "until": q.Until, "groups": groups})
	case "csv":
		return accounting.WriteReportCSV(stdout, q.By, groups)
	}
	if len(groups) == 0 {
		fmt.Fprintf(stdout, "no jobs in this range (%s)\n", src.describe())
		return nil
	}
	priced := q.CPUSecondRate > 0 || q.GiBHourRate > 0
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := strings.ToUpper(q.By) + "\tJOBS\tCPU-S\tMEM-PEAK\tGIB-H\tBYTES\tREASONS\t"
	if priced {
		head += "COST\t"
	}
	fmt.Fprintln(tw, head)
	for _, g := range groups {
		line := fmt.Sprintf("%s\t%d\t%.2f\t%s\t%.4f\t%s\t%s\t", dash(g.Key), g.Jobs, g.CPUSeconds, accounting.FormatBytes(g.MemoryPeakBytes),
			g.GiBHours, accounting.FormatBytes(g.Bytes), accounting.FormatReasons(g.Reasons, " "))
		if priced {
			line += fmt.Sprintf("%.2f\t", g.Cost)
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// parseWhen reads a time (RFC 3339), a date, or a duration ago.
func parseWhen(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	if d, err := tomlstrict.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q: use a time (2026-11-23T10:00:00Z), a date (2026-11-23) or a duration ago (2h, 7d)", s)
}

// whenFlag defines a flag that takes what parseWhen reads, into dst.
func whenFlag(fs *flag.FlagSet, name, usage string, dst *time.Time) {
	fs.Func(name, usage, func(s string) (err error) {
		*dst, err = parseWhen(s)
		return err
	})
}

// reorder puts flags before the positional JOBID, so "job JOB1 --json"
// works as well as "job --json JOB1". A flag of fs that is not boolean
// takes the next argument as its value.
func reorder(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-"):
			flags = append(flags, a)
			if !strings.Contains(a, "=") && takesValue(fs, strings.TrimLeft(a, "-")) && i+1 < len(args) {
				i++
				flags = append(flags, args[i])
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}

// takesValue reports whether fs has a flag name that is not boolean.
func takesValue(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// quoteArgv shows argv on one line: arguments with spaces or control
// characters are Go-quoted.
func quoteArgv(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' }) {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fmtElapsed(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%.3fs", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	}
	return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
}
