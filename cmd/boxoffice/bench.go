package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"boxoffice"
	"boxoffice/bench"
	"boxoffice/inventory"
	"boxoffice/sale"
)

type benchFlags struct {
	url, adminKey     string
	buyers, requests  int
	shows, capacity   int
	duration, timeout time.Duration
	mode              string
	retryRate         float64
	inventory, db     string
	allowRemote       bool
	keep              bool
	compare           bool
	out               string
	pg, redis         string
	strategies        string
	// admitRate and preShare shape --mode waiting-room.
	admitRate int
	preShare  float64
	joinRate  int
	purchases int
	// verify names the store (and payment ledger) of a --url server, to audit after the load.
	verify storeFlags
}

func benchCmd(args []string, stdout, stderr io.Writer) error {
	var f benchFlags
	fs := flag.NewFlagSet("boxoffice bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.url, "url", "", "server to load (loopback only unless --allow-remote); unset: start one.\n"+
		"A comma-separated list loads servers sharing one store: buyer i sends to server i mod n, a\n"+
		"retry of the same key after a client timeout goes to the next server in the list (one key,\n"+
		"one effect, whichever answers), as does one after a server failed to answer at all; setup\n"+
		"and the read of what was sold go to the first")
	fs.StringVar(&f.adminKey, "admin-key", "", "admin key of the --url server (the first, of a list), to create the bench shows")
	fs.IntVar(&f.buyers, "buyers", 64, "concurrent virtual buyers (keep-alive connections)")
	fs.IntVar(&f.requests, "requests", 20000, "purchases to attempt, at most")
	fs.DurationVar(&f.duration, "duration", 60*time.Second, "longest the load runs")
	fs.IntVar(&f.shows, "shows", 1, "shows to spread buyers over (1 = one hot show)")
	fs.IntVar(&f.capacity, "capacity", 0, "tickets per show (0 = as many as --requests)")
	fs.StringVar(&f.mode, "mode", bench.ModePurchase, "purchase (one-shot), hold-confirm, seats (best-available holds of 2 on a seated tier of\n"+
		"--capacity seats, a multiple of 50), waiting-room (--requests arrivals join a show's queue\n"+
		"around its on-sale, admitted at --admit-rate: joins/s against the no-op handler, and fairness),\n"+
		"or streams (--requests buyers wait on their tickets' event streams: the server's memory and CPU a stream)")
	fs.IntVar(&f.admitRate, "admit-rate", 2000, "with --mode waiting-room: the room's admit_per_second")
	fs.IntVar(&f.joinRate, "join-rate", 0, "with --mode waiting-room: send arrivals at this many a second (0: as fast as the server answers them)")
	fs.Float64Var(&f.preShare, "pre-share", 0.5, "with --mode waiting-room: the share of arrivals that join before the on-sale")
	fs.IntVar(&f.purchases, "purchases", 2000, "with --mode waiting-room: admitted buyers who then buy a ticket (16 at a time), from the on-sale on")
	fs.Float64Var(&f.retryRate, "retry-rate", 0.05, "share of purchases whose first attempt times out on the client and is retried with the same key")
	fs.DurationVar(&f.timeout, "client-timeout", time.Millisecond, "the client-side timeout of those first attempts")
	fs.StringVar(&f.inventory, "inventory", inventory.Default, "strategy of the server bench starts")
	fs.StringVar(&f.db, "db", "sqlite", "store of the server bench starts")
	fs.BoolVar(&f.allowRemote, "allow-remote", false, "allow --url servers that are not loopback addresses")
	fs.BoolVar(&f.keep, "keep", false, "keep the started server's data dir")
	fs.BoolVar(&f.compare, "compare", false, "run every strategy × store plus the baselines, and write a Markdown table and an SVG chart to --out")
	fs.StringVar(&f.out, "out", "bench-report", "directory of the --compare report")
	fs.StringVar(&f.pg, "pg", "", "a PostgreSQL server (postgres:// URL of a database bench may create databases from) for the postgres rows and the FOR UPDATE baseline of --compare")
	fs.StringVar(&f.redis, "redis", "", "a Redis URL for the redis-lock rows of --compare (and --inventory redis-lock)")
	fs.StringVar(&f.strategies, "strategies", strings.Join(inventory.Names(moreStrategies(nil)), ","), "strategies --compare runs (the default always runs, on one show, on many and sold out)")
	fs.StringVar(&f.verify.dataDir, "verify-data-dir", "", "with --url: the server's --data-dir, to run verify on its store and payment ledger after the load")
	fs.StringVar(&f.verify.db, "verify-db", "sqlite", "with --url and --verify-data-dir: the server's --db")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.verify.dataDir != "" && (f.url == "" || f.compare) {
		fmt.Fprintln(stderr, "--verify-data-dir audits a --url server; a server bench starts is verified anyway")
		return errUsage
	}
	var urls []string
	if f.url != "" {
		var err error
		if urls, err = bench.ParseURLs(f.url, f.allowRemote); err != nil {
			return err
		}
		if f.adminKey == "" {
			return fmt.Errorf("--url needs --admin-key to create the bench shows")
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if f.compare {
		return compare(ctx, f, stdout, stderr)
	}
	if f.mode == bench.ModeWaitingRoom {
		return benchWaitRoom(ctx, f, urls, stdout, stderr)
	}
	if f.mode == bench.ModeStreams {
		return benchStreams(ctx, f, urls, stdout, stderr)
	}
	cfg := bench.Config{
		AdminKey: f.adminKey, Buyers: f.buyers, Requests: f.requests, Duration: f.duration,
		Shows: f.shows, Capacity: f.capacity, Mode: f.mode, RetryRate: f.retryRate, Timeout: f.timeout,
		Progress: stderr, AllowRemote: f.allowRemote,
	}
	name := "server at " + f.url
	switch {
	case len(urls) == 1:
		cfg.URL, name = urls[0], "server at "+urls[0] // f.url, less any spaces around it
	case len(urls) > 1:
		cfg.URL, cfg.URLs = urls[0], urls
		name = fmt.Sprintf("%d servers at %s", len(urls), strings.Join(urls, ", "))
	}
	var srv *ownServer
	if f.url == "" {
		var err error
		if srv, err = startOwnServer(ctx, f.inventory, f.db, f.keep, stderr, redisArgs(f.inventory, f.redis)...); err != nil {
			return err
		}
		defer srv.cleanup()
		cfg.URL, cfg.AdminKey = srv.url, srv.adminKey
		name = fmt.Sprintf("%s on %s", f.inventory, strings.SplitN(f.db, ":", 2)[0])
	}
	fmt.Fprintf(stderr, "bench: %d purchases (%s) by %d buyers on %d show(s) against %s\n", f.requests, f.mode, f.buyers, f.shows, name)
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	res.Name = name
	if srv != nil {
		// After an interrupt the partial run is still audited: a stop mid-sale is exactly when
		// an oversell would show. A second interrupt kills the process as usual.
		stop()
		res.PeakRSS = srv.peakRSS()
		res.Verify = srv.finish(context.WithoutCancel(ctx))
	} else if f.verify.dataDir != "" {
		// The load is over and every purchase has its final answer, so the store is at rest:
		// an audit from this process sees what the server committed.
		stop()
		res.Verify = verdict(audit(context.WithoutCancel(ctx), f.verify))
	}
	printResult(stdout, res)
	if res.Verify != "" && res.Verify != "ok" {
		return errViolations
	}
	return nil
}

func printResult(w io.Writer, r *bench.Result) {
	fmt.Fprintf(w, "%s\n", r.Name)
	what := "purchases"
	if r.Mode == bench.ModeSeats {
		what = fmt.Sprintf("best-available holds of %d seats", bench.SeatsPerHold)
	}
	fmt.Fprintf(w, "  throughput  %.0f %s/s (%d in %v; %d HTTP requests, %d retries with the same key)\n",
		r.Throughput, what, r.Requests, r.Elapsed.Round(time.Millisecond), r.Attempts, r.Retries)
	fmt.Fprintf(w, "  latency     p50 %v  p99 %v  p99.9 %v (one HTTP request)\n", r.P50, r.P99, r.P999)
	var outs []string
	for _, k := range r.SortedOutcomes() {
		outs = append(outs, fmt.Sprintf("%s: %d", k, r.Outcomes[k]))
	}
	fmt.Fprintf(w, "  outcomes    %s\n", strings.Join(outs, ", "))
	if r.Mode == bench.ModeSeats {
		fmt.Fprintf(w, "  held        %d seats by the server's count; %d holds answered 201\n", r.Sold, r.Orders())
	} else {
		fmt.Fprintf(w, "  sold        %d tickets by the server's count; %d purchases answered 201\n", r.Sold, r.Orders())
		if r.SoldOutRate > 0 && r.Orders() > 0 {
			fmt.Fprintf(w, "  sold out    %.0f answers/s after the last sale (the refusals' own rate)\n", r.SoldOutRate)
		}
	}
	if len(r.Servers) > 1 {
		// Only for a cluster, so the report of one server stays as it was.
		var loads []string
		for _, s := range r.Servers {
			loads = append(loads, fmt.Sprintf("%s %d", s.URL, s.Attempts))
		}
		fmt.Fprintf(w, "  servers     %s (HTTP requests of the load)\n", strings.Join(loads, ", "))
	}
	if r.PeakRSS > 0 {
		fmt.Fprintf(w, "  server      peak RSS %.1f MB\n", float64(r.PeakRSS)/(1<<20))
	}
	if r.Verify != "" {
		fmt.Fprintf(w, "  verify      %s\n", r.Verify)
	}
}

// ownServer is a `boxoffice serve` that bench started as a child process, so what is measured is
// the real server, with its own memory and its own process.
type ownServer struct {
	cmd      *exec.Cmd
	url      string
	adminKey string
	store    storeFlags
	keep     bool
	// removeLater, when set, takes the data dir instead of cleanup removing it (runRow).
	removeLater func(dir string)
	done        chan error
	stopped     bool
}

var serveURLRE = regexp.MustCompile(`url=(http://\S+)`)

func startOwnServer(ctx context.Context, inv, db string, keep bool, stderr io.Writer, extra ...string) (*ownServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "boxoffice-bench-")
	if err != nil {
		return nil, err
	}
	s := &ownServer{adminKey: "bench-" + boxoffice.RandomString(40), store: storeFlags{dataDir: dir, db: db}, keep: keep, done: make(chan error, 1)}
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dir, "--db", db, "--inventory", inv,
		"--admin-key", s.adminKey, "--max-in-flight", "4096"}, extra...)
	s.cmd = exec.Command(exe, args...)
	// The child must not inherit the bench's BOXOFFICE_* settings: bench says what it runs.
	s.cmd.Env = cleanEnv()
	pipe, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			if m := serveURLRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urlc <- m[1]:
				default:
				}
			} else if line := sc.Text(); strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				fmt.Fprintln(stderr, "  server:", line)
			}
		}
		s.done <- s.cmd.Wait()
	}()
	select {
	case s.url = <-urlc:
		return s, nil
	case err := <-s.done:
		s.stopped = true
		return nil, fmt.Errorf("the server exited before listening: %v", err)
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, errors.New("the server did not start within 60s")
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BOXOFFICE_") {
			env = append(env, kv)
		}
	}
	return env
}

// peakRSS reads the child's high-water mark of resident memory from /proc.
func (s *ownServer) peakRSS() int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(s.cmd.Process.Pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// finish stops the server cleanly and audits its store: "ok" or the violations.
func (s *ownServer) finish(ctx context.Context) string {
	s.stop()
	return verdict(audit(ctx, s.store))
}

// verdict is an audit's outcome in a word: "ok", the violations, or why it could not run.
func verdict(bad []string, _ string, _ []sale.LedgerCharge, err error) string {
	switch {
	case err != nil:
		return "could not run: " + err.Error()
	case len(bad) > 0:
		return fmt.Sprintf("%d violation(s): %s", len(bad), strings.Join(bad, "; "))
	}
	return "ok"
}

// cleanup stops the server and removes its data dir unless it is to be kept.
func (s *ownServer) cleanup() {
	s.stop()
	if s.keep {
		fmt.Fprintln(os.Stderr, "bench: the server's data is kept in", s.store.dataDir)
		return
	}
	if s.removeLater != nil {
		s.removeLater(s.store.dataDir)
		return
	}
	_ = os.RemoveAll(s.store.dataDir)
}

// stop ends the child with SIGTERM (it drains), waits, and removes its data unless kept.
func (s *ownServer) stop() {
	if !s.stopped {
		s.stopped = true
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
}

// oneServer is the server a one-server mode loads: the --url one (urls[0]) with --admin-key, or
// one it starts (what on the store, named so), with the function that stops it.
func oneServer(ctx context.Context, f benchFlags, urls []string, what string, stderr io.Writer) (url, adminKey, name string, cleanup func(), err error) {
	if len(urls) == 1 {
		return urls[0], f.adminKey, "server at " + f.url, func() {}, nil
	}
	srv, err := startOwnServer(ctx, f.inventory, f.db, f.keep, stderr, redisArgs(f.inventory, f.redis)...)
	if err != nil {
		return "", "", "", nil, err
	}
	return srv.url, srv.adminKey, fmt.Sprintf("%s on %s", what, strings.SplitN(f.db, ":", 2)[0]), srv.cleanup, nil
}

// benchStreams is bench --mode streams: --requests buyers wait on their tickets' event streams,
// held for a third of --duration (20 s at most), against the --url server or one it starts.
func benchStreams(ctx context.Context, f benchFlags, urls []string, stdout, stderr io.Writer) error {
	if len(urls) > 1 {
		return errors.New("--mode streams loads one server")
	}
	cfg := bench.StreamsConfig{AdminKey: f.adminKey, Streams: f.requests, Hold: min(20*time.Second, f.duration/3),
		Progress: stderr, AllowRemote: f.allowRemote}
	url, key, name, cleanup, err := oneServer(ctx, f, urls, "event streams", stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	cfg.URL, cfg.AdminKey = url, key
	fmt.Fprintf(stderr, "bench: %d buyers waiting on event streams, against %s\n", f.requests, name)
	res, err := bench.RunStreams(ctx, cfg)
	if res != nil {
		res.Name = name
		bench.PrintStreams(stdout, res)
	}
	return err
}

// benchWaitRoom is bench --mode waiting-room: the no-op handler first, then the crowd against
// the --url server or one it starts.
func benchWaitRoom(ctx context.Context, f benchFlags, urls []string, stdout, stderr io.Writer) error {
	if len(urls) > 1 {
		return errors.New("--mode waiting-room loads one server")
	}
	noopURL, stopNoop, err := bench.StartNoop()
	if err != nil {
		return err
	}
	defer stopNoop()
	cfg := bench.WaitRoomConfig{AdminKey: f.adminKey, Arrivals: f.requests, PreShare: f.preShare, Buyers: f.buyers,
		Rate: f.admitRate, Wait: f.duration + time.Duration(f.requests/max(f.admitRate, 1)+30)*time.Second,
		Progress: stderr, AllowRemote: f.allowRemote, Noop: noopURL, Purchases: f.purchases, Purchasers: 16, JoinRate: f.joinRate}
	url, key, name, cleanup, err := oneServer(ctx, f, urls, "waiting room", stderr)
	if err != nil {
		return err
	}
	defer cleanup()
	cfg.URL, cfg.AdminKey = url, key
	fmt.Fprintf(stderr, "bench: %d arrivals (%.0f%% before the on-sale) by %d buyers at a time, admitted at %d/s, against %s\n",
		f.requests, 100*f.preShare, f.buyers, f.admitRate, name)
	res, err := bench.RunWaitRoom(ctx, cfg)
	if res != nil {
		res.Name = name
		bench.PrintWaitRoom(stdout, res)
	}
	return err
}
