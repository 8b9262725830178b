package storetest

import (
	"context"
	"errors"
	"testing"

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
