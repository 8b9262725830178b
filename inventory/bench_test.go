package inventory_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/inventory"
	"boxoffice/sqlite"
)

// BenchmarkReserve is one strategy's reservation with a minimal write (one hold row), on SQLite
// with durable commits, from many goroutines at once: the hot path of an on-sale, per strategy.
// redis-lock (boxoffice/redis) needs a Redis and is measured by `boxoffice bench --compare` instead.
func BenchmarkReserve(b *testing.B) {
	for _, name := range inventory.Names(nil) {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			st, err := sqlite.Open(ctx, b.TempDir()+"/bench.db")
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			inv, err := inventory.New(name, st, inventory.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer inv.Close()
			show := &boxoffice.Show{ID: "s", Name: "S", HoldTTLSeconds: 600, Tiers: []boxoffice.Tier{{ID: "ga", Name: "GA", Capacity: 1 << 30, Price: boxoffice.Money{Amount: 1, Currency: "EUR"}}}}
			if err := inv.Reconfigure(ctx, "s", func(tx boxoffice.Tx) error { return tx.PutShow(ctx, show) }); err != nil {
				b.Fatal(err)
			}
			var n atomicCounter
			now := time.Now().UTC()
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprintf("hld_%d", n.next())
					err := inv.Apply(ctx, boxoffice.CountChange{ShowID: "s", TierID: "ga", Held: 1}, func(tx boxoffice.Tx) error {
						return tx.InsertHold(ctx, &boxoffice.Hold{ID: id, ShowID: "s", TierID: "ga", Quantity: 1, Buyer: boxoffice.Buyer{Email: "a@example.com"},
							Status: boxoffice.HoldActive, ExpiresAt: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now})
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

type atomicCounter struct{ v atomic.Int64 }

func (c *atomicCounter) next() int64 { return c.v.Add(1) }
