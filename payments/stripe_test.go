package payments

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v82"

	"boxoffice"
)

// These tests drive the simulator with Stripe's own Go client, and read the raw answers where the
// client hides them, to check that it answers as Stripe documents: headers, error shapes, objects
// and paging.

// stripeClient is a stripe-go client for the simulator at base, without retries (see NewHTTP).
func stripeClient(t *testing.T, base string) *stripe.Client {
	t.Helper()
	return newAdapter(t, base, HTTPOptions{}).client
}

// countingHandler counts the GETs of each path, to see how a client pages.
type countingHandler struct {
	h    http.Handler
	gets map[string]*atomic.Int64
}

func (c countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n := c.gets[r.URL.Path]; n != nil && r.Method == http.MethodGet {
		n.Add(1)
	}
	c.h.ServeHTTP(w, r)
}

// rawDo sends one request and returns the answer's status, headers and decoded body.
func rawDo(t *testing.T, method, target, key string, form url.Values) (int, http.Header, map[string]any) {
	t.Helper()
	var body *strings.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	} else {
		body = strings.NewReader("")
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s %s: %d, body: %v", method, target, resp.StatusCode, err)
	}
	return resp.StatusCode, resp.Header, m
}

func wantStripeError(t *testing.T, err error, status int, typ stripe.ErrorType, code stripe.ErrorCode) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v (%T), want a *stripe.Error", err, err)
	}
	if se.HTTPStatusCode != status || se.Type != typ || se.Code != code {
		t.Fatalf("error %d %s %s (%s), want %d %s %s", se.HTTPStatusCode, se.Type, se.Code, se.Msg, status, typ, code)
	}
	if se.RequestID == "" {
		t.Errorf("error without a request id: %+v", se)
	}
	if code != "" && se.DocURL == "" {
		t.Errorf("error with code %s has no doc_url", code)
	}
	return se
}

// TestStripeReplaysCharges: a charge made with metadata and an idempotency key, then asked for
// again with the key: the same charge, marked as a replay and carrying its metadata, also after a
// restart; the key is echoed on every answer; a retry with other metadata is an idempotency_error.
func TestStripeReplaysCharges(t *testing.T) {
	path := ledgerPath(t)
	sim := newSim(t, SimOptions{LedgerPath: path})
	base, _ := serveSim(t, sim, Faults{})
	sc := stripeClient(t, base)
	ctx := context.Background()
	md := map[string]string{"order_id": "ord_42", "show": "hot"}

	params := func(key string, md map[string]string) *stripe.ChargeCreateParams {
		p := &stripe.ChargeCreateParams{
			Amount: stripe.Int64(2500), Currency: stripe.String("eur"),
			Source: &stripe.PaymentSourceSourceParams{Token: stripe.String(TokenOK)},
		}
		for k, v := range md {
			p.AddMetadata(k, v)
		}
		p.SetIdempotencyKey(key)
		return p
	}
	first, err := sc.V1Charges.Create(ctx, params("ord_42/charge", md))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(first.Metadata, md) || first.Status != stripe.ChargeStatusSucceeded {
		t.Fatalf("charge %+v, want succeeded with metadata %v", first, md)
	}
	if r := first.LastResponse; r.IdempotencyKey != "ord_42/charge" || r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first answer: Idempotency-Key %q, Idempotent-Replayed %q; want the key echoed and no replay",
			r.IdempotencyKey, r.Header.Get("Idempotent-Replayed"))
	}
	again, err := sc.V1Charges.Create(ctx, params("ord_42/charge", md))
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || !maps.Equal(again.Metadata, md) || again.Created != first.Created {
		t.Fatalf("replay %+v, want %+v", again, first)
	}
	if r := again.LastResponse; r.IdempotencyKey != "ord_42/charge" || r.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: Idempotency-Key %q, Idempotent-Replayed %q", r.IdempotencyKey, r.Header.Get("Idempotent-Replayed"))
	}

	// Other metadata with the same key is another request: refused, and nothing is charged.
	_, err = sc.V1Charges.Create(ctx, params("ord_42/charge", map[string]string{"order_id": "ord_43"}))
	se := wantStripeError(t, err, 400, stripe.ErrorTypeIdempotency, "")
	if se.LastResponse == nil || se.LastResponse.IdempotencyKey != "ord_42/charge" {
		t.Errorf("an error answer does not echo the key: %+v", se.LastResponse)
	}

	// The same over raw HTTP, where the headers are what they are; a decline is replayed too.
	form := url.Values{"amount": {"700"}, "currency": {"eur"}, "source": {TokenDeclined}, "metadata[order_id]": {"ord_7"}}
	for i, want := range []string{"", "true"} {
		status, h, body := rawDo(t, "POST", base+"/v1/charges", "ord_7/charge", form)
		if status != 402 || h.Get("Idempotency-Key") != "ord_7/charge" || h.Get("Idempotent-Replayed") != want {
			t.Fatalf("decline, answer %d: %d, Idempotency-Key %q, Idempotent-Replayed %q; want 402, the key, %q",
				i, status, h.Get("Idempotency-Key"), h.Get("Idempotent-Replayed"), want)
		}
		e, _ := body["error"].(map[string]any)
		if e["type"] != "card_error" || e["code"] != "card_declined" || e["doc_url"] == nil {
			t.Fatalf("decline body %v", body)
		}
	}

	// The metadata is in the ledger: a restarted simulator answers the retry with it.
	sim.Close()
	sim2 := newSim(t, SimOptions{LedgerPath: path})
	base2, _ := serveSim(t, sim2, Faults{})
	sc2 := stripeClient(t, base2)
	after, err := sc2.V1Charges.Create(ctx, params("ord_42/charge", md))
	if err != nil {
		t.Fatal(err)
	}
	if after.ID != first.ID || !maps.Equal(after.Metadata, md) || after.LastResponse.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay after restart %+v", after)
	}
	got, err := sc2.V1Charges.Retrieve(ctx, first.ID, nil)
	if err != nil || !maps.Equal(got.Metadata, md) {
		t.Fatalf("Retrieve after restart = %+v, %v", got, err)
	}
	if n := len(sim2.Charges()); n != 2 {
		t.Fatalf("%d charges in the ledger, want 2", n)
	}
}

// TestStripeRefunds: a refund with metadata and a key, its replay, a second refund with another key
// (charge_already_refunded, in Stripe's error shape), GET /v1/refunds/{id} before and after a
// restart, and created: the time the refund was made, the same in every answer.
func TestStripeRefunds(t *testing.T) {
	path := ledgerPath(t)
	clock := newFakeClock()
	opts := SimOptions{LedgerPath: path, Now: clock.Now}
	sim := newSim(t, opts)
	base, _ := serveSim(t, sim, Faults{})
	sc := stripeClient(t, base)
	ctx := context.Background()

	ch, err := chargesVia{sc}.charge(ctx, "ord_1/charge", 1800)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(90 * time.Minute) // the refund is made later than the charge
	refundedAt := clock.Now().Unix()
	md := map[string]string{"reason_detail": "show cancelled"}
	refundParams := func(key string) *stripe.RefundCreateParams {
		p := &stripe.RefundCreateParams{Charge: stripe.String(ch.ID)}
		p.AddMetadata("reason_detail", "show cancelled")
		p.SetIdempotencyKey(key)
		return p
	}
	re, err := sc.V1Refunds.Create(ctx, refundParams("ord_1/refund"))
	if err != nil {
		t.Fatal(err)
	}
	if re.Created != refundedAt || re.Amount != 1800 || re.Charge == nil || re.Charge.ID != ch.ID ||
		re.Status != stripe.RefundStatusSucceeded || !maps.Equal(re.Metadata, md) || !strings.HasPrefix(re.ID, PrefixRefund) {
		t.Fatalf("refund %+v (created %d), want created %d, 1800 of %s with %v", re, re.Created, refundedAt, ch.ID, md)
	}
	if r := re.LastResponse; r.IdempotencyKey != "ord_1/refund" || r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first refund answer: key %q, replayed %q", r.IdempotencyKey, r.Header.Get("Idempotent-Replayed"))
	}

	clock.Advance(time.Minute) // a replay must not restamp the refund
	again, err := sc.V1Refunds.Create(ctx, refundParams("ord_1/refund"))
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != re.ID || again.Created != refundedAt || again.LastResponse.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("refund replay %+v (created %d, replayed %q), want %s created %d, replayed",
			again, again.Created, again.LastResponse.Header.Get("Idempotent-Replayed"), re.ID, refundedAt)
	}

	// A second refund of the charge, under another key: Stripe's charge_already_refunded.
	_, err = sc.V1Refunds.Create(ctx, refundParams("ord_1/refund-again"))
	se := wantStripeError(t, err, 400, stripe.ErrorTypeInvalidRequest, stripe.ErrorCodeChargeAlreadyRefunded)
	if !strings.Contains(se.Msg, ch.ID) {
		t.Errorf("message %q does not name the charge", se.Msg)
	}
	// The adapter boxoffice uses still reads it as a validation error, not as a retryable one.
	p := newAdapter(t, base, HTTPOptions{})
	_, err = p.Refund(ctx, boxoffice.RefundRequest{Key: "ord_1/refund-3", ChargeID: ch.ID})
	wantCode(t, err, boxoffice.EVALIDATION)

	check := func(sc *stripe.Client) {
		t.Helper()
		got, err := sc.V1Refunds.Retrieve(ctx, re.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != re.ID || got.Created != refundedAt || got.Amount != 1800 || got.Charge.ID != ch.ID ||
			got.Currency != stripe.CurrencyEUR || !maps.Equal(got.Metadata, md) || got.Object != "refund" {
			t.Fatalf("Retrieve(%s) = %+v", re.ID, got)
		}
		for _, id := range []string{"re_nope", ch.ID, strings.Replace(re.ID, "re_", "ch_", 1), re.ID[:len(re.ID)-1] + "x"} {
			_, err = sc.V1Refunds.Retrieve(ctx, id, nil)
			wantStripeError(t, err, 404, stripe.ErrorTypeInvalidRequest, stripe.ErrorCodeResourceMissing)
		}
		// The charge shows the refund with the same fields.
		c, err := sc.V1Charges.Retrieve(ctx, ch.ID, nil)
		if err != nil || !c.Refunded || c.Refunds == nil || len(c.Refunds.Data) != 1 ||
			c.Refunds.Data[0].ID != re.ID || c.Refunds.Data[0].Created != refundedAt {
			t.Fatalf("charge %+v, %v", c, err)
		}
	}
	check(sc)
	sim.Close()
	sim2 := newSim(t, opts)
	base2, _ := serveSim(t, sim2, Faults{})
	check(stripeClient(t, base2))

	// A partial refund leaves a charge that Stripe would refund further; the simulator takes one
	// refund per charge and says so, without claiming the charge is refunded in full.
	sc2 := stripeClient(t, base2)
	part, err := chargesVia{sc2}.charge(ctx, "ord_2/charge", 1000)
	if err != nil {
		t.Fatal(err)
	}
	pp := &stripe.RefundCreateParams{Charge: stripe.String(part.ID), Amount: stripe.Int64(400)}
	pp.SetIdempotencyKey("ord_2/refund")
	if _, err := sc2.V1Refunds.Create(ctx, pp); err != nil {
		t.Fatal(err)
	}
	pp = &stripe.RefundCreateParams{Charge: stripe.String(part.ID), Amount: stripe.Int64(100)}
	pp.SetIdempotencyKey("ord_2/refund-more")
	_, err = sc2.V1Refunds.Create(ctx, pp)
	wantStripeError(t, err, 400, stripe.ErrorTypeInvalidRequest, "")
}

// chargesVia makes plain tok_ok charges through stripe-go, for tests that need some.
type chargesVia struct{ sc *stripe.Client }

func (m chargesVia) charge(ctx context.Context, key string, amount int64) (*stripe.Charge, error) {
	p := &stripe.ChargeCreateParams{
		Amount: stripe.Int64(amount), Currency: stripe.String("eur"),
		Source: &stripe.PaymentSourceSourceParams{Token: stripe.String(TokenOK)},
	}
	p.SetIdempotencyKey(key)
	return m.sc.V1Charges.Create(ctx, p)
}

// listPage is GET of a list endpoint over raw HTTP.
func listPage(t *testing.T, target string) (ids []string, hasMore bool, body map[string]any) {
	t.Helper()
	status, _, body := rawDo(t, "GET", target, "", nil)
	if status != 200 {
		t.Fatalf("GET %s: %d %v", target, status, body)
	}
	data, _ := body["data"].([]any)
	for _, d := range data {
		ids = append(ids, d.(map[string]any)["id"].(string))
	}
	hasMore, _ = body["has_more"].(bool)
	return ids, hasMore, body
}

// TestStripePaging: charges and refunds listed a page at a time with limit and starting_after
// (stripe-go's auto-pagination, and by hand), and ending_before: every object once, newest first,
// has_more true until the last page, with Stripe's list shape. Charges made while a client pages
// do not shift its pages. Both kinds of ledger, since pages are read from the ledger's bytes.
func TestStripePaging(t *testing.T) {
	for _, file := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "file"}[file], func(t *testing.T) {
			opts := SimOptions{}
			if file {
				opts.LedgerPath = ledgerPath(t)
			}
			sim := newSim(t, opts)
			counts := countingHandler{h: NewServer(sim, Faults{}), gets: map[string]*atomic.Int64{
				"/v1/charges": new(atomic.Int64), "/v1/refunds": new(atomic.Int64)}}
			base := serveHandler(t, counts)
			sc := stripeClient(t, base)
			ctx := context.Background()

			const n = 23
			var made []string // oldest first
			var refunds []string
			for i := range n {
				ch, err := chargesVia{sc}.charge(ctx, fmt.Sprintf("ord_%d/charge", i), int64(100+i))
				if err != nil {
					t.Fatal(err)
				}
				made = append(made, ch.ID)
				if i%3 == 0 { // refunds and their lines lie between the charges
					rp := &stripe.RefundCreateParams{Charge: stripe.String(ch.ID)}
					rp.SetIdempotencyKey(fmt.Sprintf("ord_%d/refund", i))
					re, err := sc.V1Refunds.Create(ctx, rp)
					if err != nil {
						t.Fatal(err)
					}
					refunds = append(refunds, re.ID)
				}
			}
			newestFirst := slices.Clone(made)
			slices.Reverse(newestFirst)

			// stripe-go pages by itself: limit 5 takes ceil(23/5) = 5 requests.
			var listed []string
			lp := &stripe.ChargeListParams{}
			lp.Limit = stripe.Int64(5)
			for c, err := range sc.V1Charges.List(ctx, lp) {
				if err != nil {
					t.Fatal(err)
				}
				listed = append(listed, c.ID)
				if len(listed) > 2*n { // a cursor that does not move would page forever
					t.Fatalf("stripe-go listed more than %d charges: %v", 2*n, listed)
				}
			}
			if !slices.Equal(listed, newestFirst) {
				t.Fatalf("stripe-go listed %v, want %v", listed, newestFirst)
			}
			if got := counts.gets["/v1/charges"].Load(); got != 5 {
				t.Fatalf("stripe-go made %d list requests for 23 charges 5 at a time, want 5", got)
			}

			// By hand, with charges arriving between pages: the pages hold what was there.
			var pages [][]string
			cursor := ""
			for range n { // bounded: at least one charge a page
				target := base + "/v1/charges?limit=7"
				if cursor != "" {
					target += "&starting_after=" + cursor
				}
				ids, hasMore, body := listPage(t, target)
				if body["object"] != "list" || body["url"] != "/v1/charges" {
					t.Fatalf("list shape %v", body)
				}
				pages = append(pages, ids)
				if _, err := (chargesVia{sc}).charge(ctx, fmt.Sprintf("late_%d/charge", len(pages)), 1); err != nil {
					t.Fatal(err)
				}
				if !hasMore {
					break
				}
				cursor = ids[len(ids)-1]
			}
			if len(pages) != 4 || len(pages[3]) != 2 || !slices.Equal(slices.Concat(pages...), newestFirst) {
				t.Fatalf("pages %v, want 7+7+7+2 of %v", pages, newestFirst)
			}

			// ending_before: the page just newer than the cursor, still newest first.
			ids, hasMore, _ := listPage(t, base+"/v1/charges?limit=3&ending_before="+made[0])
			if !slices.Equal(ids, []string{made[3], made[2], made[1]}) || !hasMore {
				t.Fatalf("ending_before the oldest: %v has_more %t, want %v", ids, hasMore, made[1:4])
			}
			// A limit alone is the newest page; a cursor alone gets Stripe's default of 10.
			if ids, hasMore, _ := listPage(t, base+"/v1/charges?limit=100"); len(ids) != n+len(pages) || hasMore {
				t.Fatalf("limit=100: %d charges, has_more %t", len(ids), hasMore)
			}
			if ids, hasMore, _ := listPage(t, base+"/v1/charges?starting_after="+made[n-1]); !slices.Equal(ids, newestFirst[1:11]) || !hasMore {
				t.Fatalf("starting_after without limit: %v %t", ids, hasMore)
			}
			if ids, hasMore, _ := listPage(t, base+"/v1/charges?starting_after="+made[0]); len(ids) != 0 || hasMore {
				t.Fatalf("after the oldest: %v %t", ids, hasMore)
			}

			// Refunds page the same way, all of them or one charge's.
			var listedRefunds []string
			rlp := &stripe.RefundListParams{}
			rlp.Limit = stripe.Int64(2)
			for r, err := range sc.V1Refunds.List(ctx, rlp) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Created == 0 || r.Object != "refund" {
					t.Fatalf("listed refund %+v", r)
				}
				listedRefunds = append(listedRefunds, r.ID)
				if len(listedRefunds) > 2*n {
					t.Fatalf("stripe-go listed more than %d refunds", 2*n)
				}
			}
			wantRefunds := slices.Clone(refunds)
			slices.Reverse(wantRefunds)
			if !slices.Equal(listedRefunds, wantRefunds) {
				t.Fatalf("refunds listed %v, want %v", listedRefunds, wantRefunds)
			}
			if got := counts.gets["/v1/refunds"].Load(); got != int64((len(refunds)+1)/2) {
				t.Fatalf("%d refund list requests for %d refunds 2 at a time", got, len(refunds))
			}
			one := &stripe.RefundListParams{Charge: stripe.String(made[3])}
			var ofCharge []string
			for r, err := range sc.V1Refunds.List(ctx, one) {
				if err != nil {
					t.Fatal(err)
				}
				ofCharge = append(ofCharge, r.ID)
				if len(ofCharge) > n {
					t.Fatalf("stripe-go listed more than %d refunds of one charge", n)
				}
			}
			if !slices.Equal(ofCharge, []string{refunds[1]}) {
				t.Fatalf("refunds of %s: %v, want %s", made[3], ofCharge, refunds[1])
			}
			if ids, _, body := listPage(t, base+"/v1/refunds"); len(ids) != len(refunds) || body["url"] != "/v1/refunds" {
				t.Fatalf("all refunds: %v %v", ids, body)
			}

			// What Stripe refuses.
			for _, q := range []string{"limit=0", "limit=101", "limit=x", "starting_after=ch_nope",
				"ending_before=" + refunds[0], "starting_after=" + made[1] + "&ending_before=" + made[2]} {
				status, _, body := rawDo(t, "GET", base+"/v1/charges?"+q, "", nil)
				if e, _ := body["error"].(map[string]any); status != 400 || e["type"] != "invalid_request_error" || e["param"] == nil {
					t.Errorf("GET /v1/charges?%s: %d %v, want a 400 invalid_request_error naming the parameter", q, status, body)
				}
			}
			lp = &stripe.ChargeListParams{}
			lp.StartingAfter = stripe.String("ch_nope")
			seen := false
			for _, err := range sc.V1Charges.List(ctx, lp) {
				wantStripeError(t, err, 400, stripe.ErrorTypeInvalidRequest, stripe.ErrorCodeResourceMissing)
				seen = true
				break
			}
			if !seen {
				t.Fatal("stripe-go listed nothing after an unknown cursor, want the error")
			}
		})
	}
}

// TestMetadataBounds: metadata outside Stripe's bounds is refused, in Stripe's shape, and charges
// nothing; empty values set nothing.
func TestMetadataBounds(t *testing.T) {
	sim := newSim(t, SimOptions{})
	base, _ := serveSim(t, sim, Faults{})
	many := chargeForm("100")
	for i := range maxMetadataKeys + 1 {
		many.Set(fmt.Sprintf("metadata[k%d]", i), "v")
	}
	with := func(k, v string) url.Values {
		f := chargeForm("100")
		f.Set(k, v)
		return f
	}
	for name, form := range map[string]url.Values{
		"too many keys":   many,
		"long key":        with("metadata["+strings.Repeat("k", maxMetadataKey+1)+"]", "v"),
		"long value":      with("metadata[k]", strings.Repeat("v", maxMetadataValue+1)),
		"nested key":      with("metadata[a][b]", "v"),
		"empty key":       with("metadata[]", "v"),
		"metadata string": with("metadata", "v"),
	} {
		status, body, err := rawPost(base, "/v1/charges", "k-"+name, form)
		if e, _ := body["error"].(map[string]any); err != nil || status != 400 || e["type"] != "invalid_request_error" ||
			!strings.HasPrefix(fmt.Sprint(e["param"]), "metadata") {
			t.Errorf("%s: %d %v %v, want a 400 about metadata", name, status, body, err)
		}
	}
	if n := len(sim.Charges()); n != 0 {
		t.Fatalf("%d charges after refused metadata", n)
	}
	status, body, err := rawPost(base, "/v1/charges", "k-ok", with("metadata[gone]", ""))
	if md, _ := body["metadata"].(map[string]any); err != nil || status != 200 || md == nil || len(md) != 0 {
		t.Fatalf("empty value: %d %v %v, want a charge with metadata {}", status, body, err)
	}
}

// TestScanLinesBack: reading a ledger backwards from any line boundary gives the lines a forward
// read gives, in reverse, with the same offsets, also for lines longer than the 64 KiB blocks it
// reads and for blank lines; reading forwards from a line's start gives the rest.
func TestScanLinesBack(t *testing.T) {
	var data []byte
	for i := range 40 {
		ln := ledgerLine{Op: opCharge, Key: fmt.Sprintf("k%d", i), ID: fmt.Sprintf("ch_%d", i)}
		switch i % 7 {
		case 3:
			ln.Description = strings.Repeat("x", 70<<10) // longer than a block
		case 5:
			data = append(data, '\n') // a blank line, which both directions skip
		}
		b, err := encodeLine(&ln)
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, b...)
	}
	type seen struct {
		off int64
		key string
	}
	var forward []seen
	if _, err := scanLines(bytes.NewReader(data), func(off int64, ln *ledgerLine) error {
		forward = append(forward, seen{off, ln.Key})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(forward) != 40 {
		t.Fatalf("forward read %d lines, want 40", len(forward))
	}
	r := bytes.NewReader(data)
	for i := 0; i <= len(forward); i++ {
		end := int64(len(data))
		if i < len(forward) {
			end = forward[i].off
		}
		var back []seen
		if err := scanLinesBack(r, end, func(off int64, ln *ledgerLine) error {
			back = append(back, seen{off, ln.Key})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slices.Reverse(back)
		if !slices.Equal(back, forward[:i]) {
			t.Fatalf("backwards from %d: %v, want %v", end, back, forward[:i])
		}
		if i == len(forward) {
			break
		}
		var rest []seen
		if err := scanLinesFrom(r, end, int64(len(data)), func(off int64, ln *ledgerLine) error {
			rest = append(rest, seen{off, ln.Key})
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rest, forward[i:]) {
			t.Fatalf("forwards from %d: %v, want %v", end, rest, forward[i:])
		}
	}
}

// TestPagedListShowsPendingCharges: a page shows a tok_slow charge as pending until it settles,
// and as succeeded afterwards, like the whole list and GET /v1/charges/{id}.
func TestPagedListShowsPendingCharges(t *testing.T) {
	clock := newFakeClock()
	sim := newSim(t, SimOptions{LedgerPath: ledgerPath(t), SlowDelay: time.Hour, Now: clock.Now})
	base, _ := serveSim(t, sim, Faults{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := sim.Charge(ctx, chargeReq("slow", TokenSlow, 100)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow charge before it is due: %v, want the deadline", err)
	}
	status := func() []any {
		_, _, page := listPage(t, base+"/v1/charges?limit=5")
		_, _, all := listPage(t, base+"/v1/charges")
		var out []any
		for _, body := range []map[string]any{page, all} {
			data, _ := body["data"].([]any)
			if len(data) != 1 {
				t.Fatalf("list %v, want one charge", body)
			}
			out = append(out, data[0].(map[string]any)["status"])
		}
		return out
	}
	if got := status(); got[0] != "pending" || got[1] != "pending" {
		t.Fatalf("statuses %v while pending", got)
	}
	clock.Advance(2 * time.Hour)
	if _, err := sim.Charge(context.Background(), chargeReq("slow", TokenSlow, 100)); err != nil {
		t.Fatal(err)
	}
	if got := status(); got[0] != "succeeded" || got[1] != "succeeded" {
		t.Fatalf("statuses %v once settled", got)
	}
}
