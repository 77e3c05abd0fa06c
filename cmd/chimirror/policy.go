package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chimirror/chimirror/internal/cli"
	"github.com/chimirror/chimirror/policies"
	"github.com/chimirror/chimirror/tomlstrict"
)

const policyUsage = `Usage:
  chimirror policy check [FILE...]
      Validates policy files: every key, the paths a view binds (absolute,
      present here), and the seccomp profile (compiled for this host).
      Prints "FILE: ok (replay_bytes SIZE, detach_timeout D)" for each
      valid one (D "-": losing the client ends a job) and exits 0 when all are;
      otherwise prints every problem to stderr as FILE:LINE: KEY: message
      and exits 1. With no FILE, checks the built-in policies.
  chimirror policy check --config FILE
      Validates a server config as serve would load it, its policies
      included, and that each app's program and dir are inside the view of
      every policy it may run under.
  chimirror policy list [--dir DIR | --config FILE]
      Lists the policies in force, the built-ins plus DIR's *.toml files (a
      file there replaces the built-in of the same name), with their main
      limits. "-" is no limit. Without --dir, DIR is the config's
      policy_dir (--config FILE, else ./chimirror.toml if present).
`

// cmdPolicy runs `chimirror policy SUBCOMMAND`.
func cmdPolicy(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return cli.ExitCode(2)
	}
	switch args[0] {
	case "check":
		return cmdPolicyCheck(args[1:], stdout, stderr)
	case "list":
		return cmdPolicyList(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, policyUsage)
		return nil
	}
	fmt.Fprintf(stderr, "chimirror policy: unknown command %q\n\n%s", args[0], policyUsage)
	return cli.ExitCode(2)
}

// cmdPolicyCheck parses each file on its own, as `chimirror policy check`.
// It returns cli.ExitCode(1) once it has printed problems.
func cmdPolicyCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, policyUsage) }
	config := fs.String("config", "", "a server config to check, its policies and apps included")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *config != "" {
		if fs.NArg() > 0 {
			fmt.Fprintf(stderr, "chimirror policy check: --config takes no FILE arguments\n\n%s", policyUsage)
			return cli.ExitCode(2)
		}
		return checkConfig(*config, stdout, stderr)
	}
	if fs.NArg() == 0 {
		set, err := policies.Load("")
		if err != nil {
			return printProblems(stderr, err)
		}
		for _, name := range set.Names() {
			p, _ := set.Get(name)
			fmt.Fprintf(stdout, "%s: ok%s\n", p.Source, policySummary(p))
		}
		return nil
	}
	var all tomlstrict.Problems
	for _, file := range fs.Args() {
		data, err := os.ReadFile(file)
		if err != nil {
			all = append(all, tomlstrict.Problem{File: file, Msg: err.Error()})
			continue
		}
		p, ps := policies.Parse(file, data)
		if len(ps) > 0 {
			all = append(all, ps...)
			continue
		}
		if ps := seccompProblems([]*policies.Policy{p}); len(ps) > 0 {
			all = append(all, ps...)
			continue
		}
		fmt.Fprintf(stdout, "%s: ok%s\n", file, policySummary(p))
	}
	if len(all) > 0 {
		return printProblems(stderr, all)
	}
	return nil
}

// policySummary is what policy check shows of a valid policy: how its
// jobs' output is kept for a client that reattaches.
func policySummary(p *policies.Policy) string {
	return fmt.Sprintf(" (replay_bytes %s, detach_timeout %s)", listSize(p.ReplayBytes), listDuration(p.DetachTimeout))
}

// checkConfig validates the server config at path ("" for what serve
// would read) as serve would load it, its policies included, and what
// sandboxed jobs need on this host. It prints "NAME: ok", or every problem
// and returns cli.ExitCode(1).
func checkConfig(path string, stdout, stderr io.Writer) error {
	c, err := loadConfig(path)
	if err != nil {
		return printProblems(stderr, err)
	}
	// As the server would find them sandboxing jobs, whoever checks
	// (parseConfig has, if it found that jobs will be sandboxed here).
	if c.Sandbox != "off" && !c.jobsChecked {
		if ps := c.jobProblems(); len(ps) > 0 {
			return printProblems(stderr, ps)
		}
	}
	fmt.Fprintf(stdout, "%s: ok\n", c.Source)
	return nil
}

const configUsage = `Usage:
  chimirror config check [FILE]
      Validates a server config as serve would load it: every key, its
      policies, each app's program and dir, and what sandboxed jobs need on
      this host. Prints "FILE: ok" and exits 0, or prints every problem to
      stderr as FILE:LINE: KEY: message and exits 1. With no FILE, checks
      what serve would read: ./chimirror.toml, else the embedded default.
`

// cmdConfig runs `chimirror config SUBCOMMAND`.
func cmdConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, configUsage)
		return cli.ExitCode(2)
	}
	switch args[0] {
	case "check":
		fs := flag.NewFlagSet("config check", flag.ContinueOnError)
		fs.SetOutput(stderr)
		fs.Usage = func() { fmt.Fprint(stderr, configUsage) }
		if err := cli.ParseFlags(fs, args[1:]); err != nil {
			return err
		}
		if fs.NArg() > 1 {
			fmt.Fprintf(stderr, "chimirror config check: one FILE at most\n\n%s", configUsage)
			return cli.ExitCode(2)
		}
		return checkConfig(fs.Arg(0), stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, configUsage)
		return nil
	}
	fmt.Fprintf(stderr, "chimirror config: unknown command %q\n\n%s", args[0], configUsage)
	return cli.ExitCode(2)
}

// printProblems prints a tomlstrict.Problems one problem a line, or any other
// error as chimirror prints errors, and returns cli.ExitCode(1).
func printProblems(stderr io.Writer, err error) error {
	var ps tomlstrict.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			fmt.Fprintln(stderr, p)
		}
	} else {
		fmt.Fprintln(stderr, "chimirror:", err)
	}
	return cli.ExitCode(1)
}

// cmdPolicyList prints the policies Load finds as a table.
func cmdPolicyList(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("policy list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "operator policy directory: its *.toml files are added to the built-ins (default: the config's policy_dir)")
	cfgPath := fs.String("config", "", "config file whose policy_dir to list (default ./chimirror.toml if present)")
	fs.Usage = func() {
		fmt.Fprint(stderr, policyUsage+"\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chimirror policy list: unexpected argument %q\n\n%s", fs.Arg(0), policyUsage)
		return cli.ExitCode(2)
	}
	if *dir != "" && *cfgPath != "" {
		fmt.Fprintf(stderr, "chimirror policy list: --dir and --config: give one\n")
		return cli.ExitCode(2)
	}
	if *dir == "" {
		// The server's view of the policies: its config's policy_dir.
		cfg, err := loadConfig(*cfgPath)
		if err != nil {
			return printProblems(stderr, err)
		}
		*dir = cfg.policyDir
	}
	set, err := policies.Load(*dir)
	if err != nil {
		return printProblems(stderr, err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCPU\tMEMORY\tPIDS\tWALL\tCPU-TIME\tIDLE\tOUTPUT\tTMP\tNETWORK\tUSER\tSECCOMP\tSOURCE")
	for _, name := range set.Names() {
		p, _ := set.Get(name)
		cpu := "-"
		if p.CPU > 0 {
			cpu = strconv.FormatFloat(p.CPU, 'g', -1, 64)
		}
		pids := "-"
		if p.PidsMax > 0 {
			pids = strconv.FormatInt(p.PidsMax, 10)
		}
		network := "no"
		if p.Network {
			network = "yes"
		}
		user := p.User + ":" + p.Group
		if p.DynamicUser {
			user = policies.DynamicUser
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, cpu, listSize(p.MemoryMaxBytes), pids,
			listDuration(p.WallTime), listDuration(p.CPUTime), listDuration(p.IdleTimeout),
			listSize(p.MaxOutputBytes), listSize(p.TmpSizeBytes), network, user, p.Seccomp, p.Source)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("policy list: %w", err)
	}
	return nil
}

// listSize shows a byte limit, "-" for none.
func listSize(n int64) string {
	if n == 0 {
		return "-"
	}
	return policies.FormatSize(n)
}

// listDuration shows a time limit without trailing zero units ("1h", not
// "1h0m0s"), "-" for none.
func listDuration(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
