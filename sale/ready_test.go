package sale_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"boxoffice"
)

// TestReadySaysWhenCommitsFail: a store that answers reads but refuses every commit (here a
// trigger on the probe's row stands in for a full disk) makes Ready fail with a reason, and
// Ready recovers once commits work again.
func TestReadySaysWhenCommitsFail(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	if err := e.svc.Ready(ctx); err != nil {
		t.Fatalf("a sound store: %v", err)
	}
	db, err := sql.Open("sqlite", e.dir+"/boxoffice.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		`CREATE TRIGGER health_full_insert BEFORE INSERT ON health BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
		`CREATE TRIGGER health_full_update BEFORE UPDATE ON health BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	// Ready probes the write at most once a second; within two it has seen the failure.
	var nr *boxoffice.NotReadyError
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = e.svc.Ready(ctx)
		if errors.As(err, &nr) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if nr == nil || nr.Reason != "the store does not commit writes" {
		t.Fatalf("Ready with commits failing: %v", err)
	}
	for _, q := range []string{`DROP TRIGGER health_full_insert`, `DROP TRIGGER health_full_update`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	deadline = time.Now().Add(5 * time.Second)
	for e.svc.Ready(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("Ready after commits work again: %v", e.svc.Ready(ctx))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
