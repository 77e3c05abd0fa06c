package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/chimirror/chimirror/accounting"
	"github.com/chimirror/chimirror/internal/adminapi"
	"github.com/chimirror/chimirror/internal/cli"
	"github.com/chimirror/chimirror/supervisor/spool"
)

// outputNoStatus is output --follow's exit code when the job has no exit
// status to return (lost with its server, or its spool failed); like
// connect's.
const outputNoStatus = cli.ExitCode(255)

// cmdSubmit submits a batch job, as sbatch does: stdin is the job's stdin,
// and the job's ID is printed.
func cmdSubmit(args []string, stdin io.Reader, stdout, stderr io.Writer) (retErr error) {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", "", "config file: says where the server listens (default ./chimirror.toml if present, else the embedded default)")
	server := fs.String("server", "", "the server's URL, http://HOST:PORT[/base] (default: listen and base_path from the config)")
	token := fs.String("token", "", "tenant token (default $CHIMIRROR_TOKEN); none for a server without tenants")
	caFile := fs.String("ca", "", "for https://: a PEM bundle of CA certificates (or the server's own) to trust besides the system's")
	open := fs.Bool("stdin-open", false, "leave the job's stdin open after the input (default: it reads EOF at its end)")
	asJSON := fs.Bool("json", false, "print the server's whole answer (JSON) instead of the job ID")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: chimirror submit [--server URL] [--token T] [--stdin-open] [--json] APP < INPUT\n\n"+
			"Submits a batch job of APP (an app or policy with mode = \"batch\") with INPUT as its stdin, and prints its\n"+
			"job ID. Read its output with chimirror output JOBID.\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, reorder(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return cli.ExitCode(2)
	}
	base := *server
	if base == "" {
		cfg, err := loadConfig(*config)
		if err != nil {
			return fmt.Errorf("invalid configuration:\n%w", err)
		}
		scheme := "http"
		if cfg.Web.Edge.TLS != nil {
			scheme = "https"
		}
		base = scheme + "://" + cfg.Listen + cfg.Web.Edge.BasePath
	}
	if *token == "" {
		*token = os.Getenv("CHIMIRROR_TOKEN")
	}
	client := &http.Client{}
	if *caFile != "" {
		tc, err := clientTLS(*caFile)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tc
		client.Transport = tr
	}
	u := strings.TrimRight(base, "/") + "/apps/" + url.PathEscape(fs.Arg(0)) + "/jobs"
	if *open {
		u += "?stdin=open"
	}
	req, err := http.NewRequest(http.MethodPost, u, io.NopCloser(stdin))
	if err != nil {
		return err
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	defer func() { retErr = errors.Join(retErr, resp.Body.Close()) }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		msg := strings.TrimSpace(string(body))
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			msg += " (retry after " + ra + "s)"
		}
		return fmt.Errorf("submit: %s (HTTP %d)", msg, resp.StatusCode)
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	var ans struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(body, &ans); err != nil || ans.ID == "" {
		return fmt.Errorf("submit: the server's answer names no job: %q", body)
	}
	_, err = fmt.Fprintln(stdout, ans.ID)
	return err
}

// cmdOutput prints a job's spooled output: from a running server's admin
// API, or, when none runs, from the data dir's spool file. With --follow
// it waits for the rest until the job ends, then exits with the job's
// status (its exit code, 128+signal if a signal ended it; 255 when there
// is none: lost with its server).
func cmdOutput(args []string, stdout, stderr io.Writer) (retErr error) {
	fs := flag.NewFlagSet("output", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addClientFlags(fs)
	stream := fs.String("stream", "all", "stdout, stderr, or all (both, in the order the job wrote them)")
	follow := fs.Bool("follow", false, "keep printing until the job ends, then exit with its exit code (255: lost)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: chimirror output JOBID [--stream stdout|stderr|all] [--follow]\n\n"+
			"Prints a job's spooled output (batch jobs, and those of a policy with spool = true) to stdout, byte-exact.\n\n")
		fs.PrintDefaults()
	}
	id, err := parseJobID(fs, args)
	if err != nil {
		return err
	}
	sel, err := spool.ParseSelect(*stream)
	if err != nil {
		return err
	}
	src, cfg, err := cf.open()
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, src.close()) }()
	var exit *spool.Exit
	switch s := src.(type) {
	case *apiSource:
		exit, err = outputFromAPI(s.api, id, *stream, *follow, stdout)
	default: // no server: the job cannot be running
		exit, err = outputFromFile(spoolDir(cfg.DataDir), id, sel, stdout)
	}
	if err != nil || !*follow {
		return err
	}
	if exit == nil {
		raw, err := src.get(id)
		if err != nil {
			return err
		}
		var rec accounting.Record
		if err := json.Unmarshal(raw, &rec); err != nil {
			return err
		}
		if rec.ExitCode == nil {
			fmt.Fprintf(stderr, "chimirror output: %s is %s with no exit status (%s)\n", id, rec.State, rec.Detail)
			return outputNoStatus
		}
		exit = &spool.Exit{Code: *rec.ExitCode}
	}
	if exit.Code != 0 {
		return cli.ExitCode(exit.Code)
	}
	return nil
}

// outputFromAPI copies the job's output from the admin API to w; with
// follow, until the job ends. It returns the job's exit if the spool said.
func outputFromAPI(api *adminapi.Client, id, stream string, follow bool, w io.Writer) (_ *spool.Exit, retErr error) {
	q := url.Values{"stream": {stream}}
	if follow {
		q.Set("follow", "1")
	}
	body, err := api.Open("/jobs/" + url.PathEscape(id) + "/output?" + q.Encode())
	if err != nil {
		return nil, tokenHintOn(err)
	}
	defer func() { retErr = errors.Join(retErr, body.Close()) }()
	if _, err := io.Copy(w, body); err != nil {
		return nil, fmt.Errorf("output of %s: %w", id, err)
	}
	return nil, nil // the API's answer ends at the job's end; the record has its status
}

// outputFromFile copies the selected streams of the job's spool file to w.
func outputFromFile(dir, id string, sel spool.Select, w io.Writer) (_ *spool.Exit, retErr error) {
	sf, err := spool.Open(spool.Path(dir, id))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s has no spool in %s (not spooled, or pruned)", id, dir)
	}
	if err != nil {
		return nil, err
	}
	defer func() { retErr = errors.Join(retErr, sf.Close()) }()
	t := sf.Tail(sel)
	if _, err := t.Read(w); err != nil {
		return nil, fmt.Errorf("output of %s: %w", id, err)
	}
	return t.Exit(), nil
}
