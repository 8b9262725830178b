package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"boxoffice/bench"
	"boxoffice/payments"
	"boxoffice/sale"
)

func verify(args []string, stdout, stderr io.Writer) error {
	var f storeFlags
	var src ledgerSource
	fs := flag.NewFlagSet("boxoffice verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(fs)
	fs.StringVar(&src.path, "ledger", "", "audit the charges against this payments-sim ledger file (its --ledger); unset: <data-dir>/payments-ledger.jsonl when there is one")
	fs.StringVar(&src.url, "payments", "", "audit the charges against a running `boxoffice payments-sim` at this URL (GET /v1/charges), for a server started with --payments URL")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if src.path != "" && src.url != "" {
		return fmt.Errorf("--ledger and --payments name two sources of charges; give one")
	}
	if src.url != "" {
		if err := bench.CheckLoopback(src.url, true); err != nil {
			return fmt.Errorf("--payments: %w", err)
		}
	}
	if src.path == "" && src.url == "" {
		src.path, src.optional = f.ledgerPath(), true
	}
	if f.db == "sqlite" {
		if _, err := os.Stat(f.dbPath()); err != nil {
			return fmt.Errorf("no store at %s: %w", f.dbPath(), err)
		}
	}
	bad, where, ledger, err := auditWith(context.Background(), f, src)
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
		if src.url != "" {
			ledgerNote = fmt.Sprintf("against %d charges at the provider", len(ledger))
		}
	}
	fmt.Fprintf(stdout, "verify %s: ok — counts match holds and orders, nothing oversold, no key with two effects (%s)\n", where, ledgerNote)
	return nil
}

// ledgerSource is where verify reads the charges to hold the orders against: a payments-sim
// ledger file, or a running payments-sim's GET /v1/charges. optional says a missing file means
// "no simulator here" rather than an error.
type ledgerSource struct {
	path, url string
	optional  bool
}

// audit checks the store the flags name, with the built-in simulator's ledger under its data
// dir when there is one, and returns the violations, where the store is, and the ledger it used.
func audit(ctx context.Context, f storeFlags) ([]string, string, []sale.LedgerCharge, error) {
	return auditWith(ctx, f, ledgerSource{path: f.ledgerPath(), optional: true})
}

// auditWith is audit with the charges read from src.
func auditWith(ctx context.Context, f storeFlags, src ledgerSource) ([]string, string, []sale.LedgerCharge, error) {
	store, where, err := f.open(ctx)
	if err != nil {
		return nil, "", nil, err
	}
	defer store.Close()
	var ledger []sale.LedgerCharge
	if src.url != "" {
		if ledger, err = providerCharges(ctx, src.url); err != nil {
			return nil, where, nil, fmt.Errorf("read the provider's charges: %w", err)
		}
	} else {
		charges, err := payments.LoadLedger(src.path)
		switch {
		case errors.Is(err, os.ErrNotExist) && src.optional:
			ledger = nil // no simulator ledger: nothing to hold the orders against
		case err != nil:
			return nil, where, nil, fmt.Errorf("read payment ledger: %w", err)
		default:
			ledger = []sale.LedgerCharge{}
			for _, c := range charges {
				ledger = append(ledger, sale.LedgerCharge{Key: c.Key, ChargeID: c.ID, Succeeded: c.Status == "succeeded", Refunded: c.Refunded})
			}
		}
	}
	bad, err := sale.Verify(ctx, store, ledger)
	return bad, where, ledger, err
}

// providerCharges lists every charge of a payments-sim at base by GET /v1/charges, page by page
// (limit and starting_after, as Stripe pages), bounded to a million charges.
func providerCharges(ctx context.Context, base string) ([]sale.LedgerCharge, error) {
	hc := &http.Client{Timeout: 30 * time.Second}
	ledger := []sale.LedgerCharge{}
	after := ""
	for range 10000 {
		u := strings.TrimRight(base, "/") + "/v1/charges?limit=100"
		if after != "" {
			u += "&starting_after=" + url.QueryEscape(after)
		}
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		var page struct {
			Object string `json:"object"`
			Data   []struct {
				ID             string `json:"id"`
				Status         string `json:"status"`
				Refunded       bool   `json:"refunded"`
				IdempotencyKey string `json:"idempotency_key"`
			} `json:"data"`
			HasMore bool `json:"has_more"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || page.Object != "list" {
			return nil, fmt.Errorf("GET %s: status %d, %v", u, resp.StatusCode, err)
		}
		for _, c := range page.Data {
			if c.IdempotencyKey == "" {
				return nil, fmt.Errorf("charge %s carries no idempotency_key: %s is not a boxoffice payments-sim", c.ID, base)
			}
			ledger = append(ledger, sale.LedgerCharge{Key: c.IdempotencyKey, ChargeID: c.ID, Succeeded: c.Status == "succeeded", Refunded: c.Refunded})
		}
		if !page.HasMore || len(page.Data) == 0 {
			return ledger, nil
		}
		after = page.Data[len(page.Data)-1].ID
	}
	return nil, fmt.Errorf("more than a million charges at %s", base)
}
