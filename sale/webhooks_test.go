package sale_test

import (
	"context"
	"errors"
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
	if w2.Secret != w.Secret || !w2.CreatedAt.Equal(w.CreatedAt) || !w2.UpdatedAt.After(w.UpdatedAt) ||
		w2.Status != boxoffice.WebhookEnabled || w2.DisabledReason != "" || len(w2.EventTypes) != len(boxoffice.EventTypes) {
		t.Fatalf("replaced endpoint %+v; was %+v", w2, w)
	}
	got, err := e.svc.GetWebhookEndpoint(ctx, "partner")
	if err != nil || got.Secret != w.Secret || got.Status != boxoffice.WebhookEnabled {
		t.Fatalf("get: %+v %v", got, err)
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
