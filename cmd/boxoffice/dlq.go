package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"boxoffice"
)

const dlqUsage = `Usage:
  boxoffice dlq list   [flags]          list the dead letters, oldest first
  boxoffice dlq replay [flags] <id>     apply one dead letter again; it leaves the queue on success
  boxoffice dlq replay [flags] --all    apply every dead letter again, oldest first

A dead letter is an event a consumer (email, a webhook endpoint) failed to apply past its retry
limit. The command talks to a running server's admin API (/v1/dead-letters), so it works for the
embedded event bus as for an external NATS cluster.

Flags:
`

// dlqFlags are the flags of both dlq subcommands.
type dlqFlags struct {
	url, adminKey, dataDir string
	all, jsonOut           bool
	timeout                time.Duration
}

func dlqCmd(args []string, stdout, stderr io.Writer) error {
	var f dlqFlags
	fs := flag.NewFlagSet("boxoffice dlq", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, dlqUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&f.url, "url", "http://127.0.0.1:8080", "the server's base URL")
	fs.StringVar(&f.adminKey, "admin-key", "", "admin key (default: read from <data-dir>/admin.key)")
	fs.StringVar(&f.dataDir, "data-dir", "./boxoffice-data", "where to find admin.key when --admin-key is not given")
	fs.BoolVar(&f.all, "all", false, "replay: every dead letter")
	fs.BoolVar(&f.jsonOut, "json", false, "list: print the dead letters as JSON, payloads included")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Minute, "longest the command waits for the server")
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fs.Usage()
			return flag.ErrHelp
		}
		fs.Usage()
		return errUsage
	}
	sub := args[0]
	// Flags may come before or after the id, so parse what follows it as well.
	var ids []string
	rest := args[1:]
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return errUsage
		}
		if fs.NArg() == 0 {
			break
		}
		ids = append(ids, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	// Now the environment fills the flags the command line left unset.
	if err := parseFlags(fs, nil); err != nil {
		return err
	}
	key, err := f.key()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	c := &adminClient{base: strings.TrimRight(f.url, "/"), key: key}
	switch {
	case sub == "list" && len(ids) == 0:
		return dlqList(ctx, c, f.jsonOut, stdout)
	case sub == "replay" && f.all && len(ids) == 0:
		var out struct{ Replayed int }
		if err := c.do(ctx, http.MethodPost, "/v1/dead-letters/replay", &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "replayed %d dead letter(s)\n", out.Replayed)
		return nil
	case sub == "replay" && !f.all && len(ids) == 1:
		if err := c.do(ctx, http.MethodPost, "/v1/dead-letters/"+ids[0]+"/replay", nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "replayed dead letter %s\n", ids[0])
		return nil
	default:
		fmt.Fprintln(stderr, `want "dlq list", "dlq replay <id>" or "dlq replay --all"`)
		return errUsage
	}
}

// key is --admin-key, or the key the server generated into the data dir.
func (f *dlqFlags) key() (string, error) {
	if f.adminKey != "" {
		return f.adminKey, nil
	}
	b, err := os.ReadFile(filepath.Join(f.dataDir, "admin.key"))
	if err != nil {
		return "", fmt.Errorf("no --admin-key and no admin key file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func dlqList(ctx context.Context, c *adminClient, jsonOut bool, stdout io.Writer) error {
	var page struct {
		Data []boxoffice.DeadLetter `json:"data"`
	}
	if err := c.do(ctx, http.MethodGet, "/v1/dead-letters", &page); err != nil {
		return err
	}
	if jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(page.Data)
	}
	if len(page.Data) == 0 {
		fmt.Fprintln(stdout, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCONSUMER\tEVENT\tTYPE\tATTEMPTS\tFAILED AT\tERROR")
	for _, d := range page.Data {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Consumer, d.EventID, d.EventType, d.Attempts,
			d.FailedAt.UTC().Format(time.RFC3339), oneLine(d.Error, 120))
	}
	return tw.Flush()
}

// oneLine keeps an error message on one table row.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-1] + "…"
	}
	return s
}

// adminClient calls a server's admin API.
type adminClient struct {
	base, key string
}

// do sends a request with a fresh Idempotency-Key (a POST here is a one-off command) and decodes
// a 2xx body into out, or returns the problem's detail.
func (c *adminClient) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	if method == http.MethodPost {
		req.Header.Set("Idempotency-Key", "dlq-"+boxoffice.RandomString(24))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var p struct{ Detail, Code string }
		if json.Unmarshal(body, &p) == nil && p.Code != "" {
			return fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, p.Code, p.Detail)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(body))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(body, out)
}
