package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"boxoffice/payments"
)

// paymentsSim runs the payment simulator as its own process behind a Stripe-compatible HTTP API,
// so that `serve --payments http://…` is tested end to end, over a real network hop that can fail.
func paymentsSim(args []string, _, stderr io.Writer) error {
	var (
		addr, ledger string
		faults       payments.Faults
		slowDelay    time.Duration
	)
	fs := flag.NewFlagSet("boxoffice payments-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&addr, "addr", "127.0.0.1:8090", "address to listen on (port 0 picks a free one)")
	fs.StringVar(&ledger, "ledger", "./payments-sim-ledger.jsonl", "file the simulator records every charge and refund in, so that it survives a restart")
	fs.DurationVar(&faults.Latency, "latency", 0, "delay before handling every POST")
	fs.Float64Var(&faults.ErrorRate, "error-rate", 0, "share of a key's first attempts answered 500 before anything is done (0..1)")
	fs.Float64Var(&faults.ResetRate, "reset-rate", 0, "share of a key's first attempts whose connection is reset before anything is done (0..1)")
	fs.Float64Var(&faults.DropRate, "drop-rate", 0, "share of a key's first attempts carried out and then left without an answer (0..1)")
	fs.DurationVar(&slowDelay, "slow-delay", 5*time.Second, "how long a tok_slow charge takes to settle")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := checkRates(faults); err != nil {
		fmt.Fprintln(stderr, err)
		return errUsage
	}
	if faults.Latency < 0 || slowDelay <= 0 {
		fmt.Fprintln(stderr, "--latency must not be negative and --slow-delay must be positive")
		return errUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	faults.Logger = log

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	// One simulator per ledger: a second one appending to the same file would write charges the
	// first does not know about, and the next replay would refuse the file.
	unlock, err := lockFile(ledger + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	sim, err := payments.NewSim(payments.SimOptions{LedgerPath: ledger, SlowDelay: slowDelay})
	if err != nil {
		return err
	}
	defer sim.Close()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           payments.NewServer(sim, faults),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("payments simulator serving", "url", "http://"+ln.Addr().String(), "ledger", ledger,
		"latency", faults.Latency, "error_rate", faults.ErrorRate, "reset_rate", faults.ResetRate,
		"drop_rate", faults.DropRate, "slow_delay", slowDelay)
	// Requests in flight finish first (a tok_slow charge may take --slow-delay), so that every
	// charge made is answered; pending charges left over settle when the ledger is opened again.
	if err := serveUntilDone(ctx, srv, ln, log); err != nil {
		return err
	}
	if err := sim.Close(); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// checkRates rejects fault rates that are not probabilities of disjoint outcomes.
func checkRates(f payments.Faults) error {
	for _, r := range []float64{f.ErrorRate, f.ResetRate, f.DropRate} {
		if r < 0 || r > 1 {
			return fmt.Errorf("--error-rate, --reset-rate and --drop-rate must be between 0 and 1")
		}
	}
	if f.ErrorRate+f.ResetRate+f.DropRate > 1 {
		return fmt.Errorf("--error-rate + --reset-rate + --drop-rate must not exceed 1: they share one draw per attempt")
	}
	return nil
}

// lockFile takes an exclusive lock on path (created if need be) for the life of the process;
// the kernel lets go of it when the process dies, so a kill -9 leaves no stale lock behind.
func lockFile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	fh, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(fh.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fh.Close()
		return nil, fmt.Errorf("%s is locked: another payments-sim uses the same ledger", path)
	}
	return func() { fh.Close() }, nil
}
