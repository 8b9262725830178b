package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// startPaymentsSim runs `boxoffice payments-sim` on a free loopback port and waits until it
// listens. It is a *server like the one startServer returns, so kill and stop work alike.
func startPaymentsSim(t *testing.T, args ...string) *server {
	t.Helper()
	return startProcess(t, "payments-sim", append([]string{"--addr", "127.0.0.1:0"}, args...)...)
}

// simCharge is a charge as GET /v1/charges of the simulator shows it.
type simCharge struct {
	ID             string `json:"id"`
	Object         string `json:"object"`
	Amount         int64  `json:"amount"`
	Currency       string `json:"currency"`
	Status         string `json:"status"`
	Refunded       bool   `json:"refunded"`
	IdempotencyKey string `json:"idempotency_key"`
}

func simCharges(t *testing.T, base string) []simCharge {
	t.Helper()
	hc := &http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Get(base + "/v1/charges")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list struct {
		Object  string      `json:"object"`
		Data    []simCharge `json:"data"`
		HasMore bool        `json:"has_more"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != 200 || list.Object != "list" || list.HasMore {
		t.Fatalf("GET /v1/charges: %d %v %+v", resp.StatusCode, err, list)
	}
	return list.Data
}

// TestPaymentsOverHTTP runs the server with --payments pointing at a payments-sim process that
// fails, resets and loses answers, and buys, declines and cancels through the HTTP API at once.
// Then the provider's charges and the server's orders must agree one to one: a charge for every
// paid order, an order for every charge, a refund for every cancelled order and for nothing else.
func TestPaymentsOverHTTP(t *testing.T) {
	dir := t.TempDir()
	// The simulator's ledger lies where `verify --data-dir` looks for one, so verify audits the
	// server's orders against what the separate provider process recorded.
	ledger := filepath.Join(dir, "payments-ledger.jsonl")
	ps := startPaymentsSim(t, "--ledger", ledger, "--latency", "2ms",
		"--error-rate", "0.1", "--reset-rate", "0.1", "--drop-rate", "0.2", "--slow-delay", "4s")
	s := startServer(t, dir, "--payments", ps.URL)
	if !strings.Contains(s.logs.String(), "provider="+ps.URL) {
		t.Fatalf("the server does not say where payments go:\n%s", s.logs)
	}
	s.client(adminKey).must(201, "PUT", "/v1/shows/hot", showBody(150, 600))
	cl := s.client(s.newClientKey(t))

	const workers, keys = 32, 240
	token := func(i int) string {
		switch {
		case i%40 == 13:
			return "tok_slow"
		case i%12 == 5:
			return "tok_declined"
		case i%12 == 9:
			return "tok_flaky"
		}
		return "tok_ok"
	}
	// post sends a POST until it has a final answer: "in progress" and 503 (the provider was
	// unreachable for a refund) are retried with the same key, as a client would. Bounded.
	post := func(path, key string, body any) *reply {
		for range 200 {
			r, err := cl.do("POST", path, body, "Idempotency-Key", key)
			if err != nil {
				t.Errorf("%s %s: %v", path, key, err)
				return nil
			}
			if (r.Status == 409 && r.code() == "idempotency_request_in_progress") || r.Status == 503 {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			return r
		}
		t.Errorf("%s %s: no final answer after 200 tries", path, key)
		return nil
	}
	var (
		mu        sync.Mutex
		answers   = map[string][]string{} // purchase key → order id or error code, per answer
		pending   []string                // orders answered 202
		cancelled = map[string]bool{}
		next      atomic.Int64
		wg        sync.WaitGroup
	)
	purchase := func(i int) *reply {
		key := fmt.Sprintf("buyer-%d", i)
		body := map[string]any{"show_id": "hot", "tier_id": "ga", "quantity": 1,
			"buyer": map[string]string{"email": key + "@example.com"}, "payment": map[string]string{"token": token(i)}}
		r := post("/v1/purchases", key, body)
		if r == nil {
			return nil
		}
		v := r.code()
		switch r.Status {
		case 201, 202:
			v = r.json(t)["id"].(string)
		case 402, 409:
		default:
			t.Errorf("purchase %s: %d %s", key, r.Status, r.Body)
		}
		if token(i) == "tok_slow" && r.Status != 202 && v != "sold_out" {
			t.Errorf("purchase %s with tok_slow: %d %s, want 202", key, r.Status, r.Body)
		}
		mu.Lock()
		answers[key] = append(answers[key], v)
		mu.Unlock()
		return r
	}
	cancel := func(i int, id string) {
		key := fmt.Sprintf("cancel-%d", i)
		var dup sync.WaitGroup
		if i%8 == 0 { // a double click on cancel
			dup.Go(func() { post("/v1/orders/"+id+"/cancel", key, nil) })
		}
		r := post("/v1/orders/"+id+"/cancel", key, nil)
		dup.Wait()
		if r == nil || r.Status != 200 || r.json(t)["status"] != "cancelled" {
			t.Errorf("cancel %s: %+v", id, r)
			return
		}
		mu.Lock()
		cancelled[id] = true
		mu.Unlock()
	}
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1))
				if i > keys {
					return
				}
				r := purchase(i)
				if r == nil {
					continue
				}
				switch {
				case r.Status == 202:
					mu.Lock()
					pending = append(pending, r.json(t)["id"].(string))
					mu.Unlock()
				case r.Status == 201 && i%4 == 0:
					cancel(i, r.json(t)["id"].(string))
				}
				if i%3 == 0 { // the purchase again after its answer, as after a lost response
					purchase(i)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for key, got := range answers {
		for _, v := range got[1:] {
			if v != got[0] {
				t.Errorf("key %s got different answers: %v", key, got)
			}
		}
	}
	// tok_slow (and any purchase whose payment outran the sync budget) settles later, by itself.
	for _, id := range pending {
		eventually(t, "order "+id+" to settle", func() bool {
			return cl.must(200, "GET", "/v1/orders/"+id, nil).json(t)["status"] != "pending_payment"
		})
	}

	// The server's side: every order of the show, by id.
	orders := map[string]string{} // id → status
	after := ""
	for range 20 {
		pg := cl.must(200, "GET", "/v1/orders?show_id=hot&limit=100&after="+after, nil).json(t)
		for _, o := range pg["data"].([]any) {
			o := o.(map[string]any)
			orders[o["id"].(string)] = o["status"].(string)
		}
		if pg["next"] == nil {
			break
		}
		after = pg["next"].(string)
	}
	count := map[string]int{}
	for id, st := range orders {
		count[st]++
		if st == "cancelled" && !cancelled[id] {
			t.Errorf("order %s is cancelled, but no cancel was answered for it", id)
		}
	}
	if count["pending_payment"] != 0 {
		t.Fatalf("%d orders still pending", count["pending_payment"])
	}
	if count["confirmed"] == 0 || count["cancelled"] == 0 || count["payment_failed"] == 0 {
		t.Fatalf("order statuses %v: the test should make every kind", count)
	}

	// The provider's side, over its HTTP API.
	charges := simCharges(t, ps.URL)
	succeeded, refunded, failed := 0, 0, 0
	charged := map[string]int{}
	for _, c := range charges {
		orderID, ok := strings.CutSuffix(c.IdempotencyKey, "/charge")
		st, known := orders[orderID]
		if !ok || !known {
			t.Errorf("charge %s (key %q) belongs to no order", c.ID, c.IdempotencyKey)
			continue
		}
		if c.Amount != 4500 || c.Currency != "eur" || c.Object != "charge" {
			t.Errorf("charge %+v", c)
		}
		charged[orderID]++
		switch c.Status {
		case "succeeded":
			succeeded++
			if st != "confirmed" && st != "cancelled" {
				t.Errorf("charge %s succeeded for order %s that is %s", c.ID, orderID, st)
			}
			if c.Refunded != (st == "cancelled") {
				t.Errorf("charge %s refunded=%t for order %s that is %s", c.ID, c.Refunded, orderID, st)
			}
		case "failed":
			failed++
			if st != "payment_failed" {
				t.Errorf("charge %s was declined for order %s that is %s", c.ID, orderID, st)
			}
		default:
			t.Errorf("charge %s is %s", c.ID, c.Status)
		}
		if c.Refunded {
			refunded++
		}
	}
	for id, st := range orders {
		if charged[id] != 1 {
			t.Errorf("order %s (%s) has %d charges, want 1", id, st, charged[id])
		}
	}
	if succeeded != count["confirmed"]+count["cancelled"] || refunded != count["cancelled"] || failed != count["payment_failed"] {
		t.Fatalf("provider: %d succeeded, %d refunded, %d declined; server: %v", succeeded, refunded, failed, count)
	}
	tier := cl.must(200, "GET", "/v1/shows/hot", nil).json(t)["tiers"].([]any)[0].(map[string]any)
	if tier["sold"] != float64(count["confirmed"]) || tier["held"] != 0.0 {
		t.Fatalf("tier %v, orders %v", tier, count)
	}

	// The faults did strike, on the way out (errors, resets) and back (lost answers).
	logs := ps.logs.String()
	for _, f := range []string{"fault=error", "fault=reset", "fault=drop"} {
		if !strings.Contains(logs, f) {
			t.Errorf("the simulator injected no %s", f)
		}
	}
	t.Logf("orders %v; provider: %d charges, %d succeeded, %d refunded, %d declined; %d faults injected",
		count, len(charges), succeeded, refunded, failed, strings.Count(logs, "injected fault"))

	// Both processes shut down cleanly, and verify holds the store against the provider's ledger.
	if err := s.stop(); err != nil {
		t.Fatalf("server stop: %v\n%s", err, s.logs)
	}
	if err := ps.stop(); err != nil {
		t.Fatalf("payments-sim stop: %v\n%s", err, ps.logs)
	}
	code, out := runCLI(t, "verify", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, fmt.Sprintf("against %d ledger entries", len(charges))) {
		t.Fatalf("verify: %d\n%s", code, out)
	}
}

func TestPaymentsSimUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--error-rate", "1.5"},
		{"--error-rate", "0.5", "--drop-rate", "0.6"},
		{"--slow-delay", "0s"},
		{"--no-such-flag"},
	} {
		if code, out := runCLI(t, append([]string{"payments-sim", "--addr", "127.0.0.1:0", "--ledger", filepath.Join(t.TempDir(), "l.jsonl")}, args...)...); code != 2 {
			t.Errorf("payments-sim %v: exit %d, want 2\n%s", args, code, out)
		}
	}
	// Two simulators on one ledger would each write charges the other does not know of.
	ledger := filepath.Join(t.TempDir(), "ledger.jsonl")
	startPaymentsSim(t, "--ledger", ledger)
	if code, out := runCLI(t, "payments-sim", "--addr", "127.0.0.1:0", "--ledger", ledger); code != 1 || !strings.Contains(out, "another payments-sim") {
		t.Errorf("second payments-sim on one ledger: %d\n%s", code, out)
	}
	if code, out := runCLI(t, "serve", "--data-dir", t.TempDir(), "--payments", "ftp://127.0.0.1:1"); code != 1 || !strings.Contains(out, "--payments") {
		t.Errorf("serve --payments ftp://…: %d\n%s", code, out)
	}
	if code, out := runCLI(t, "help"); code != 0 || !strings.Contains(out, "payments-sim") {
		t.Errorf("help does not name payments-sim: %s", out)
	}
}
