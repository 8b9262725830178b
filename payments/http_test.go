package payments

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82"

	"boxoffice"
)

// serveHandler serves h on a real loopback port, as the payments-sim process does, so that resets
// and dropped answers travel over real TCP.
func serveHandler(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
	})
	return "http://" + ln.Addr().String()
}

// serveSim puts sim behind NewServer on a loopback port; the *server is returned so that tests
// can see which faults were injected.
func serveSim(t *testing.T, sim *Sim, faults Faults) (string, *server) {
	t.Helper()
	h := NewServer(sim, faults)
	return serveHandler(t, h), h.(*server)
}

func newAdapter(t *testing.T, baseURL string, opts HTTPOptions) *HTTP {
	t.Helper()
	h, err := NewHTTP(baseURL, opts)
	if err != nil {
		t.Fatalf("NewHTTP: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// outcome is the final answer to one key: a charge id, or a decline.
type outcome struct {
	id       string
	declined bool
}

// chargeUntilFinal retries like the sale's order driver: the same key until a final answer,
// bounded. It returns the answer and how many transient failures it met.
func chargeUntilFinal(t *testing.T, p boxoffice.Payments, req boxoffice.ChargeRequest) (outcome, int) {
	transient := 0
	for range 30 {
		ch, err := p.Charge(context.Background(), req)
		switch code := boxoffice.ErrorCode(err); code {
		case "":
			if ch.Amount != req.Amount {
				t.Errorf("key %s: charged %+v, want %+v", req.Key, ch.Amount, req.Amount)
			}
			return outcome{id: ch.ID}, transient
		case boxoffice.EPAYMENTDECLINED:
			return outcome{declined: true}, transient
		case boxoffice.EPAYMENTUNAVAILABLE:
			transient++
		default:
			t.Errorf("key %s: unexpected error %v", req.Key, err)
			return outcome{}, transient
		}
	}
	t.Errorf("key %s: no final answer after 30 attempts", req.Key)
	return outcome{}, transient
}

// TestHTTPChargesOnceUnderFaults: 200 keys charged at once through the adapter and a server that
// fails, resets and loses answers; every key is retried until final, some twice at once and some
// again after the answer. The ledger holds exactly one charge per key, and every answer for a key
// names that one charge.
func TestHTTPChargesOnceUnderFaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	sim := newSim(t, SimOptions{LedgerPath: path})
	base, srv := serveSim(t, sim, Faults{Latency: time.Millisecond, ErrorRate: 0.15, ResetRate: 0.15, DropRate: 0.2})
	p := newAdapter(t, base, HTTPOptions{Timeout: 10 * time.Second})

	const n = 200
	token := func(i int) string {
		switch {
		case i%10 == 3:
			return TokenDeclined
		case i%10 == 7:
			return TokenFlaky
		}
		return TokenOK
	}
	var (
		mu        sync.Mutex
		answers   = map[string][]outcome{}
		transient atomic.Int64
		wg        sync.WaitGroup
	)
	run := func(req boxoffice.ChargeRequest) {
		o, tr := chargeUntilFinal(t, p, req)
		transient.Add(int64(tr))
		mu.Lock()
		answers[req.Key] = append(answers[req.Key], o)
		mu.Unlock()
	}
	for i := range n {
		req := boxoffice.ChargeRequest{Key: fmt.Sprintf("ord_%03d/charge", i), Token: token(i),
			Amount: eur(int64(1000 + i)), Description: "1 ticket(s) for hot"}
		wg.Go(func() {
			if i%5 == 0 { // a double click: the same key twice at once
				var dup sync.WaitGroup
				dup.Go(func() { run(req) })
				run(req)
				dup.Wait()
			} else {
				run(req)
			}
			if i%3 == 0 { // a retry after the answer, as after a crash of the caller
				run(req)
			}
		})
	}
	wg.Wait()

	recs := sim.Charges()
	if len(recs) != n {
		t.Fatalf("%d charges in the ledger, want %d (one per key)", len(recs), n)
	}
	byKey := sortedByKey(recs)
	if len(byKey) != n {
		t.Fatalf("%d distinct keys in the ledger, want %d", len(byKey), n)
	}
	for key, got := range answers {
		rec, ok := byKey[key]
		if !ok {
			t.Fatalf("key %s has no charge", key)
		}
		for _, o := range got {
			switch {
			case rec.Status == ChargeDeclined && !o.declined:
				t.Errorf("key %s: answered %+v, but the ledger declined it", key, o)
			case rec.Status == ChargeSucceeded && o.id != rec.ID:
				t.Errorf("key %s: answered %+v, ledger has %s", key, o, rec.ID)
			case rec.Status == ChargePending:
				t.Errorf("key %s: still pending", key)
			}
		}
		if wantDeclined := strings.HasSuffix(rec.Token, "declined"); wantDeclined != (rec.Status == ChargeDeclined) {
			t.Errorf("key %s with %s is %s", key, rec.Token, rec.Status)
		}
	}
	loaded, err := LoadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := sortedByKey(loaded); len(got) != n {
		t.Fatalf("the ledger file holds %d keys, want %d", len(got), n)
	}
	// The faults really happened, so the test proves something.
	for _, f := range []fault{faultError, faultReset, faultDrop} {
		if srv.injected[f].Load() == 0 {
			t.Errorf("no %s fault was injected", faultNames[f])
		}
	}
	if transient.Load() == 0 {
		t.Error("the adapter never reported a transient failure")
	}
	t.Logf("faults injected: %d errors, %d resets, %d drops; %d transient failures reached the caller",
		srv.injected[faultError].Load(), srv.injected[faultReset].Load(), srv.injected[faultDrop].Load(), transient.Load())
}

func TestHTTPDeclinedAndFlaky(t *testing.T) {
	sim := newSim(t, SimOptions{})
	base, _ := serveSim(t, sim, Faults{})
	p := newAdapter(t, base, HTTPOptions{})
	ctx := context.Background()

	for range 2 { // a retry of a decline is the same decline
		_, err := p.Charge(ctx, chargeReq("d1", TokenDeclined, 100))
		wantCode(t, err, boxoffice.EPAYMENTDECLINED)
	}
	_, err := p.Charge(ctx, chargeReq("d2", "tok_unknown", 100))
	wantCode(t, err, boxoffice.EPAYMENTDECLINED)

	for i := range 2 {
		_, err := p.Charge(ctx, chargeReq("f1", TokenFlaky, 100))
		wantCode(t, err, boxoffice.EPAYMENTUNAVAILABLE)
		if !strings.Contains(err.Error(), "503") {
			t.Errorf("flaky attempt %d: %v, want the 503 named", i, err)
		}
	}
	ch, err := p.Charge(ctx, chargeReq("f1", TokenFlaky, 100))
	if err != nil {
		t.Fatalf("flaky after two failures: %v", err)
	}
	recs := sim.Charges()
	if len(recs) != 3 || recs[0].Status != ChargeDeclined || recs[1].Status != ChargeDeclined || recs[2].ID != ch.ID {
		t.Fatalf("Charges() = %+v", recs)
	}
}

// TestHTTPRefundOnce: a refund asked for by many goroutines with one key, under faults, is made
// once, and every one of them is told the same refund; another key is refused.
func TestHTTPRefundOnce(t *testing.T) {
	sim := newSim(t, SimOptions{LedgerPath: filepath.Join(t.TempDir(), "ledger.jsonl")})
	base, srv := serveSim(t, sim, Faults{ErrorRate: 0.2, ResetRate: 0.2, DropRate: 0.3})
	p := newAdapter(t, base, HTTPOptions{})
	ctx := context.Background()

	full, _ := chargeUntilFinal(t, p, chargeReq("ord_a/charge", TokenOK, 1000))
	part, _ := chargeUntilFinal(t, p, chargeReq("ord_b/charge", TokenOK, 1000))
	if full.id == "" || part.id == "" {
		t.Fatal("charges failed")
	}
	refundUntilFinal := func(req boxoffice.RefundRequest) (*boxoffice.Refund, error) {
		for range 30 {
			re, err := p.Refund(ctx, req)
			if boxoffice.ErrorCode(err) != boxoffice.EPAYMENTUNAVAILABLE {
				return re, err
			}
		}
		return nil, errors.New("no final answer after 30 attempts")
	}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]int{}
	)
	for range 10 {
		wg.Go(func() {
			re, err := refundUntilFinal(boxoffice.RefundRequest{Key: "ord_a/refund", ChargeID: full.id, Amount: eur(1000)})
			if err != nil {
				t.Error(err)
				return
			}
			if re.ChargeID != full.id {
				t.Errorf("refund %+v is not of %s", re, full.id)
			}
			mu.Lock()
			ids[re.ID]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Fatalf("refund ids %v, want one", ids)
	}
	_, err := refundUntilFinal(boxoffice.RefundRequest{Key: "other-key", ChargeID: full.id})
	wantCode(t, err, boxoffice.EVALIDATION)
	_, err = refundUntilFinal(boxoffice.RefundRequest{Key: "ord_x/refund", ChargeID: "ch_unknown"})
	wantCode(t, err, boxoffice.ENOTFOUND)
	rePart, err := refundUntilFinal(boxoffice.RefundRequest{Key: "ord_b/refund", ChargeID: part.id, Amount: eur(400)})
	if err != nil {
		t.Fatal(err)
	}

	recs := sim.Charges()
	if len(recs) != 2 {
		t.Fatalf("Charges() = %+v", recs)
	}
	for id := range ids {
		if !recs[0].Refunded || recs[0].RefundID != id || recs[0].RefundKey != "ord_a/refund" || recs[0].RefundAmount != eur(1000) {
			t.Fatalf("record %+v, want refunded by %s", recs[0], id)
		}
	}
	if recs[1].RefundID != rePart.ID || recs[1].RefundAmount != eur(400) {
		t.Fatalf("record %+v, want a partial refund %s", recs[1], rePart.ID)
	}
	if srv.injected[faultDrop].Load() == 0 {
		t.Error("no answer was dropped")
	}

	// What an audit sees over the wire.
	list := getCharges(t, base)
	if len(list.Data) != 2 || list.Object != "list" || list.HasMore {
		t.Fatalf("GET /v1/charges = %+v", list)
	}
	byID := map[string]chargeObject{}
	for _, c := range list.Data {
		byID[c.ID] = c
	}
	if c := byID[full.id]; !c.Refunded || c.AmountRefunded != 1000 || c.IdempotencyKey != "ord_a/charge" ||
		len(c.Refunds.Data) != 1 || c.Refunds.Data[0].IdempotencyKey != "ord_a/refund" || c.Currency != "eur" {
		t.Errorf("charge %+v", c)
	}
	if c := byID[part.id]; !c.Refunded || c.AmountRefunded != 400 || c.Status != "succeeded" || !c.Paid {
		t.Errorf("charge %+v", c)
	}
}

func getCharges(t *testing.T, base string) listObject[chargeObject] {
	t.Helper()
	resp, err := http.Get(base + "/v1/charges")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list listObject[chargeObject]
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/charges: %d %v", resp.StatusCode, err)
	}
	return list
}

// TestStripeClientReadsTheSimulator: Stripe's own client lists and reads the simulator's charges,
// so the field names are Stripe's.
func TestStripeClientReadsTheSimulator(t *testing.T) {
	sim := newSim(t, SimOptions{})
	base, _ := serveSim(t, sim, Faults{})
	p := newAdapter(t, base, HTTPOptions{})
	ctx := context.Background()
	ok, err := p.Charge(ctx, chargeReq("k-ok", TokenOK, 2500))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Charge(ctx, chargeReq("k-declined", TokenDeclined, 700))
	wantCode(t, err, boxoffice.EPAYMENTDECLINED)
	if _, err := p.Refund(ctx, boxoffice.RefundRequest{Key: "k-ok/refund", ChargeID: ok.ID}); err != nil {
		t.Fatal(err)
	}

	sc := p.client
	var got []*stripe.Charge
	for c, err := range sc.V1Charges.List(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
	}
	if len(got) != 2 {
		t.Fatalf("listed %d charges, want 2", len(got))
	}
	// Newest first, as Stripe lists them.
	if c := got[1]; c.ID != ok.ID || c.Amount != 2500 || c.Currency != stripe.CurrencyEUR || c.Status != stripe.ChargeStatusSucceeded ||
		!c.Paid || !c.Captured || !c.Refunded || c.AmountRefunded != 2500 || c.Description != "test" || len(c.Refunds.Data) != 1 {
		t.Errorf("charge %+v", c)
	}
	if c := got[0]; c.Status != stripe.ChargeStatusFailed || c.Paid || c.FailureCode != "card_declined" {
		t.Errorf("declined charge %+v", c)
	}
	one, err := sc.V1Charges.Retrieve(ctx, ok.ID, nil)
	if err != nil || one.ID != ok.ID || one.Object != "charge" {
		t.Fatalf("Retrieve = %+v, %v", one, err)
	}
	_, err = sc.V1Charges.Retrieve(ctx, "ch_nope", nil)
	var se *stripe.Error
	if !errors.As(err, &se) || se.HTTPStatusCode != 404 || se.Code != stripe.ErrorCodeResourceMissing {
		t.Fatalf("Retrieve of an unknown charge: %v", err)
	}
}

// TestHTTPTimeoutIsRetryable: a call that outlives its timeout is EPAYMENTUNAVAILABLE (and still
// a deadline for errors.Is); the retry with the same key finds the one charge.
func TestHTTPTimeoutIsRetryable(t *testing.T) {
	sim := newSim(t, SimOptions{SlowDelay: 300 * time.Millisecond})
	base, _ := serveSim(t, sim, Faults{})
	short := newAdapter(t, base, HTTPOptions{Timeout: 30 * time.Millisecond})
	long := newAdapter(t, base, HTTPOptions{Timeout: 10 * time.Second})
	ctx := context.Background()

	_, err := short.Charge(ctx, chargeReq("slow", TokenSlow, 100))
	wantCode(t, err, boxoffice.EPAYMENTUNAVAILABLE)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want it to wrap the deadline", err)
	}
	if msg := boxoffice.ErrorMessage(err); strings.Contains(msg, "127.0.0.1") {
		t.Errorf("message %q shows internals", msg)
	}
	// The charge exists and is pending meanwhile: the answer was late, not the charge.
	eventually(t, "the slow charge to be made", func() bool { return len(sim.Charges()) == 1 })
	ch, err := long.Charge(ctx, chargeReq("slow", TokenSlow, 100))
	if err != nil {
		t.Fatal(err)
	}
	if recs := sim.Charges(); len(recs) != 1 || recs[0].ID != ch.ID || recs[0].Status != ChargeSucceeded {
		t.Fatalf("Charges() = %+v, want one succeeded %s", recs, ch.ID)
	}

	// A provider slower than the timeout: nothing is charged, and the caller may retry.
	slowBase, _ := serveSim(t, newSim(t, SimOptions{}), Faults{Latency: time.Second})
	_, err = newAdapter(t, slowBase, HTTPOptions{Timeout: 30 * time.Millisecond}).Charge(ctx, chargeReq("k", TokenOK, 100))
	wantCode(t, err, boxoffice.EPAYMENTUNAVAILABLE)

	// Nobody listening: a network error, also retryable.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	_, err = newAdapter(t, closed, HTTPOptions{}).Charge(ctx, chargeReq("k", TokenOK, 100))
	wantCode(t, err, boxoffice.EPAYMENTUNAVAILABLE)
}

// TestAdapterPollsPendingCharge: a provider that answers "pending" (as Stripe may, and replays
// that answer to every retry) is read back until the charge settles.
func TestAdapterPollsPendingCharge(t *testing.T) {
	var reads atomic.Int64
	charge := func(status string) string {
		return fmt.Sprintf(`{"id":"ch_p","object":"charge","amount":100,"currency":"eur","status":%q}`, status)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/charges", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, charge("pending"))
	})
	mux.HandleFunc("GET /v1/charges/ch_p", func(w http.ResponseWriter, r *http.Request) {
		if reads.Add(1) == 1 {
			io.WriteString(w, charge("pending"))
			return
		}
		io.WriteString(w, charge("succeeded"))
	})
	p := newAdapter(t, serveHandler(t, mux), HTTPOptions{})
	_, err := p.Charge(context.Background(), chargeReq("k", TokenOK, 100))
	wantCode(t, err, boxoffice.EPAYMENTUNAVAILABLE)
	ch, err := p.Charge(context.Background(), chargeReq("k", TokenOK, 100))
	if err != nil || ch.ID != "ch_p" || ch.Amount != eur(100) {
		t.Fatalf("Charge = %+v, %v", ch, err)
	}
}

// TestAdapterSendsKeysAndAPIKey: the caller's key is the Idempotency-Key, and an API key in the
// base URL is sent as the bearer token (and nowhere else).
func TestAdapterSendsKeysAndAPIKey(t *testing.T) {
	sim := newSim(t, SimOptions{})
	inner := NewServer(sim, Faults{})
	var mu sync.Mutex
	var seen []string
	base := serveHandler(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Idempotency-Key")+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		inner.ServeHTTP(w, r)
	}))
	u, _ := url.Parse(base)
	u.User = url.User("sk_test_secret")
	p := newAdapter(t, u.String(), HTTPOptions{})
	ctx := context.Background()
	ch, err := p.Charge(ctx, chargeReq("ord_1/charge", TokenOK, 100))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Refund(ctx, boxoffice.RefundRequest{Key: "ord_1/refund", ChargeID: ch.ID}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"POST /v1/charges ord_1/charge Bearer sk_test_secret",
		"POST /v1/refunds ord_1/refund Bearer sk_test_secret",
	}
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

func TestNewHTTPRejectsBadURLs(t *testing.T) {
	for _, raw := range []string{"", "sim", "ftp://127.0.0.1:8090", "127.0.0.1:8090", "http://", "http://h:1/?x=1", "http://h:1/#f"} {
		if _, err := NewHTTP(raw, HTTPOptions{}); err == nil {
			t.Errorf("NewHTTP(%q) accepted it", raw)
		}
	}
	for _, raw := range []string{"http://127.0.0.1:8090", "https://api.stripe.com", "https://sk_x@api.stripe.com/v1/", "http://[::1]:1/prefix"} {
		if _, err := NewHTTP(raw, HTTPOptions{}); err != nil {
			t.Errorf("NewHTTP(%q): %v", raw, err)
		}
	}
}

// rawPost sends a form POST without any client-side retry (a fresh connection each time, so Go's
// transport never resends it), to see each fault as it is.
func rawPost(base, path, key string, form url.Values) (int, map[string]any, error) {
	req, err := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, body, nil
}

func chargeForm(amount string) url.Values {
	return url.Values{"amount": {amount}, "currency": {"eur"}, "source": {TokenOK}}
}

func errorType(body map[string]any) string {
	e, _ := body["error"].(map[string]any)
	typ, _ := e["type"].(string)
	return typ
}

// TestFaultsOnlyOnFirstAttempts: with every attempt doomed, a key's first FirstAttempts attempts
// fail and the next one gets through; a dropped answer still made its charge, once.
func TestFaultsOnlyOnFirstAttempts(t *testing.T) {
	cases := []struct {
		name   string
		faults Faults
	}{
		{"error", Faults{ErrorRate: 1}},
		{"reset", Faults{ResetRate: 1}},
		{"drop", Faults{DropRate: 1, FirstAttempts: 2}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sim := newSim(t, SimOptions{})
			base, srv := serveSim(t, sim, tc.faults)
			first := tc.faults.FirstAttempts
			if first == 0 {
				first = 3
			}
			for attempt := 1; attempt <= first; attempt++ {
				status, body, err := rawPost(base, "/v1/charges", "k1", chargeForm("100"))
				switch tc.name {
				case "error":
					if status != 500 || errorType(body) != "api_error" {
						t.Fatalf("attempt %d: %d %v %v, want a 500 api_error", attempt, status, body, err)
					}
				default:
					if err == nil {
						t.Fatalf("attempt %d: %d %v, want no answer", attempt, status, body)
					}
				}
			}
			status, body, err := rawPost(base, "/v1/charges", "k1", chargeForm("100"))
			if err != nil || status != 200 || body["status"] != "succeeded" {
				t.Fatalf("attempt %d: %d %v %v, want the charge", first+1, status, body, err)
			}
			recs := sim.Charges()
			if len(recs) != 1 || recs[0].ID != body["id"] {
				t.Fatalf("Charges() = %+v, want one, %v", recs, body["id"])
			}
			if got := srv.injected[faultError].Load() + srv.injected[faultReset].Load() + srv.injected[faultDrop].Load(); got != int64(first) {
				t.Fatalf("%d faults injected, want %d", got, first)
			}
		})
	}
}

// TestFaultDecisions: the decision is a pure function of route, key and attempt, and over many
// keys each fault takes its share. The hash is fixed, so this cannot flake.
func TestFaultDecisions(t *testing.T) {
	f := Faults{ErrorRate: 0.1, ResetRate: 0.2, DropRate: 0.3}
	var count [numFaults]int
	const n = 20000
	for i := range n {
		key := fmt.Sprintf("ord_%d/charge", i)
		d := f.decide(routeCharges, key, 1)
		if again := f.decide(routeCharges, key, 1); again != d {
			t.Fatalf("key %s: %v then %v", key, d, again)
		}
		count[d]++
		if f.decide(routeCharges, key, 4) != faultNone {
			t.Fatalf("key %s: fault on attempt 4", key)
		}
	}
	for fl, want := range map[fault]float64{faultError: 0.1, faultReset: 0.2, faultDrop: 0.3, faultNone: 0.4} {
		if got := float64(count[fl]) / n; math.Abs(got-want) > 0.02 {
			t.Errorf("%s: share %.3f, want %.2f", faultNames[fl], got, want)
		}
	}
}

// TestServerRejectsBadRequests: what the server refuses, it refuses in Stripe's shape, and charges
// nothing.
func TestServerRejectsBadRequests(t *testing.T) {
	sim := newSim(t, SimOptions{})
	base, _ := serveSim(t, sim, Faults{})
	cases := []struct {
		name, path, key string
		form            url.Values
		status          int
		typ             string
	}{
		{"no key", "/v1/charges", "", chargeForm("100"), 400, "invalid_request_error"},
		{"no amount", "/v1/charges", "k", url.Values{"currency": {"eur"}, "source": {TokenOK}}, 400, "invalid_request_error"},
		{"bad amount", "/v1/charges", "k", chargeForm("-5"), 400, "invalid_request_error"},
		{"no source", "/v1/charges", "k", url.Values{"amount": {"1"}, "currency": {"eur"}}, 400, "invalid_request_error"},
		{"no charge", "/v1/refunds", "r", url.Values{}, 400, "invalid_request_error"},
		{"unknown charge", "/v1/refunds", "r", url.Values{"charge": {"ch_nope"}}, 404, "invalid_request_error"},
		{"unknown route", "/v1/customers", "k", url.Values{}, 404, "invalid_request_error"},
	}
	for _, tc := range cases {
		status, body, err := rawPost(base, tc.path, tc.key, tc.form)
		if err != nil || status != tc.status || errorType(body) != tc.typ {
			t.Errorf("%s: %d %v %v, want %d %s", tc.name, status, body, err, tc.status, tc.typ)
		}
	}
	if n := len(sim.Charges()); n != 0 {
		t.Fatalf("%d charges after bad requests", n)
	}

	// JSON is not what Stripe takes.
	resp, err := http.Post(base+"/v1/charges", "application/json", strings.NewReader(`{"amount":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("JSON body: %d, want 400", resp.StatusCode)
	}

	// A key reused for another amount is Stripe's idempotency_error, and the adapter's EVALIDATION.
	if status, _, err := rawPost(base, "/v1/charges", "k", chargeForm("100")); err != nil || status != 200 {
		t.Fatalf("charge: %d %v", status, err)
	}
	status, body, err := rawPost(base, "/v1/charges", "k", chargeForm("200"))
	if err != nil || status != 400 || errorType(body) != "idempotency_error" {
		t.Fatalf("reused key: %d %v %v", status, body, err)
	}
	p := newAdapter(t, base, HTTPOptions{})
	_, err = p.Charge(context.Background(), chargeReq("k", TokenOK, 300))
	wantCode(t, err, boxoffice.EVALIDATION)
	_, err = p.Charge(context.Background(), chargeReq("", TokenOK, 300))
	wantCode(t, err, boxoffice.EVALIDATION)
	if n := len(sim.Charges()); n != 1 {
		t.Fatalf("%d charges, want 1", n)
	}
}
