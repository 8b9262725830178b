package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"boxoffice"
	"boxoffice/internal/migrations"
)

// base is a fixed time with sub-microsecond digits, which the store drops.
var base = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

func openTest(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "box.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db, path
}

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

func testShow(id string, tiers ...boxoffice.Tier) *boxoffice.Show {
	return &boxoffice.Show{
		ID: id, Name: "Show " + id, StartsAt: base.Add(30 * 24 * time.Hour), HoldTTLSeconds: 600,
		Tiers: tiers, CreatedAt: base, UpdatedAt: base,
	}
}

func tier(id string, capacity int) boxoffice.Tier {
	return boxoffice.Tier{ID: id, Name: "Tier " + id, Capacity: capacity, Price: boxoffice.Money{Amount: 5000, Currency: "EUR"}}
}

func putShow(t *testing.T, db *DB, s *boxoffice.Show) {
	t.Helper()
	update(t, db, func(tx boxoffice.Tx) error { return tx.PutShow(context.Background(), s) })
}

func addCounts(t *testing.T, db *DB, showID, tierID string, dHeld, dSold int) (c boxoffice.TierCounts, ok bool) {
	t.Helper()
	update(t, db, func(tx boxoffice.Tx) error {
		var err error
		c, ok, err = tx.AddTierCounts(context.Background(), showID, tierID, dHeld, dSold)
		return err
	})
	return c, ok
}

func getShow(t *testing.T, db *DB, id string) *boxoffice.Show {
	t.Helper()
	var s *boxoffice.Show
	view(t, db, func(tx boxoffice.Tx) error {
		var err error
		s, err = tx.GetShow(context.Background(), id)
		return err
	})
	return s
}

func TestOpenConfiguresAndMigrates(t *testing.T) {
	db, path := openTest(t)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file: %v", err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		pragma string
		want   string
	}{{"journal_mode", "wal"}, {"synchronous", "1"}, {"foreign_keys", "1"}, {"busy_timeout", "10000"},
		{"temp_store", "2"}, {"cache_size", "-8192"}} {
		var got string
		if err := db.w.QueryRowContext(ctx, "PRAGMA "+c.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", c.pragma, err)
		}
		if got != c.want {
			t.Errorf("writer PRAGMA %s = %s, want %s", c.pragma, got, c.want)
		}
	}
	var queryOnly int
	if err := db.r.QueryRowContext(ctx, "PRAGMA query_only").Scan(&queryOnly); err != nil || queryOnly != 1 {
		t.Errorf("reader query_only = %d (%v), want 1", queryOnly, err)
	}
	ms, err := migrations.Load(migrationFS, "migrations/*.sql")
	if err != nil || len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("migrations() = %v, %v", ms, err)
	}
	var n, version int
	if err := db.w.QueryRowContext(ctx, "SELECT COUNT(*), MAX(version) FROM schema_migrations").Scan(&n, &version); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) || version != ms[len(ms)-1].Version {
		t.Errorf("schema_migrations has %d rows up to version %d, want %d up to %d", n, version, len(ms), ms[len(ms)-1].Version)
	}

	// Opening again applies nothing twice.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if err := db2.w.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != len(ms) {
		t.Errorf("after reopen schema_migrations has %d rows (%v), want %d", n, err, len(ms))
	}

	// A file migrated by a newer program is refused rather than written with an old schema.
	if _, err := db2.w.ExecContext(ctx, "INSERT INTO schema_migrations VALUES (9999, '9999_future.sql', 0)"); err != nil {
		t.Fatal(err)
	}
	if err := db2.Close(); err != nil {
		t.Fatal(err)
	}
	if db3, err := Open(ctx, path); err == nil {
		_ = db3.Close()
		t.Fatal("Open of a newer schema succeeded")
	}
}

func testHold(id, email string, expiresAt time.Time) *boxoffice.Hold {
	return &boxoffice.Hold{
		ID: id, ShowID: "gig", TierID: "ga", Quantity: 2, Buyer: boxoffice.Buyer{Email: email},
		Status: boxoffice.HoldActive, ExpiresAt: expiresAt, CreatedAt: base, UpdatedAt: base,
	}
}

func TestDataSurvivesReopen(t *testing.T) {
	// A path with characters that mean something in a URI must still name this very file.
	path := filepath.Join(t.TempDir(), "a dir?with#odd%20chars", "box.db")
	ctx := context.Background()
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file not at its path: %v", err)
	}
	putShow(t, db, testShow("gig", tier("ga", 10)))
	addCounts(t, db, "gig", "ga", 2, 1)
	update(t, db, func(tx boxoffice.Tx) error {
		if err := tx.InsertHold(ctx, testHold("hld_1", "a@x", base)); err != nil {
			return err
		}
		return tx.AppendEvent(ctx, &boxoffice.Event{ID: "evt_1", Type: boxoffice.EventHoldCreated, Subject: "hld_1", CreatedAt: base})
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := getShow(t, db, "gig")
	if len(s.Tiers) != 1 || s.Tiers[0].Held != 2 || s.Tiers[0].Sold != 1 {
		t.Errorf("show after reopen = %+v", s)
	}
	update(t, db, func(tx boxoffice.Tx) error {
		if _, err := tx.GetHold(ctx, "hld_1"); err != nil {
			return err
		}
		e := &boxoffice.Event{ID: "evt_2", Type: boxoffice.EventHoldReleased, Subject: "hld_1", CreatedAt: base}
		if err := tx.AppendEvent(ctx, e); err != nil {
			return err
		}
		if e.Seq != 2 || e.Position != 2 {
			t.Errorf("event after reopen seq %d position %d, want 2 and 2", e.Seq, e.Position)
		}
		return nil
	})
}

func TestQueryPlansUseIndexes(t *testing.T) {
	db, _ := openTest(t)
	for id, wantIndex := range map[stmtID]string{
		sDueHolds:           "orders_live_hold",
		sNextHoldExpiry:     "holds_status_expires_at",
		sBuyerTickets:       "holds_show_buyer",
		sLiveOrderForHold:   "orders_live_hold",
		sPendingOrders:      "orders_status_id",
		sCountOrders:        "orders_status_id",
		sAvailableSeats:     "seats_free",
		sFreeSeats:          "seats_hold",
		sClaimSeats:         "PRIMARY KEY",
		sSeatByID:           "PRIMARY KEY",
		sListShowOrders:     "orders_show_id",
		sAnswerIdemForOrder: "idempotency_records_order_id",
	} {
		plan := explain(t, db, stmtSQL[id])
		found := false
		for _, p := range plan {
			if bytes.Contains([]byte(p), []byte(wantIndex)) {
				found = true
			}
			if bytes.Contains([]byte(p), []byte("TEMP B-TREE")) {
				t.Errorf("statement %d sorts: %v", id, plan)
			}
		}
		if !found {
			t.Errorf("statement %d does not use %s: %v", id, wantIndex, plan)
		}
	}
}

// TestShoppersQueryUsesIndexes: the automatic admitter's count of shoppers, run every tick,
// reads the admitted entries through their partial index and probes each one's holds by index.
func TestShoppersQueryUsesIndexes(t *testing.T) {
	db, _ := openTest(t)
	plan := strings.Join(explain(t, db, shoppersSQL), "\n")
	// "<expr>=?" is the probe by lower(buyer_email): without it each probe reads every hold of
	// the show.
	for _, want := range []string{"queue_entries_admitted (show_id=? AND admitted_at>?)", "holds_show_buyer (show_id=? AND <expr>=?)"} {
		if !strings.Contains(plan, want) {
			t.Errorf("the shoppers query does not use %s:\n%s", want, plan)
		}
	}
}

// explain returns the query plan of q, its parameters all null.
func explain(t *testing.T, db *DB, q string) []string {
	t.Helper()
	args := make([]any, countParams(q))
	rows, err := db.w.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatalf("explain %s: %v", q, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var a, b, c int
		var detail string
		if err := rows.Scan(&a, &b, &c, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return plan
}

// countParams counts the distinct ? parameters of q (numbered ones by their highest number).
func countParams(q string) int {
	n, highest := 0, 0
	for i := 0; i < len(q); i++ {
		if q[i] != '?' {
			continue
		}
		j := i + 1
		num := 0
		for j < len(q) && q[j] >= '0' && q[j] <= '9' {
			num = num*10 + int(q[j]-'0')
			j++
		}
		if j == i+1 {
			n++
		} else if num > highest {
			highest = num
		}
	}
	return max(n, highest)
}

// TestChannelsMigrationKeepsOldRows: a store written before sales channels (schema 0004) opens
// with its holds, orders and keys intact; the old holds and orders belong to no channel (a
// channel's list does not show them, the unfiltered one does) and the old keys are live, unlabeled
// and never used.
func TestChannelsMigrationKeepsOldRows(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := migrations.Load(migrationFS, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	stmts := []string{`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL,
		applied_at INTEGER NOT NULL) STRICT`}
	for _, m := range ms {
		if m.Version <= 4 {
			stmts = append(stmts, m.SQL, fmt.Sprintf(`INSERT INTO schema_migrations VALUES (%d, '%s', 0)`, m.Version, m.Name))
		}
	}
	stmts = append(stmts,
		`INSERT INTO holds (id, show_id, tier_id, quantity, buyer_email, status, expires_at, created_at, updated_at)
			VALUES ('hld_old', 'gig', 'ga', 1, 'a@x', 'confirmed', 1, 1, 1)`,
		`INSERT INTO orders (id, status, show_id, tier_id, hold_id, quantity, amount, currency, buyer_email, tickets,
			payment_token, charge_id, refund_id, release_on_failure, created_at, updated_at)
			VALUES ('ord_old', 'confirmed', 'gig', 'ga', 'hld_old', 1, 100, 'EUR', 'a@x', '[]', 'tok_ok', 'ch_1', '', 0, 1, 1)`,
		`INSERT INTO api_keys (id, role, hash, created_at) VALUES ('key_old', 'client', 'h', 1)`)
	for _, s := range stmts {
		if _, err := raw.ExecContext(ctx, s); err != nil {
			t.Fatalf("%.60s: %v", s, err)
		}
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}

	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	view(t, db, func(tx boxoffice.Tx) error {
		h, err := tx.GetHold(ctx, "hld_old")
		if err != nil || h.APIKeyID != "" {
			t.Errorf("old hold: %+v %v; want no owner", h, err)
		}
		all, err := tx.ListOrders(ctx, boxoffice.OrderFilter{}, "", 10)
		if err != nil || len(all) != 1 || all[0].APIKeyID != "" {
			t.Errorf("every order: %v %v; want the old one without owner", all, err)
		}
		mine, err := tx.ListOrders(ctx, boxoffice.OrderFilter{APIKeyID: "key_old"}, "", 10)
		if err != nil || len(mine) != 0 {
			t.Errorf("a channel's orders: %v %v; want none", mine, err)
		}
		k, err := tx.APIKeyByHash(ctx, "h")
		if err != nil || k.Label != "" || k.LastUsedAt != nil || k.RevokedAt != nil {
			t.Errorf("old key: %+v %v; want live, unlabeled, never used", k, err)
		}
		return nil
	})
}

// oldAllTypes is what a server from before the stored wildcard wrote for an endpoint subscribed
// to ["*"]: the six event types of its version, in their order.
var oldAllTypes = []string{"hold.created", "hold.released", "hold.expired", "order.confirmed", "order.payment_failed", "order.cancelled"}

// TestWebhookWildcardMigration: a store in which ["*"] was written as the six types of then (in
// any order) opens with those endpoints subscribed to ["*"], so they get the types added later;
// every other endpoint keeps its list.
func TestWebhookWildcardMigration(t *testing.T) {
	ctx := context.Background()
	db, _ := openTest(t)
	want := map[string][]string{
		"expanded": {"*"}, "reordered": {"*"}, "some": {"order.confirmed", "order.cancelled"},
		"five": oldAllTypes[:5], "all": {"*"},
	}
	reordered := slices.Clone(oldAllTypes)
	slices.Reverse(reordered)
	before := map[string][]string{
		"expanded": oldAllTypes, "reordered": reordered, "some": want["some"],
		"five": want["five"], "all": {"*"},
	}
	update(t, db, func(tx boxoffice.Tx) error {
		for id, types := range before {
			w := &boxoffice.WebhookEndpoint{ID: id, URL: "https://example.com/" + id, EventTypes: types,
				Secret: "whsec_c2VjcmV0", Status: boxoffice.WebhookEnabled, CreatedAt: base, UpdatedAt: base}
			if _, err := tx.PutWebhookEndpoint(ctx, w); err != nil {
				return err
			}
		}
		return nil
	})
	// These rows as a server before 0010 left them; 0010 then runs on them as an upgrade runs it.
	// (Its SQL is run by hand: the schema has moved on since, so the file cannot be turned back
	// into one at version 9 and opened again.)
	applyMigration(t, db, 10)
	view(t, db, func(tx boxoffice.Tx) error {
		for id, types := range want {
			w, err := tx.GetWebhookEndpoint(ctx, id)
			if err != nil {
				return err
			}
			if !slices.Equal(w.EventTypes, types) || !w.UpdatedAt.Equal(base.Truncate(time.Microsecond)) {
				t.Errorf("%s: event types %q (updated %v) after the migration, want %q", id, w.EventTypes, w.UpdatedAt, types)
			}
		}
		return nil
	})
}

// applyMigration runs the SQL of one migration on db, as migrate does.
func applyMigration(t *testing.T, db *DB, version int) {
	t.Helper()
	ms, err := migrations.Load(migrationFS, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Version == version {
			if _, err := db.w.ExecContext(context.Background(), m.SQL); err != nil {
				t.Fatalf("apply %s: %v", m.Name, err)
			}
			return
		}
	}
	t.Fatalf("no migration %d", version)
}
