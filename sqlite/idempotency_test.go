package sqlite

import (
	"context"
	"fmt"
	"testing"
	"time"

	"boxoffice"
)

func idemRecord(scope, key, fingerprint string) *boxoffice.IdemRecord {
	return &boxoffice.IdemRecord{ID: boxoffice.NewID(boxoffice.PrefixRecord, base), Scope: scope, Key: key,
		Fingerprint: fingerprint, Response: &boxoffice.Response{Status: 409, Body: []byte(`{"code":"sold_out"}` + "\n")},
		CreatedAt: base, ExpiresAt: base.Add(time.Hour)}
}

// TestInsertIdemRecords: the batch insert stores each key's first record unless the key has one
// already, says which it stored, keeps the transaction usable after the ones it skipped, and
// stores every field as InsertIdemRecord does — across its chunk sizes (32, 8 and single rows).
func TestInsertIdemRecords(t *testing.T) {
	db, _ := openTest(t)
	ctx := context.Background()
	update(t, db, func(tx boxoffice.Tx) error { return tx.InsertIdemRecord(ctx, idemRecord("s", "taken", "old")) })

	var recs []*boxoffice.IdemRecord
	var want []bool
	add := func(scope, key, fp string, ok bool) {
		recs = append(recs, idemRecord(scope, key, fp))
		want = append(want, ok)
	}
	add("s", "taken", "new", false)    // a key with a record
	add("s", "k0", "first", true)      // a key's first record in the batch…
	add("s", "k0", "second", false)    // …and a later one
	add("other", "taken", "new", true) // another scope's key of the same name
	for i := range 44 {
		add("s", fmt.Sprintf("n%d", i), "fp", true)
	}
	var inserted []bool
	update(t, db, func(btx boxoffice.Tx) (err error) {
		inserted, err = btx.(*tx).InsertIdemRecords(ctx, recs)
		if err != nil {
			return err
		}
		// The transaction is intact: a later write in it commits with the batch.
		return btx.InsertIdemRecord(ctx, idemRecord("s", "after", "fp"))
	})
	if fmt.Sprint(inserted) != fmt.Sprint(want) {
		t.Fatalf("inserted %v\nwant     %v", inserted, want)
	}
	view(t, db, func(tx boxoffice.Tx) error {
		for _, c := range []struct{ scope, key, fingerprint string }{
			{"s", "taken", "old"}, {"s", "k0", "first"}, {"other", "taken", "new"}, {"s", "n43", "fp"}, {"s", "after", "fp"},
		} {
			r, err := tx.GetIdemRecord(ctx, c.scope, c.key)
			if err != nil {
				t.Fatalf("%s/%s: %v", c.scope, c.key, err)
			}
			if r.Fingerprint != c.fingerprint || r.Response == nil || r.Response.Status != 409 ||
				string(r.Response.Body) != `{"code":"sold_out"}`+"\n" || !r.ExpiresAt.Equal(base.Add(time.Hour).Truncate(time.Microsecond)) {
				t.Errorf("%s/%s stored as %+v", c.scope, c.key, r)
			}
		}
		return nil
	})
}
