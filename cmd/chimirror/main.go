// Command chimirror turns any stdio program into a WebSocket service: every
// connection is a job with its own process, supervised and accounted for.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/chimirror/chimirror/internal/cli"
	"github.com/chimirror/chimirror/sandbox"
)

// version is set with -ldflags "-X main.version=…" by release builds.
var version = "0.1.0-dev"

const usage = `chimirror: every WebSocket connection is a supervised job.

Usage:
  chimirror serve [--config FILE] [--listen ADDR] [-- COMMAND [ARG...]]
  chimirror connect [--origin URL] [--header 'K: V']... URL
  chimirror attach [--server URL] [--resume TOKEN] [--after SEQ] JOBID
  chimirror jobs [--running|--all] [--tenant T] [--app A] [--since T] [--json]
  chimirror job JOBID [--json]
  chimirror cancel JOBID
  chimirror submit [--server URL] [--token T] APP < INPUT
  chimirror output JOBID [--stream stdout|stderr|all] [--follow]
  chimirror acct [--since T] [--until T] [--by tenant|app|policy|day] [--format table|csv|json]
  chimirror policy check [FILE...]
  chimirror policy list [--dir DIR]
  chimirror config check [FILE]
  chimirror token [--label LABEL]
  chimirror version

Run 'chimirror COMMAND --help' for a command's flags.
`

func main() {
	// A job's init helper: dispatched before anything else runs or opens a
	// file, as runc init is.
	if sandbox.IsInit(os.Args) {
		sandbox.RunInit()
	}
	cli.Exit("chimirror", run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.ExitCode(2)
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stderr)
	case "connect":
		return cmdConnect(args[1:], stderr)
	case "attach":
		return cmdAttach(args[1:], stderr)
	case "jobs":
		return cmdJobs(args[1:], stdout, stderr)
	case "job":
		return cmdJob(args[1:], stdout, stderr)
	case "cancel":
		return cmdCancel(args[1:], stdout, stderr)
	case "submit":
		return cmdSubmit(args[1:], os.Stdin, stdout, stderr)
	case "output":
		return cmdOutput(args[1:], stdout, stderr)
	case "acct":
		return cmdAcct(args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "policy":
		return cmdPolicy(args[1:], stdout, stderr)
	case "token":
		return cmdToken(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "chimirror %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "chimirror: unknown command %q\n\n%s", args[0], usage)
	return cli.ExitCode(2)
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return version + "+" + s.Value[:12]
			}
		}
	}
	return version
}
