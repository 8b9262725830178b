package storetest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"boxoffice"
)

// testRelayCheckpointAndInbox covers the async side's bookkeeping: a relay's checkpoint starts
// at 0, moves where it is set, and is per relay; an inbox records an event once per consumer.
func testRelayCheckpointAndInbox(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	view(t, db, func(tx boxoffice.Tx) error {
		if pos, err := tx.RelayCheckpoint(ctx, "nats"); err != nil || pos != 0 {
			t.Errorf("new checkpoint = %d, %v; want 0", pos, err)
		}
		return nil
	})
	update(t, db, func(tx boxoffice.Tx) error { return tx.SetRelayCheckpoint(ctx, "nats", 7) })
	update(t, db, func(tx boxoffice.Tx) error { return tx.SetRelayCheckpoint(ctx, "other", 3) })
	update(t, db, func(tx boxoffice.Tx) error { return tx.SetRelayCheckpoint(ctx, "nats", 12) })
	view(t, db, func(tx boxoffice.Tx) error {
		if pos, err := tx.RelayCheckpoint(ctx, "nats"); err != nil || pos != 12 {
			t.Errorf("checkpoint nats = %d, %v; want 12", pos, err)
		}
		if pos, err := tx.RelayCheckpoint(ctx, "other"); err != nil || pos != 3 {
			t.Errorf("checkpoint other = %d, %v; want 3", pos, err)
		}
		return nil
	})

	update(t, db, func(tx boxoffice.Tx) error { return tx.InsertInboxEvent(ctx, "email", "evt_1", at(0)) })
	update(t, db, func(tx boxoffice.Tx) error {
		wantCode(t, tx.InsertInboxEvent(ctx, "email", "evt_1", at(1)), boxoffice.ECONFLICT)
		// The conflict leaves the transaction usable, so a consumer can still commit.
		return tx.InsertInboxEvent(ctx, "webhook", "evt_1", at(1))
	})
	view(t, db, func(tx boxoffice.Tx) error {
		for _, c := range []struct {
			consumer, id string
			want         bool
		}{{"email", "evt_1", true}, {"webhook", "evt_1", true}, {"email", "evt_2", false}} {
			if got, err := tx.InboxHas(ctx, c.consumer, c.id); err != nil || got != c.want {
				t.Errorf("InboxHas(%s, %s) = %v, %v; want %v", c.consumer, c.id, got, err, c.want)
			}
		}
		// The batch form: only the consumer's own rows, only the ids asked for.
		got, err := tx.InboxApplied(ctx, "email", []string{"evt_2", "evt_1", "evt_9"})
		if err != nil || !slices.Equal(got, []string{"evt_1"}) {
			t.Errorf("InboxApplied(email, evt_2 evt_1 evt_9) = %v, %v; want [evt_1]", got, err)
		}
		if got, err := tx.InboxApplied(ctx, "other", []string{"evt_1"}); err != nil || len(got) != 0 {
			t.Errorf("InboxApplied(other, evt_1) = %v, %v; want none", got, err)
		}
		if got, err := tx.InboxApplied(ctx, "email", nil); err != nil || len(got) != 0 {
			t.Errorf("InboxApplied(email, none) = %v, %v; want none", got, err)
		}
		return nil
	})

	// A batch records every id once, skipping those recorded already (evt_1) or repeated in it
	// (evt_5), and leaves the transaction usable for what follows it.
	update(t, db, func(tx boxoffice.Tx) error {
		if err := tx.InsertInboxEvents(ctx, "email", []string{"evt_1", "evt_5", "evt_6", "evt_5"}, at(2)); err != nil {
			return err
		}
		if err := tx.InsertInboxEvents(ctx, "email", nil, at(2)); err != nil {
			return err
		}
		return tx.InsertInboxEvent(ctx, "email", "evt_7", at(2))
	})
	view(t, db, func(tx boxoffice.Tx) error {
		got, err := tx.InboxApplied(ctx, "email", []string{"evt_1", "evt_5", "evt_6", "evt_7", "evt_8"})
		slices.Sort(got)
		if err != nil || !slices.Equal(got, []string{"evt_1", "evt_5", "evt_6", "evt_7"}) {
			t.Errorf("after InsertInboxEvents, InboxApplied = %v, %v; want evt_1 evt_5 evt_6 evt_7", got, err)
		}
		if got, err := tx.InboxApplied(ctx, "webhook", []string{"evt_5", "evt_6"}); err != nil || len(got) != 0 {
			t.Errorf("InsertInboxEvents for email recorded %v (%v) for webhook", got, err)
		}
		return nil
	})

	// A failed transaction records nothing.
	err := db.Update(ctx, func(tx boxoffice.Tx) error {
		if err := tx.InsertInboxEvent(ctx, "email", "evt_3", at(2)); err != nil {
			return err
		}
		return errors.New("effect failed")
	})
	if err == nil {
		t.Fatal("Update returned nil for a failing fn")
	}
	view(t, db, func(tx boxoffice.Tx) error {
		if got, err := tx.InboxHas(ctx, "email", "evt_3"); err != nil || got {
			t.Errorf("rolled-back inbox row is there: %v, %v", got, err)
		}
		return nil
	})
}

// testInboxSweep: the sweep deletes rows applied before the cutoff, at most limit of them, and
// leaves younger rows alone.
func testInboxSweep(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	update(t, db, func(tx boxoffice.Tx) error {
		for i, id := range []string{"evt_a", "evt_b", "evt_c"} {
			if err := tx.InsertInboxEvent(ctx, "email", id, at(time.Duration(i)*time.Hour)); err != nil {
				return err
			}
		}
		return nil
	})
	sweep := func(before time.Time, limit int) int {
		var n int
		update(t, db, func(tx boxoffice.Tx) error {
			var err error
			n, err = tx.SweepInbox(ctx, before, limit)
			return err
		})
		return n
	}
	// evt_a and evt_b are older than 90 minutes; limit 1 takes one of them.
	if n := sweep(at(90*time.Minute), 1); n != 1 {
		t.Errorf("sweep with limit 1 deleted %d rows", n)
	}
	if n := sweep(at(90*time.Minute), 10); n != 1 {
		t.Errorf("second sweep deleted %d rows; want the 1 left before the cutoff", n)
	}
	view(t, db, func(tx boxoffice.Tx) error {
		for id, want := range map[string]bool{"evt_a": false, "evt_b": false, "evt_c": true} {
			if got, err := tx.InboxHas(ctx, "email", id); err != nil || got != want {
				t.Errorf("after sweep InboxHas(%s) = %v, %v; want %v", id, got, err, want)
			}
		}
		return nil
	})
}

// testWebhookEndpoints: put creates then replaces with every field kept as given, get and list
// return what was put, delete reports whether there was one.
func testWebhookEndpoints(t *testing.T, db boxoffice.Store) {
	ctx := context.Background()
	w := &boxoffice.WebhookEndpoint{ID: "partner", URL: "https://example.com/hook",
		EventTypes: []string{boxoffice.EventOrderConfirmed}, Secret: "whsec_c2VjcmV0",
		Status: boxoffice.WebhookEnabled, CreatedAt: at(0), UpdatedAt: at(0)}
	put := func(w *boxoffice.WebhookEndpoint) bool {
		var created bool
		update(t, db, func(tx boxoffice.Tx) error {
			var err error
			created, err = tx.PutWebhookEndpoint(ctx, w)
			return err
		})
		return created
	}
	if !put(w) {
		t.Error("first put: created = false")
	}
	other := *w
	other.ID, other.URL = "another", "https://example.org/in"
	put(&other)
	w2 := *w
	w2.URL, w2.EventTypes = "https://example.com/v2", []string{boxoffice.EventOrderCancelled, boxoffice.EventHoldCreated}
	w2.Status, w2.DisabledReason, w2.UpdatedAt = boxoffice.WebhookDisabled, "410 Gone", at(time.Minute)
	// A rotation's previous secret and its end round-trip too.
	prevEnd := at(24 * time.Hour)
	w2.Secret, w2.PreviousSecret, w2.PreviousSecretExpiresAt = "whsec_bmV3", w.Secret, &prevEnd
	if put(&w2) {
		t.Error("second put: created = true")
	}
	view(t, db, func(tx boxoffice.Tx) error {
		got, err := tx.GetWebhookEndpoint(ctx, "partner")
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, &w2) {
			t.Errorf("get = %+v; want %+v", got, w2)
		}
		list, err := tx.ListWebhookEndpoints(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 2 || list[0].ID != "another" || list[1].ID != "partner" {
			t.Errorf("list = %+v; want another, partner", list)
		}
		_, err = tx.GetWebhookEndpoint(ctx, "nobody")
		wantCode(t, err, boxoffice.ENOTFOUND)
		return nil
	})
	update(t, db, func(tx boxoffice.Tx) error {
		if ok, err := tx.DeleteWebhookEndpoint(ctx, "partner"); err != nil || !ok {
			t.Errorf("delete = %v, %v; want true", ok, err)
		}
		if ok, err := tx.DeleteWebhookEndpoint(ctx, "partner"); err != nil || ok {
			t.Errorf("delete again = %v, %v; want false", ok, err)
		}
		return nil
	})
	view(t, db, func(tx boxoffice.Tx) error {
		_, err := tx.GetWebhookEndpoint(ctx, "partner")
		wantCode(t, err, boxoffice.ENOTFOUND)
		return nil
	})
}
