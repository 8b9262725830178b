package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/internal/checkfor"
	"boxoffice/internal/migrations"
	"boxoffice/postgres/pgtest"
	"boxoffice/storetest"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// openTest opens a store on a new database of the test server.
func openTest(t *testing.T) (*DB, string) {
	t.Helper()
	url := pgtest.Start(t)
	db, err := Open(context.Background(), url)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, url
}

// TestStore runs the behaviour every store shares. None of it makes transactions deadlock or
// fail to serialise: a retry would mean the store's locks are taken in an order that can cycle.
func TestStore(t *testing.T) {
	storetest.Exercise(t, func(t *testing.T) boxoffice.Store {
		db, _ := openTest(t)
		t.Cleanup(func() {
			if n := db.retries.Load(); n > 0 {
				t.Errorf("%d transactions ran again after a deadlock or serialization failure", n)
			}
		})
		return db
	})
}

// TestWaitRoom runs the waiting room's suite on PostgreSQL; a second pool on the same database
// stands for a restarted server or a second server sharing it.
func TestWaitRoom(t *testing.T) {
	storetest.ExerciseWaitRoom(t, func(t *testing.T) (boxoffice.Store, func() boxoffice.Store) {
		db, url := openTest(t)
		return db, func() boxoffice.Store {
			again, err := Open(t.Context(), url)
			if err != nil {
				t.Fatalf("Open again: %v", err)
			}
			t.Cleanup(func() { _ = again.Close() })
			return again
		}
	})
}

// base is a fixed time with sub-microsecond digits, which the store drops.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

func update(t *testing.T, db *DB, fn func(tx boxoffice.Tx) error) {
	t.Helper()
	if err := db.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func view(t *testing.T, db *DB, fn func(tx boxoffice.Tx) error) {
	t.Helper()
	if err := db.View(context.Background(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func putShow(t *testing.T, db *DB, id string, capacity int) {
	t.Helper()
	s := &boxoffice.Show{ID: id, Name: "Show " + id, StartsAt: base, HoldTTLSeconds: 600, CreatedAt: base, UpdatedAt: base,
		Tiers: []boxoffice.Tier{{ID: "ga", Name: "GA", Capacity: capacity, Price: boxoffice.Money{Amount: 5000, Currency: "EUR"}}}}
	update(t, db, func(tx boxoffice.Tx) error { return tx.PutShow(context.Background(), s) })
}

func testHold(id string) *boxoffice.Hold {
	return &boxoffice.Hold{ID: id, ShowID: "gig", TierID: "ga", Quantity: 1, Buyer: boxoffice.Buyer{Email: "a@x"},
		Status: boxoffice.HoldActive, ExpiresAt: base, CreatedAt: base, UpdatedAt: base}
}

func TestOpenMigrates(t *testing.T) {
	db, url := openTest(t)
	ctx := context.Background()
	ms, err := migrations.Load(migrationFS, "migrations/*.sql")
	if err != nil || len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("migrations() = %v, %v", ms, err)
	}
	var n, version int
	if err := db.pool.QueryRow(ctx, "SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &version); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || version != ms[len(ms)-1].Version {
		t.Errorf("schema_migrations has %d rows up to version %d, want %d up to %d", n, version, len(ms), ms[len(ms)-1].Version)
	}

	// Opening again applies nothing twice.
	db2, err := Open(ctx, url)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer db2.Close()
	if err := db2.pool.QueryRow(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != len(ms) {
		t.Errorf("after reopen schema_migrations has %d rows (%v), want %d", n, err, len(ms))
	}

	// A database migrated by a newer program is refused rather than written with an old schema.
	if _, err := db2.pool.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES (9999, '9999_future.sql')"); err != nil {
		t.Fatal(err)
	}
	if db3, err := Open(ctx, url); err == nil {
		_ = db3.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
}

// TestConcurrentOpenMigratesOnce starts several servers on one empty database at once: the
// advisory lock lets one migrate and the others find the schema done.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	url := pgtest.Start(t)
	ctx := context.Background()
	const n = 8
	dbs := make([]*DB, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errs[i] = Open(ctx, url)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		defer dbs[i].Close()
	}
	ms, _ := migrations.Load(migrationFS, "migrations/*.sql")
	var rows int
	if err := dbs[0].pool.QueryRow(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&rows); err != nil || rows != len(ms) {
		t.Errorf("schema_migrations has %d rows (%v), want %d", rows, err, len(ms))
	}
}

// TestZeroTimeRoundTrips: the zero time is stored and comes back as time.Time{} itself, and
// other times in UTC at microsecond precision.
func TestZeroTimeRoundTrips(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	r := &boxoffice.IdemRecord{ID: "idr_1", Scope: "s", Key: "k", Fingerprint: "f",
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6789, time.FixedZone("CET", 3600))}
	update(t, db, func(tx boxoffice.Tx) error { return tx.InsertIdemRecord(ctx, r) })
	view(t, db, func(tx boxoffice.Tx) error {
		got, err := tx.GetIdemRecord(ctx, "s", "k")
		if err != nil {
			return err
		}
		if got.LockedUntil != (time.Time{}) || got.ExpiresAt != (time.Time{}) {
			t.Errorf("zero times came back as %#v and %#v", got.LockedUntil, got.ExpiresAt)
		}
		want := time.Date(2026, 1, 2, 2, 4, 5, 6000, time.UTC)
		if got.CreatedAt != want {
			t.Errorf("CreatedAt = %#v, want %#v", got.CreatedAt, want)
		}
		return nil
	})
}

// TestStampedeEndsAtCapacity: 64 goroutines take one ticket at a time from a tier until none is
// left. Writers run concurrently on PostgreSQL; the conditional UPDATE must still let exactly
// capacity of them through.
func TestStampedeEndsAtCapacity(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	const (
		capacity   = 300
		goroutines = 64
	)
	putShow(t, db, "gig", capacity)
	var (
		mu   sync.Mutex
		wins int
		wg   sync.WaitGroup
	)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var ok bool
				err := db.Update(ctx, func(tx boxoffice.Tx) error {
					c, fits, err := tx.AddTierCounts(ctx, "gig", "ga", 1, 0)
					if err != nil {
						return err
					}
					if c.Held+c.Sold > c.Capacity {
						t.Errorf("oversold: %+v", c)
					}
					ok = fits
					return nil
				})
				if err != nil {
					t.Errorf("Update: %v", err)
					return
				}
				if !ok {
					return
				}
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var c boxoffice.TierCounts
	view(t, db, func(tx boxoffice.Tx) (err error) { c, err = tx.TierCounts(ctx, "gig", "ga", false); return err })
	if wins != capacity || c.Held != capacity || c.Version != capacity {
		t.Errorf("%d wins, counts %+v; want %d, full, version %d", wins, c, capacity, capacity)
	}
	if n := db.retries.Load(); n != 0 {
		t.Errorf("%d retries; a single conditional UPDATE never deadlocks", n)
	}
}

// TestLocksInUpdate shows the row locks the service relies on: in an Update, GetHold,
// GetIdemRecord and IdemRecordForOrder hold their row until the transaction ends, and
// TierCounts(forUpdate) its tier; a second Update reading the same row waits and then sees the
// first one's write. A View neither locks nor waits.
func TestLocksInUpdate(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	putShow(t, db, "gig", 10)
	rec := &boxoffice.IdemRecord{ID: "idr_1", Scope: "s", Key: "k", Fingerprint: "f", OrderID: "ord_1", CreatedAt: base, ExpiresAt: base}
	update(t, db, func(tx boxoffice.Tx) error {
		if err := tx.InsertHold(ctx, testHold("hld_1")); err != nil {
			return err
		}
		return tx.InsertIdemRecord(ctx, rec)
	})
	for _, c := range []struct {
		name  string
		read  func(tx boxoffice.Tx) (string, error) // reads the row and says what it saw
		write func(tx boxoffice.Tx) error           // changes what read sees
		want  string                                // what a reader after write sees
	}{
		{"TierCounts", func(tx boxoffice.Tx) (string, error) {
			c, err := tx.TierCounts(ctx, "gig", "ga", true)
			return fmt.Sprint(c.Held), err
		}, func(tx boxoffice.Tx) error {
			_, _, err := tx.AddTierCounts(ctx, "gig", "ga", 1, 0)
			return err
		}, "1"},
		{"GetHold", func(tx boxoffice.Tx) (string, error) {
			h, err := tx.GetHold(ctx, "hld_1")
			return string(h.Status), err
		}, func(tx boxoffice.Tx) error {
			_, err := tx.EndHold(ctx, "hld_1", boxoffice.HoldExpired, base)
			return err
		}, "expired"},
		{"GetIdemRecord", func(tx boxoffice.Tx) (string, error) {
			r, err := tx.GetIdemRecord(ctx, "s", "k")
			return r.HoldID, err
		}, func(tx boxoffice.Tx) error {
			r := *rec
			r.HoldID = "hld_a"
			return tx.UpdateIdemRecord(ctx, &r)
		}, "hld_a"},
	} {
		t.Run(c.name, func(t *testing.T) {
			locked := make(chan struct{})
			release := make(chan struct{})
			first := make(chan error, 1)
			go func() {
				first <- db.Update(ctx, func(tx boxoffice.Tx) error {
					if _, err := c.read(tx); err != nil {
						return err
					}
					close(locked)
					<-release
					return c.write(tx)
				})
			}()
			<-locked
			// A View reads the row at once, lock or not.
			view(t, db, func(tx boxoffice.Tx) error { _, err := c.read(tx); return err })
			second := make(chan string, 1)
			go func() {
				var saw string
				err := db.Update(ctx, func(tx boxoffice.Tx) (err error) { saw, err = c.read(tx); return err })
				if err != nil {
					t.Errorf("second Update: %v", err)
				}
				second <- saw
			}()
			select {
			case saw := <-second:
				t.Fatalf("the second Update read %q while the first held the lock", saw)
			case <-time.After(200 * time.Millisecond):
			}
			close(release)
			if err := <-first; err != nil {
				t.Fatalf("first Update: %v", err)
			}
			if saw := <-second; saw != c.want {
				t.Errorf("the second Update saw %q, want %q (the first one's write)", saw, c.want)
			}
		})
	}
}

// TestDeadlockIsRetried makes two Updates lock two rows in opposite orders. PostgreSQL aborts
// one of them with a deadlock; Update runs its fn again and both commit.
func TestDeadlockIsRetried(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	putShow(t, db, "a", 10)
	putShow(t, db, "b", 10)
	var once [2]sync.Once
	both := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for i, order := range [][2]string{{"a", "b"}, {"b", "a"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.Update(ctx, func(tx boxoffice.Tx) error {
				if _, _, err := tx.AddTierCounts(ctx, order[0], "ga", 1, 0); err != nil {
					return err
				}
				// Only the first attempts wait for each other, so that the retry goes through.
				once[i].Do(func() {
					both <- struct{}{}
					for len(both) < 2 {
						time.Sleep(time.Millisecond)
					}
				})
				_, _, err := tx.AddTierCounts(ctx, order[1], "ga", 1, 0)
				return err
			})
			if err != nil {
				t.Errorf("Update %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if n := db.retries.Load(); n < 1 {
		t.Errorf("%d retries, want at least 1", n)
	}
	view(t, db, func(tx boxoffice.Tx) error {
		for _, show := range []string{"a", "b"} {
			c, err := tx.TierCounts(ctx, show, "ga", false)
			if err != nil || c.Held != 2 {
				t.Errorf("show %s: %+v, %v; want held 2 (both transactions once)", show, c, err)
			}
		}
		return nil
	})
}

// TestFailedStatementAndSavepoint: a statement the server refuses aborts the transaction, which
// refuses to commit even if fn ignores the error; RollbackTo a savepoint taken before it makes
// the transaction usable again, as on SQLite.
func TestFailedStatementAndSavepoint(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	putShow(t, db, "gig", 10)
	// A write in a transaction's own SQL the store does not guard: a CHECK violation through
	// PutShow (a capacity below the counts).
	shrink := &boxoffice.Show{ID: "gig", Name: "x", StartsAt: base, CreatedAt: base, UpdatedAt: base,
		Tiers: []boxoffice.Tier{{ID: "ga", Name: "GA", Capacity: 1, Price: boxoffice.Money{Currency: "EUR"}}}}
	err := db.Update(ctx, func(tx boxoffice.Tx) error {
		if _, _, err := tx.AddTierCounts(ctx, "gig", "ga", 5, 0); err != nil {
			return err
		}
		if err := tx.PutShow(ctx, shrink); err == nil {
			t.Error("PutShow below the counts succeeded")
		}
		return nil // ignores the failure
	})
	if err == nil {
		t.Fatal("Update committed a transaction with a failed statement")
	}
	update(t, db, func(tx boxoffice.Tx) error {
		if _, _, err := tx.AddTierCounts(ctx, "gig", "ga", 5, 0); err != nil {
			return err
		}
		if err := tx.Savepoint(ctx, "before"); err != nil {
			return err
		}
		if err := tx.PutShow(ctx, shrink); err == nil {
			t.Error("PutShow below the counts succeeded")
		}
		if _, err := tx.GetHold(ctx, "hld_1"); boxoffice.ErrorCode(err) == boxoffice.ENOTFOUND {
			t.Error("a statement ran in an aborted transaction")
		}
		if err := tx.RollbackTo(ctx, "before"); err != nil {
			return err
		}
		if err := tx.ReleaseSavepoint(ctx, "before"); err != nil {
			return err
		}
		return tx.InsertHold(ctx, testHold("hld_1"))
	})
	view(t, db, func(tx boxoffice.Tx) error {
		c, err := tx.TierCounts(ctx, "gig", "ga", false)
		if err != nil || c.Held != 5 || c.Capacity != 10 {
			t.Errorf("counts %+v, %v; want held 5 of 10", c, err)
		}
		_, err = tx.GetHold(ctx, "hld_1")
		return err
	})
}

// TestViewCannotLockOrWrite: View is READ ONLY, so even the locking reads of an Update are plain
// reads there, and a write fails with PostgreSQL's read-only error.
func TestViewCannotLockOrWrite(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	putShow(t, db, "gig", 10)
	view(t, db, func(tx boxoffice.Tx) error {
		_, err := tx.TierCounts(ctx, "gig", "ga", true)
		return err
	})
	err := db.View(ctx, func(tx boxoffice.Tx) error {
		_, _, err := tx.AddTierCounts(ctx, "gig", "ga", 1, 0)
		return err
	})
	if err == nil {
		t.Fatal("a write in View succeeded")
	}
	if !isReadOnly(err) {
		t.Errorf("write in View: %v, want PostgreSQL's read-only transaction error", err)
	}
}

func isReadOnly(err error) bool {
	var pe interface{ SQLState() string }
	return errors.As(err, &pe) && pe.SQLState() == "25006"
}

// TestForEachPages walks more rows than one page holds, with fn using the transaction in
// between, which a streamed result would not allow on one connection.
type postgresTx = tx

func TestForEachPages(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	const n = 2*forEachPage + 7
	update(t, db, func(tx boxoffice.Tx) error {
		b := &pgx.Batch{}
		for i := range n {
			h := testHold(fmt.Sprintf("hld_%05d", i))
			b.Queue(sInsertHold, h.ID, h.ShowID, h.TierID, h.Quantity, h.Buyer.Email, string(h.Status), h.ExpiresAt, h.CreatedAt, h.UpdatedAt, h.APIKeyID)
		}
		return tx.(*postgresTx).batch(ctx, b)
	})
	view(t, db, func(tx boxoffice.Tx) error {
		seen, last := 0, ""
		err := tx.ForEachHold(ctx, func(h *boxoffice.Hold) error {
			if h.ID <= last {
				t.Fatalf("hold %s after %s", h.ID, last)
			}
			last = h.ID
			seen++
			_, err := tx.GetHold(ctx, h.ID)
			return err
		})
		if err != nil || seen != n {
			t.Errorf("ForEachHold saw %d holds (%v), want %d", seen, err, n)
		}
		return nil
	})
}

// releaseAfterRefusal is a pgx tracer that, the first time the conditional UPDATE of
// AddTierCounts changes no row, runs release before the store's next statement.
type releaseAfterRefusal struct {
	once    sync.Once
	release func()
	// armed is set once the store is open: a migration's UPDATE of no rows is no refusal.
	armed atomic.Bool
}

func (r *releaseAfterRefusal) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (r *releaseAfterRefusal) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if data.Err == nil && data.CommandTag.String() == "UPDATE 0" && r.armed.Load() {
		r.once.Do(r.release)
	}
}

// TestRefusalIsExplainedByItsCounts: a refused AddTierCounts returns counts that do not fit the
// change, even when tickets came back between the refused UPDATE and the read of the counts.
// Counts that fit would make a sold-out answer that no moment of the tier explains (the
// conformance suite's linearizability check caught that on PostgreSQL).
func TestRefusalIsExplainedByItsCounts(t *testing.T) {
	url := pgtest.Start(t)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	var db *DB
	tracer := &releaseAfterRefusal{release: func() {
		// Another transaction gives one ticket back and commits, in between.
		if err := db.Update(ctx, func(tx boxoffice.Tx) error {
			_, _, err := tx.AddTierCounts(ctx, "gig", "ga", -1, 0)
			return err
		}); err != nil {
			t.Errorf("release: %v", err)
		}
	}}
	cfg.ConnConfig.Tracer = tracer
	db, err = open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tracer.armed.Store(true)
	putShow(t, db, "gig", 2)
	update(t, db, func(tx boxoffice.Tx) error {
		_, _, err := tx.AddTierCounts(ctx, "gig", "ga", 2, 0)
		return err
	})
	update(t, db, func(tx boxoffice.Tx) error {
		// A first statement, so that the UPDATE runs on its own rather than in BEGIN's pipeline
		// (the tracer sees statements, not pipelines).
		if _, err := tx.TierCounts(ctx, "gig", "ga", false); err != nil {
			return err
		}
		c, ok, err := tx.AddTierCounts(ctx, "gig", "ga", 1, 0)
		if err != nil {
			return err
		}
		if !ok && fits(c, 1, 0) {
			t.Errorf("refused with counts %+v, which have room for the ticket", c)
		}
		if !ok {
			t.Errorf("refused with %+v, want the ticket given back in between taken", c)
		}
		return nil
	})
	var released bool
	tracer.once.Do(func() { released = true })
	if released {
		t.Fatal("the tracer never saw the refused UPDATE; the test tests nothing")
	}
}

// TestWebhookWildcardMigration: a database in which ["*"] was written as the six types of then
// (in any order) opens with those endpoints subscribed to ["*"], so they get the types added
// later; every other endpoint keeps its list.
func TestWebhookWildcardMigration(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	// What a server from before the stored wildcard wrote for ["*"]: the six types of its version.
	old := []string{"hold.created", "hold.released", "hold.expired", "order.confirmed", "order.payment_failed", "order.cancelled"}
	reordered := slices.Clone(old)
	slices.Reverse(reordered)
	before := map[string][]string{
		"expanded": old, "reordered": reordered, "some": {"order.confirmed", "order.cancelled"}, "five": old[:5], "all": {"*"},
	}
	want := map[string][]string{
		"expanded": {"*"}, "reordered": {"*"}, "some": before["some"], "five": before["five"], "all": {"*"},
	}
	if err := db.Update(ctx, func(tx boxoffice.Tx) error {
		for id, types := range before {
			w := &boxoffice.WebhookEndpoint{ID: id, URL: "https://example.com/" + id, EventTypes: types,
				Secret: "whsec_c2VjcmV0", Status: boxoffice.WebhookEnabled, CreatedAt: base, UpdatedAt: base}
			if _, err := tx.PutWebhookEndpoint(ctx, w); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// These rows as a server before 0010 left them; 0010 then runs on them as an upgrade runs it.
	// (Its SQL is run by hand: the schema has moved on since, so the database cannot be turned
	// back into one at version 9 and opened again.)
	ms, err := migrations.Load(migrationFS, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	applied := false
	for _, m := range ms {
		if m.Version == 10 {
			if _, err := db.pool.Exec(ctx, m.SQL); err != nil {
				t.Fatalf("apply %s: %v", m.Name, err)
			}
			applied = true
		}
	}
	if !applied {
		t.Fatal("no migration 10")
	}
	if err := db.View(ctx, func(tx boxoffice.Tx) error {
		for id, types := range want {
			w, err := tx.GetWebhookEndpoint(ctx, id)
			if err != nil {
				return err
			}
			if !slices.Equal(w.EventTypes, types) {
				t.Errorf("%s: event types %q after the migration, want %q", id, w.EventTypes, types)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestEarlyAnalysis: a table the sale fills is analyzed by the store once it has rows, long
// before autovacuum's first nap ends, and its statements are planned from those statistics: the
// inbox check looks each id up in the key instead of reading the consumer's whole inbox, which
// is the plan an empty table's statistics had given it. A table still empty is left alone.
func TestEarlyAnalysis(t *testing.T) {
	db, url := openTest(t)
	ctx := t.Context()
	ids := make([]string, 3000)
	for i := range ids {
		ids[i] = fmt.Sprintf("evt_early_%05d", i)
	}
	if err := db.Update(ctx, func(tx boxoffice.Tx) error {
		return tx.InsertInboxEvents(ctx, "email", ids, time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	conn := statsConn(t, url)
	analyzed := func(table string) bool { return tableStat[bool](t, conn, "last_analyze IS NOT NULL", table) }
	checkfor.Until(t, 30*time.Second, 100*time.Millisecond, "the store analyzes inbox, 3,000 rows in", func() bool { return analyzed("inbox") })
	if analyzed("seats") {
		t.Error("the empty seats table was analyzed")
	}
	// Each table's ANALYZE names columns the table has (a wrong one would fail, and leave that
	// table to autovacuum without a word above debug).
	for table := range growingTables {
		if _, err := conn.Exec(ctx, analyzeStatement(table)); err != nil {
			t.Errorf("%s: %v", analyzeStatement(table), err)
		}
	}
	// The plan a connection caches for the statement, as the store runs it prepared.
	if _, err := conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan; PREPARE applied(text, text[]) AS "+sInboxApplied); err != nil {
		t.Fatal(err)
	}
	var plan string
	if err := conn.QueryRow(ctx, "EXPLAIN (FORMAT JSON) EXECUTE applied('email', '{"+strings.Join(ids[:20], ",")+"}')",
		pgx.QueryExecModeSimpleProtocol).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(plan, `"Filter"`) || !strings.Contains(plan, "event_id = ANY") {
		t.Errorf("the inbox check filters the consumer's rows instead of looking the ids up: %s", plan)
	}
}

// TestAdmissionReadsOnlyTheHead: each admission reads the queue's head through its index and
// updates those entries through the key, however long the queue and whatever plan the statement
// has cached. It had hash-joined the whole queue instead (a sequential scan of it at every tick
// of the admitter, 12 ms a tick at 50,000 entries), in the generic plan a prepared statement
// takes after five runs and whenever the head was big against the table.
func TestAdmissionReadsOnlyTheHead(t *testing.T) {
	db, url := openTest(t)
	ctx := t.Context()
	opens := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	if err := db.Update(ctx, func(tx boxoffice.Tx) error {
		return tx.PutShow(ctx, &boxoffice.Show{ID: "s", Name: "S", StartsAt: opens.Add(48 * time.Hour), HoldTTLSeconds: 600,
			Tiers:     []boxoffice.Tier{{ID: "ga", Name: "GA", Capacity: 100, Price: boxoffice.Money{Amount: 100, Currency: "EUR"}}},
			CreatedAt: opens, UpdatedAt: opens})
	}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.PutWaitRoom(ctx, &boxoffice.WaitRoom{ShowID: "s", OpensAt: opens, AdmitPerSecond: 1000,
		AdmissionTTLSeconds: 300, UpdatedAt: opens}); err != nil {
		t.Fatal(err)
	}
	for b := range 20 {
		joins := make([]boxoffice.QueueJoin, 1000)
		for i := range joins {
			joins[i] = boxoffice.QueueJoin{ShowID: "s", Identity: fmt.Sprintf("b%d-%d@example.com", b, i), At: opens.Add(time.Minute)}
		}
		if _, err := db.JoinQueue(ctx, joins); err != nil {
			t.Fatal(err)
		}
	}
	conn := statsConn(t, url)
	if _, err := conn.Exec(ctx, "ANALYZE queue_entries"); err != nil { // as a running sale's would be
		t.Fatal(err)
	}
	// The backends report their counts within seconds: each count is read once it shows what
	// was done (the joins' inserts, then the admissions' updates), so that the scans counted
	// are the admissions' alone.
	stats := func() (seqScans, inserted, updated int64) {
		if _, err := conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()"); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, `SELECT seq_scan, n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE relname = 'queue_entries'`).Scan(&seqScans, &inserted, &updated); err != nil {
			t.Fatal(err)
		}
		return seqScans, inserted, updated
	}
	settled := func(done func(inserted, updated int64) bool) (seqScans, updated int64) {
		t.Helper()
		checkfor.CheckFor(t, 30*time.Second, 200*time.Millisecond, func() error {
			var ins int64
			if seqScans, ins, updated = stats(); done(ins, updated) {
				return nil
			}
			return fmt.Errorf("queue_entries' counts not reported yet: %d inserted, %d updated", ins, updated)
		})
		return seqScans, updated
	}
	seq0, upd0 := settled(func(ins, _ int64) bool { return ins >= 20000 })
	now, admitted := time.Now(), int64(0)
	for range 30 { // past the five runs after which a prepared statement may take its generic plan
		now = now.Add(100 * time.Millisecond)
		n, err := db.AdmitQueue(ctx, "s", now, -1)
		if err != nil || n == 0 {
			t.Fatalf("AdmitQueue: %d, %v", n, err)
		}
		admitted += int64(n)
	}
	seq, _ := settled(func(_, upd int64) bool { return upd-upd0 >= admitted })
	if seq != seq0 {
		t.Errorf("%d sequential scans of the queue in %d admissions of %d entries from a queue of 20,000", seq-seq0, 30, admitted)
	}
}

// TestChurnVacuum: once claims have left churnVacuumDead dead row versions in seats, the store
// vacuums the table without waiting for autovacuum, so that the free-seat index no longer holds
// the claimed seats' entries.
func TestChurnVacuum(t *testing.T) {
	db, url := openTest(t)
	ctx := t.Context()
	show := &boxoffice.Show{ID: "gig", Name: "Gig", StartsAt: time.Now().Add(24 * time.Hour), HoldTTLSeconds: 600,
		Tiers:     []boxoffice.Tier{{ID: "ga", Name: "GA", Capacity: 2000, Price: boxoffice.Money{Amount: 100, Currency: "EUR"}}},
		CreatedAt: time.Now(), UpdatedAt: time.Now()}
	seats := make([]boxoffice.Seat, 2000)
	for i := range seats {
		label := fmt.Sprint(i + 1)
		seats[i] = boxoffice.Seat{ID: boxoffice.SeatID("A", "1", label), Section: "A", Row: "1", Label: label, Rank: i, Pos: i}
	}
	if err := db.Update(ctx, func(tx boxoffice.Tx) error {
		if err := tx.PutShow(ctx, show); err != nil {
			return err
		}
		return tx.PutSeats(ctx, "gig", "ga", seats)
	}); err != nil {
		t.Fatal(err)
	}
	conn := statsConn(t, url)
	vacuums := func() int64 { return tableStat[int64](t, conn, "vacuum_count", "seats") }
	before := vacuums()
	// One claim a seat, each in a transaction of its own, as best-available holds come.
	for i := range 2 * churnVacuumDead {
		if err := db.Update(ctx, func(tx boxoffice.Tx) error {
			n, err := tx.ClaimSeats(ctx, "gig", "ga", fmt.Sprintf("hld_%d", i), []string{seats[i].ID})
			if err == nil && n != 1 {
				err = fmt.Errorf("claimed %d seats of 1", n)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	checkfor.Until(t, 30*time.Second, 100*time.Millisecond, "the store vacuums seats after 1,000 claims", func() bool {
		return vacuums() > before
	})
}

// statsConn is a connection of the test's own to url, for reading the tables' statistics.
func statsConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// tableStat reads expr over table's row of pg_stat_user_tables.
func tableStat[T any](t *testing.T, conn *pgx.Conn, expr, table string) T {
	t.Helper()
	var v T
	if err := conn.QueryRow(t.Context(), `SELECT `+expr+` FROM pg_stat_user_tables WHERE relname = $1`, table).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}
