package sale_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/sale"
)

func TestWebhookEndpoints(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	in := sale.WebhookInput{URL: "https://partner.example/hooks", EventTypes: []string{boxoffice.EventOrderConfirmed}}
	w, created, err := e.svc.PutWebhookEndpoint(ctx, "partner", in)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	if len(w.Secret) < len(boxoffice.WebhookSecretPrefix)+32 || w.Secret[:6] != boxoffice.WebhookSecretPrefix || w.Status != boxoffice.WebhookEnabled {
		t.Fatalf("created endpoint %+v", w)
	}

	// An endpoint that a receiver disabled (410) is enabled again by a PUT, keeping its secret
	// and creation time.
	e.clock.Advance(time.Minute)
	if err := e.store.Update(ctx, func(tx boxoffice.Tx) error {
		d := *w
		d.Status, d.DisabledReason = boxoffice.WebhookDisabled, "410 Gone"
		_, err := tx.PutWebhookEndpoint(ctx, &d)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	in.EventTypes = []string{"*"}
	w2, created, err := e.svc.PutWebhookEndpoint(ctx, "partner", in)
	if err != nil || created {
		t.Fatalf("replace: %v %v", created, err)
	}
	// A replacement keeps the secret (a partner's verifier keeps working); the PUT and the GET
	// show it to the admin, as SPEC §3 has it, a list does not.
	if w2.Secret != w.Secret || !w2.CreatedAt.Equal(w.CreatedAt) || !w2.UpdatedAt.After(w.UpdatedAt) ||
		w2.Status != boxoffice.WebhookEnabled || w2.DisabledReason != "" || !slices.Equal(w2.EventTypes, []string{"*"}) {
		t.Fatalf("replaced endpoint %+v; was %+v", w2, w)
	}
	if stored := storedEndpoint(t, e, "partner"); stored.Secret != w.Secret {
		t.Fatalf("the replacement changed the stored secret: %q, was %q", stored.Secret, w.Secret)
	} else if !slices.Equal(stored.EventTypes, []string{"*"}) {
		// Stored as the wildcard, not today's types, so the endpoint gets the types added later.
		t.Fatalf("[\"*\"] is stored as %q", stored.EventTypes)
	}
	got, err := e.svc.GetWebhookEndpoint(ctx, "partner")
	if err != nil || got.Secret != w.Secret || got.Status != boxoffice.WebhookEnabled {
		t.Fatalf("get: %+v %v", got, err)
	}
	if list, err := e.svc.ListWebhookEndpoints(ctx); err != nil || len(list) != 1 || list[0].Secret != "" {
		t.Fatalf("list: %+v %v", list, err)
	}

	for _, c := range []struct {
		name string
		id   string
		in   sale.WebhookInput
	}{
		{"no url", "p", sale.WebhookInput{EventTypes: []string{"*"}}},
		{"not http", "p", sale.WebhookInput{URL: "ftp://partner.example/", EventTypes: []string{"*"}}},
		{"loopback", "p", sale.WebhookInput{URL: "http://127.0.0.1:9000/", EventTypes: []string{"*"}}},
		{"localhost", "p", sale.WebhookInput{URL: "http://localhost/", EventTypes: []string{"*"}}},
		{"metadata service", "p", sale.WebhookInput{URL: "http://169.254.169.254/latest", EventTypes: []string{"*"}}},
		{"no types", "p", sale.WebhookInput{URL: "https://partner.example/"}},
		{"unknown type", "p", sale.WebhookInput{URL: "https://partner.example/", EventTypes: []string{"order.shipped"}}},
		{"twice", "p", sale.WebhookInput{URL: "https://partner.example/", EventTypes: []string{"hold.created", "hold.created"}}},
		{"star among others", "p", sale.WebhookInput{URL: "https://partner.example/", EventTypes: []string{"*", "hold.created"}}},
		{"bad id", "P!", in},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := e.svc.PutWebhookEndpoint(ctx, c.id, c.in)
			if boxoffice.ErrorCode(err) != boxoffice.EVALIDATION {
				t.Fatalf("err = %v; want validation_failed", err)
			}
			if _, err := e.svc.GetWebhookEndpoint(ctx, c.id); boxoffice.ErrorCode(err) != boxoffice.ENOTFOUND {
				t.Fatalf("a refused endpoint was stored: %v", err)
			}
		})
	}

	if err := e.svc.DeleteWebhookEndpoint(ctx, "partner"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteWebhookEndpoint(ctx, "partner"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	if list, err := e.svc.ListWebhookEndpoints(ctx); err != nil || len(list) != 0 {
		t.Fatalf("list after delete: %v %v", list, err)
	}
}

func TestPrivateWebhooksWhenAllowed(t *testing.T) {
	e := newEnv(t, func(c *sale.Config) { c.AllowPrivateWebhooks = true })
	_, created, err := e.svc.PutWebhookEndpoint(context.Background(), "local",
		sale.WebhookInput{URL: "http://127.0.0.1:9000/hook", EventTypes: []string{"*"}})
	if err != nil || !created {
		t.Fatalf("a loopback endpoint with AllowPrivateWebhooks: %v %v", created, err)
	}
}

func TestRunOnce(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	runs := 0
	op := func(context.Context) (any, error) {
		runs++
		return map[string]int{"run": runs}, nil
	}
	first, replayed, err := e.svc.RunOnce(ctx, idem("op", "k1", nil), 200, op)
	want(t, first, err, 200, "")
	if replayed {
		t.Fatal("first run marked replayed")
	}
	again, replayed, err := e.svc.RunOnce(ctx, idem("op", "k1", nil), 200, op)
	want(t, again, err, 200, "")
	if !replayed || string(again.Body) != string(first.Body) || runs != 1 {
		t.Fatalf("retry: replayed=%v body %s (first %s), runs %d", replayed, again.Body, first.Body, runs)
	}
	if _, _, err := e.svc.RunOnce(ctx, idem("op", "k1", map[string]int{"other": 1}), 200, op); boxoffice.ErrorCode(err) != boxoffice.EIDEMREUSED {
		t.Fatalf("different request, same key: %v", err)
	}
	// A final domain answer is stored like a success; a transient failure is not, so the key can
	// be retried.
	gone := func(context.Context) (any, error) {
		return nil, boxoffice.Errorf(boxoffice.ENOTFOUND, "no such dead letter")
	}
	res, _, err := e.svc.RunOnce(ctx, idem("op", "k2", nil), 200, gone)
	want(t, res, err, 404, boxoffice.ENOTFOUND)
	if _, _, err := e.svc.RunOnce(ctx, idem("op", "k3", nil), 200, func(context.Context) (any, error) {
		return nil, errors.New("nats: timeout")
	}); err == nil {
		t.Fatal("transient failure answered")
	}
	if res, _, err := e.svc.RunOnce(ctx, idem("op", "k3", nil), 200, op); err != nil || res.Status != 200 || runs != 2 {
		t.Fatalf("retry after a transient failure: %v %v, runs %d", res, err, runs)
	}
}

func TestInboxIsSweptAfterItsTTL(t *testing.T) {
	e := newEnv(t, func(c *sale.Config) { c.InboxTTL = time.Hour })
	ctx := context.Background()
	add := func(id string) {
		if err := e.store.Update(ctx, func(tx boxoffice.Tx) error {
			return tx.InsertInboxEvent(ctx, "email", id, e.clock.Now())
		}); err != nil {
			t.Fatal(err)
		}
	}
	add("evt_old")
	e.clock.Advance(30 * time.Minute)
	add("evt_young")
	e.clock.Advance(31 * time.Minute)
	if n, err := e.svc.SweepInbox(ctx); err != nil || n != 1 {
		t.Fatalf("sweep = %d, %v; want the one row past its TTL", n, err)
	}
	if err := e.store.View(ctx, func(tx boxoffice.Tx) error {
		old, err1 := tx.InboxHas(ctx, "email", "evt_old")
		young, err2 := tx.InboxHas(ctx, "email", "evt_young")
		if old || !young || err1 != nil || err2 != nil {
			t.Errorf("after sweep: old %v young %v (%v %v)", old, young, err1, err2)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// storedEndpoint reads an endpoint as the delivery side does: from the store, secrets and all.
func storedEndpoint(t *testing.T, e *env, id string) *boxoffice.WebhookEndpoint {
	t.Helper()
	var w *boxoffice.WebhookEndpoint
	if err := e.store.View(context.Background(), func(tx boxoffice.Tx) (err error) {
		w, err = tx.GetWebhookEndpoint(context.Background(), id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestRotateWebhookSecret: a rotation shows the new secret once, keeps the old one signing for
// the overlap asked for (a day by default), keeps both across a replacing PUT, and answers a
// replay of its Idempotency-Key with the same endpoint but no secret, storing none.
func TestRotateWebhookSecret(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	in := sale.WebhookInput{URL: "https://partner.example/hooks", EventTypes: []string{"*"}}
	w, _, err := e.svc.PutWebhookEndpoint(ctx, "partner", in)
	if err != nil {
		t.Fatal(err)
	}
	old := w.Secret

	rot := idem("rotate partner", "rot-1", nil)
	res, replayed, err := e.svc.RotateWebhookSecret(ctx, rot, "partner", sale.RotateSecretInput{})
	if err != nil || replayed || res.Status != 200 {
		t.Fatalf("rotate: %+v %v %v", res, replayed, err)
	}
	var shown boxoffice.WebhookEndpoint
	if err := json.Unmarshal(res.Body, &shown); err != nil {
		t.Fatal(err)
	}
	wantEnd := e.clock.Now().Add(sale.DefaultSecretOverlap)
	if !strings.HasPrefix(shown.Secret, boxoffice.WebhookSecretPrefix) || shown.Secret == old ||
		shown.PreviousSecretExpiresAt == nil || !shown.PreviousSecretExpiresAt.Equal(wantEnd) {
		t.Fatalf("rotate answered %s; want a new secret and the old one's end at %v", res.Body, wantEnd)
	}
	stored := storedEndpoint(t, e, "partner")
	if stored.Secret != shown.Secret || stored.PreviousSecret != old {
		t.Fatalf("stored secrets %q, %q; want %q, %q", stored.Secret, stored.PreviousSecret, shown.Secret, old)
	}
	if got := stored.Secrets(e.clock.Now()); len(got) != 2 || got[0] != shown.Secret || got[1] != old {
		t.Errorf("secrets during the overlap = %v", got)
	}
	if got := stored.Secrets(wantEnd); len(got) != 1 || got[0] != shown.Secret {
		t.Errorf("secrets after the overlap = %v", got)
	}

	// The replay: same status and endpoint, no secret, and the record holds none either.
	again, replayed, err := e.svc.RotateWebhookSecret(ctx, rot, "partner", sale.RotateSecretInput{})
	if err != nil || !replayed || again.Status != 200 || strings.Contains(string(again.Body), shown.Secret) ||
		strings.Contains(string(again.Body), `"secret"`) || !strings.Contains(string(again.Body), `"id":"partner"`) {
		t.Fatalf("replay: %s %v %v", again.Body, replayed, err)
	}
	assertNoRecordHolds(t, e, shown.Secret)
	if s := storedEndpoint(t, e, "partner"); s.Secret != shown.Secret {
		t.Fatal("the replay rotated again")
	}

	// A replacing PUT keeps both secrets and the overlap.
	if _, _, err := e.svc.PutWebhookEndpoint(ctx, "partner", in); err != nil {
		t.Fatal(err)
	}
	if s := storedEndpoint(t, e, "partner"); s.Secret != shown.Secret || s.PreviousSecret != old ||
		s.PreviousSecretExpiresAt == nil || !s.PreviousSecretExpiresAt.Equal(wantEnd) {
		t.Fatalf("after a PUT: %+v", s)
	}

	// expires_in: 0 ends the overlap at once; out of range is refused; unknown endpoints are 404.
	zero := int64(0)
	res, _, err = e.svc.RotateWebhookSecret(ctx, idem("rotate partner", "rot-2", zero), "partner", sale.RotateSecretInput{ExpiresIn: &zero})
	if err != nil || res.Status != 200 {
		t.Fatalf("rotate with expires_in 0: %v %v", res, err)
	}
	if got := storedEndpoint(t, e, "partner").Secrets(e.clock.Now()); len(got) != 1 {
		t.Errorf("secrets after an overlap of 0 = %v; want the new one only", got)
	}
	neg := int64(-1)
	if _, _, err := e.svc.RotateWebhookSecret(ctx, idem("rotate partner", "rot-3", neg), "partner", sale.RotateSecretInput{ExpiresIn: &neg}); boxoffice.ErrorCode(err) != boxoffice.EVALIDATION {
		t.Errorf("expires_in -1: %v; want validation_failed", err)
	}
	res, _, err = e.svc.RotateWebhookSecret(ctx, idem("rotate nobody", "rot-4", nil), "nobody", sale.RotateSecretInput{})
	if err != nil || res.Status != 404 {
		t.Errorf("rotate an unknown endpoint: %v %v; want a stored 404", res, err)
	}
}

// assertNoRecordHolds fails when any idempotency record's stored answer contains secret.
func assertNoRecordHolds(t *testing.T, e *env, secret string) {
	t.Helper()
	if err := e.store.View(context.Background(), func(tx boxoffice.Tx) error {
		return tx.ForEachIdemRecord(context.Background(), func(r *boxoffice.IdemRecord) error {
			if r.Response != nil && strings.Contains(string(r.Response.Body), secret) {
				t.Errorf("idempotency record %s holds the secret: %s", r.ID, r.Response.Body)
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
}
