// Command boxoffice sells limited inventory to a crowd that clicks at once, and never oversells,
// never charges twice, never sends twice. Run "boxoffice help" for the subcommands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

const usage = `boxoffice — sell the last ticket exactly once.

Usage:
  boxoffice serve  [flags]   run the server (embedded default: SQLite under --data-dir, no setup)
  boxoffice verify [flags]   audit a store against the guarantees; exits 1 naming each violation
  boxoffice bench  [flags]   the on-sale stampede against a server it starts (or --url), then verify
  boxoffice payments-sim [flags]  the payment simulator behind a Stripe-compatible HTTP API, with faults
  boxoffice dlq list|replay <id>|replay --all  the dead-letter queue of a running server
  boxoffice help             show this text

Every flag also reads BOXOFFICE_<FLAG_IN_UPPER_SNAKE>, e.g. BOXOFFICE_DATA_DIR for --data-dir.
Run "boxoffice <command> -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes a subcommand and returns the process exit code: 0 ok, 1 failure, 2 bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(args[1:], stdout, stderr)
	case "verify":
		err = verify(args[1:], stdout, stderr)
	case "bench":
		err = benchCmd(args[1:], stdout, stderr)
	case "payments-sim":
		err = paymentsSim(args[1:], stdout, stderr)
	case "dlq":
		err = dlqCmd(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "boxoffice: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errViolations):
		return 1
	default:
		fmt.Fprintf(stderr, "boxoffice %s: %v\n", args[0], err)
		return 1
	}
}

var (
	errUsage      = errors.New("bad usage")
	errViolations = errors.New("guarantees violated")
)

// parseFlags parses args, then fills every flag not given on the command line from its
// BOXOFFICE_<NAME> environment variable, so containers and systemd units can configure by env.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return errUsage
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var bad error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || bad != nil {
			return
		}
		env := envName(f.Name)
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				fmt.Fprintf(fs.Output(), "invalid value %q for %s: %v\n", v, env, err)
				bad = errUsage
			}
		}
	})
	return bad
}

// envName is the environment variable of a flag: --data-dir → BOXOFFICE_DATA_DIR.
func envName(flagName string) string {
	return "BOXOFFICE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}
