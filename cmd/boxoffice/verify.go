package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"boxoffice/payments"
	"boxoffice/sale"
)

func verify(args []string, stdout, stderr io.Writer) error {
	var f storeFlags
	fs := flag.NewFlagSet("boxoffice verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.db == "sqlite" {
		if _, err := os.Stat(f.dbPath()); err != nil {
			return fmt.Errorf("no store at %s: %w", f.dbPath(), err)
		}
	}
	bad, where, ledger, err := audit(context.Background(), f)
	if err != nil {
		return err
	}
	for _, b := range bad {
		fmt.Fprintln(stdout, "VIOLATION:", b)
	}
	if len(bad) > 0 {
		fmt.Fprintf(stdout, "verify %s: %d violation(s)\n", where, len(bad))
		return errViolations
	}
	ledgerNote := "without a payment ledger"
	if ledger != nil {
		ledgerNote = fmt.Sprintf("against %d ledger entries", len(ledger))
	}
	fmt.Fprintf(stdout, "verify %s: ok — counts match holds and orders, nothing oversold, no key with two effects (%s)\n", where, ledgerNote)
	return nil
}

// audit checks the store the flags name, with the simulator's ledger when there is one, and
// returns the violations, where the store is, and the ledger it used.
func audit(ctx context.Context, f storeFlags) ([]string, string, []sale.LedgerCharge, error) {
	store, where, err := f.open(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	defer store.Close()
	var ledger []sale.LedgerCharge
	charges, err := payments.LoadLedger(f.ledgerPath())
	switch {
	case errors.Is(err, os.ErrNotExist):
		ledger = nil // no simulator ledger: nothing to hold the orders against
	case err != nil:
		return nil, where, nil, fmt.Errorf("read payment ledger: %w", err)
	default:
		ledger = []sale.LedgerCharge{}
		for _, c := range charges {
			ledger = append(ledger, sale.LedgerCharge{Key: c.Key, ChargeID: c.ID, Succeeded: c.Status == "succeeded", Refunded: c.Refunded})
		}
	}
	bad, err := sale.Verify(ctx, store, ledger)
	return bad, where, ledger, err
}
