package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/jackc/pgx/v5"

	"boxoffice/bench"
	"boxoffice/inventory"
)

// modeText says what each --mode does, for the report's setup line.
var modeText = map[string]string{bench.ModePurchase: "one-shot", bench.ModeHoldConfirm: "hold, then confirm"}

// redisArgs passes --redis to a server that runs the redis-lock strategy.
func redisArgs(strategy, redisURL string) []string {
	if strategy == "redis-lock" && redisURL != "" {
		return []string{"--redis", redisURL}
	}
	return nil
}

// compare runs the same stampede against every strategy on every store, measures the two
// baselines in the same run, and writes the table and the chart.
func compare(ctx context.Context, f benchFlags, stdout, stderr io.Writer) error {
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return err
	}
	cfg := bench.Config{Buyers: f.buyers, Requests: f.requests, Duration: f.duration, Shows: f.shows,
		Capacity: f.capacity, Mode: f.mode, RetryRate: f.retryRate, Timeout: f.timeout, Progress: stderr}
	rep := &bench.Report{
		Title: "boxoffice bench --compare",
		Setup: fmt.Sprintf("%d purchases (%s) by %d keep-alive buyers on %d show(s), %.0f%% retried with the same key after a %v client timeout; durable commits; %d CPUs, %s.",
			f.requests, modeText[f.mode], f.buyers, f.shows, f.retryRate*100, f.timeout, runtime.NumCPU(), runtime.Version()),
		Default:     inventory.Default + " on sqlite",
		DefaultPG:   inventory.Default + " on postgres",
		ManyShowsPG: fmt.Sprintf("%s on postgres, %d shows", inventory.Default, bench.ManyShows),
		SoldOut:     fmt.Sprintf("%s on sqlite, sold out (%d tickets)", inventory.Default, soldOutCapacity(f.requests)),
	}

	fmt.Fprintln(stderr, "bench: no-op net/http handler (the transport limit)")
	noopURL, stopNoop, err := bench.StartNoop()
	if err != nil {
		return err
	}
	noopCfg := cfg
	noopCfg.URL, noopCfg.Mode = noopURL, bench.ModeNoop
	rep.Noop, err = bench.Run(ctx, noopCfg)
	stopNoop()
	if err != nil {
		return fmt.Errorf("no-op baseline: %w", err)
	}
	rep.Noop.Name = "no-op net/http handler (baseline)"

	// A database that cannot be dropped after its row is reported, and the comparison goes on:
	// the next run's createDatabase drops it anyway.
	dropAfter := func(base, name string) {
		if err := dropDatabase(ctx, base, name); err != nil {
			fmt.Fprintln(stderr, "bench:", err)
		}
	}
	stores := []string{"sqlite"}
	if f.pg != "" {
		stores = append(stores, "postgres")
	} else {
		rep.Failures = append(rep.Failures, "the postgres rows and the FOR UPDATE baseline: no --pg server given")
	}
	// Every row's data dir is removed when the comparison ends, not when the row does. A row's
	// receipts are tens of thousands of files, and ext4 then spends minutes of allocations
	// stepping over their recently freed inodes (find_inode_bit → recently_deleted in perf): the
	// next row's receipts cost 2–4× the CPU, which measured the last row's cleanup, not the server,
	// and penalised every row but the first by a different amount.
	var leftovers []string
	removeLater := func(dir string) { leftovers = append(leftovers, dir) }
	defer func() {
		for _, dir := range leftovers {
			_ = os.RemoveAll(dir)
		}
	}()
	// measure runs one row: strategy on store, with cfg changed by tweak.
	measure := func(store, strategy, row string, tweak func(*bench.Config)) error {
		if strategy == "redis-lock" && f.redis == "" {
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s: no --redis server given", row))
			return nil
		}
		db := "sqlite"
		if store == "postgres" {
			name := "bench_" + strings.NewReplacer("-", "_", " ", "_", ",", "", "(", "", ")", "").Replace(row)
			var err error
			if db, err = createDatabase(ctx, f.pg, name); err != nil {
				return err
			}
			defer dropAfter(f.pg, name)
		}
		fmt.Fprintln(stderr, "bench:", row)
		c := cfg
		if tweak != nil {
			tweak(&c)
		}
		res, err := runRow(ctx, c, strategy, db, f, stderr, removeLater)
		if err != nil {
			rep.Failures = append(rep.Failures, fmt.Sprintf("%s: %v", row, err))
			return nil
		}
		res.Name = row
		rep.Rows = append(rep.Rows, res)
		return nil
	}
	// Rows that a target compares run next to each other: the default on one show, on many
	// shows and (SQLite) sold out, and on PostgreSQL the FOR UPDATE baseline right before them.
	// A shared machine drifts over a comparison's minutes, and rows far apart had differed by
	// more than the targets' margins (16 shows "slower" than one by 4–14% in half of the runs,
	// with the one-show row six rows earlier).
	manyShows := func(c *bench.Config) { c.Shows = bench.ManyShows }
	for _, store := range stores {
		if store == "postgres" {
			db, err := createDatabase(ctx, f.pg, "bench_forupdate")
			if err != nil {
				return err
			}
			fmt.Fprintln(stderr, "bench: raw PostgreSQL SELECT … FOR UPDATE on one row (baseline)")
			rep.PGLock, err = bench.RunPGForUpdate(ctx, db, f.buyers, f.requests, f.duration)
			dropAfter(f.pg, "bench_forupdate")
			if err != nil {
				return fmt.Errorf("FOR UPDATE baseline: %w", err)
			}
		}
		if err := measure(store, inventory.Default, inventory.Default+" on "+store, nil); err != nil {
			return err
		}
		// The default over many shows (is anything but the hot row serialising?) and in a
		// sold-out stampede, where nearly every answer is a refusal.
		if err := measure(store, inventory.Default, fmt.Sprintf("%s on %s, %d shows", inventory.Default, store, bench.ManyShows), manyShows); err != nil {
			return err
		}
		if store == "sqlite" {
			if err := measure("sqlite", inventory.Default, rep.SoldOut, func(c *bench.Config) {
				c.Shows, c.Capacity = 1, soldOutCapacity(c.Requests)
			}); err != nil {
				return err
			}
		}
		for _, name := range strings.Split(f.strategies, ",") {
			if name = strings.TrimSpace(name); name == inventory.Default {
				continue
			}
			if err := measure(store, name, name+" on "+store, nil); err != nil {
				return err
			}
		}
	}

	var md strings.Builder
	rep.Markdown(&md)
	if err := os.WriteFile(filepath.Join(f.out, "report.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	svg, err := os.Create(filepath.Join(f.out, "chart.svg"))
	if err != nil {
		return err
	}
	rep.SVG(svg)
	if err := svg.Close(); err != nil {
		return err
	}
	fmt.Fprint(stdout, md.String())
	fmt.Fprintf(stdout, "\nwritten: %s, %s\n", filepath.Join(f.out, "report.md"), filepath.Join(f.out, "chart.svg"))
	for _, r := range rep.Rows {
		if r.Verify != "ok" {
			return errViolations
		}
	}
	return nil
}

// soldOutCapacity is the sold-out row's capacity: a twentieth of the requests, so that 95% of
// the answers are refusals.
func soldOutCapacity(requests int) int { return max(1, requests/20) }

// runRow measures one strategy on one store with a server of its own, whose data dir it hands to
// removeLater.
func runRow(ctx context.Context, cfg bench.Config, strategy, db string, f benchFlags, stderr io.Writer, removeLater func(dir string)) (*bench.Result, error) {
	srv, err := startOwnServer(ctx, strategy, db, f.keep, stderr, redisArgs(strategy, f.redis)...)
	if err != nil {
		return nil, err
	}
	srv.removeLater = removeLater
	defer srv.cleanup()
	cfg.URL, cfg.AdminKey = srv.url, srv.adminKey
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res.PeakRSS = srv.peakRSS()
	res.Verify = srv.finish(ctx)
	return res, nil
}

// dropDatabase drops the database name on the server of base, if it is there. The comparison
// drops each row's database once the row is measured: left in place, the rows' databases had
// PostgreSQL's autovacuum working through each one's fresh rows while the next rows ran, on the
// same two cores.
func dropDatabase(ctx context.Context, base, name string) error {
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return fmt.Errorf("--pg: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("--pg: drop %s: %w", name, err)
	}
	return nil
}

// createDatabase makes a fresh database on the server of base (dropping one of that name left by
// an earlier run) and returns its URL.
func createDatabase(ctx context.Context, base, name string) (string, error) {
	if err := dropDatabase(ctx, base, name); err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		return "", fmt.Errorf("--pg: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("--pg: create %s: %w", name, err)
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	u.Path = "/" + name
	return u.String(), nil
}
