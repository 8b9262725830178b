package postgres

import (
	"context"
	"testing"

	"boxoffice"
	"boxoffice/postgres/pgtest"
)

// openBench opens a store on a new database of the test server.
func openBench(b *testing.B) *DB {
	db, err := Open(context.Background(), pgtest.Start(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	return db
}

// BenchmarkHoldTicket is the hot path of the stampede: one Update that takes a ticket, records
// the hold and appends its event, all on one tier. Run it with -cpu to see how it behaves under
// contention; it is the same as the SQLite store's benchmark of that name.
func BenchmarkHoldTicket(b *testing.B) {
	db := openBench(b)
	ctx := context.Background()
	s := &boxoffice.Show{ID: "gig", Name: "Gig", StartsAt: base, HoldTTLSeconds: 600, CreatedAt: base, UpdatedAt: base,
		Tiers: []boxoffice.Tier{{ID: "ga", Name: "GA", Capacity: 1 << 30, Price: boxoffice.Money{Amount: 5000, Currency: "EUR"}}}}
	if err := db.Update(ctx, func(tx boxoffice.Tx) error { return tx.PutShow(ctx, s) }); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			err := db.Update(ctx, func(tx boxoffice.Tx) error {
				if _, ok, err := tx.AddTierCounts(ctx, "gig", "ga", 1, 0); err != nil || !ok {
					return err
				}
				h := testHold(boxoffice.NewID(boxoffice.PrefixHold, base))
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
	db := openBench(b)
	ctx := context.Background()
	tier := func(id string) boxoffice.Tier {
		return boxoffice.Tier{ID: id, Name: id, Capacity: 10, Price: boxoffice.Money{Amount: 5000, Currency: "EUR"}}
	}
	s := &boxoffice.Show{ID: "gig", Name: "Gig", StartsAt: base, HoldTTLSeconds: 600, CreatedAt: base, UpdatedAt: base,
		Tiers: []boxoffice.Tier{tier("a"), tier("b"), tier("c")}}
	if err := db.Update(ctx, func(tx boxoffice.Tx) error { return tx.PutShow(ctx, s) }); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
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
