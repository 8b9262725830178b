package sqlite

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"boxoffice"
)

// TestWALIsBounded: while a reader holds an old snapshot, checkpoints cannot start the WAL over
// and it grows past its limit; once the reader is gone, the writer truncates it back under the
// limit, where ordinary checkpoints would only have reused the grown file.
func TestWALIsBounded(t *testing.T) {
	db, _ := openTest(t)
	const limit = 256 << 10
	db.walb.limit = limit
	ctx := context.Background()
	write := func(from, n int) {
		t.Helper()
		pad := strings.Repeat("x", 200)
		for i := from; i < from+n; i++ {
			err := db.Update(ctx, func(tx boxoffice.Tx) error {
				return tx.InsertInboxEvent(ctx, "test", fmt.Sprintf("evt_%06d_%s", i, pad), time.Now())
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	walSize := func() int64 {
		st, err := os.Stat(db.path + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	hold, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.View(ctx, func(tx boxoffice.Tx) error {
			if _, err := tx.InboxHas(ctx, "test", "nothing"); err != nil {
				return err
			}
			close(hold)
			<-release
			return nil
		})
	}()
	<-hold
	write(0, 3000)
	if size := walSize(); size <= limit {
		t.Fatalf("the WAL stayed at %d bytes under a reader; the test needs it past %d", size, limit)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * walRetryAfter)
	for i := 3000; walSize() > limit; i += 10 {
		if time.Now().After(deadline) {
			t.Fatalf("the WAL is still %d bytes, past its limit of %d", walSize(), limit)
		}
		write(i, 10)
		time.Sleep(50 * time.Millisecond)
	}
}
