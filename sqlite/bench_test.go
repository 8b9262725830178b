package sqlite

import (
	"context"
	"testing"

	"boxoffice"
)

// BenchmarkHoldTicket is the hot path of the stampede: one Update that takes a ticket, records
// the hold and appends its event. Run it with -cpu to see how it behaves under contention.
func BenchmarkHoldTicket(b *testing.B) {
	db, err := Open(context.Background(), b.TempDir()+"/bench.db")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	s := testShow("gig", tier("ga", 1<<30))
	if err := db.Update(ctx, func(tx boxoffice.Tx) error { return tx.PutShow(ctx, s) }); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			err := db.Update(ctx, func(tx boxoffice.Tx) error {
				if _, ok, err := tx.AddTierCounts(ctx, "gig", "ga", 1, 0); err != nil || !ok {
					return err
				}
				h := testHold(boxoffice.NewID(boxoffice.PrefixHold, base), "a@x", base)
				if err := tx.InsertHold(ctx, h); err != nil {
					return err
				}
				return tx.AppendEvent(ctx, &boxoffice.Event{ID: boxoffice.NewID(boxoffice.PrefixEvent, base),
					Type: boxoffice.EventHoldCreated, Subject: h.ID, CreatedAt: base, Data: []byte(`{}`)})
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkGetShow is the read path: a View that reads a show and its tiers.
func BenchmarkGetShow(b *testing.B) {
	db, err := Open(context.Background(), b.TempDir()+"/bench.db")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	s := testShow("gig", tier("a", 10), tier("b", 10), tier("c", 10))
	if err := db.Update(ctx, func(tx boxoffice.Tx) error { return tx.PutShow(ctx, s) }); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := db.View(ctx, func(tx boxoffice.Tx) error {
				_, err := tx.GetShow(ctx, "gig")
				return err
			}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
