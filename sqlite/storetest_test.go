package sqlite

import (
	"testing"

	"boxoffice"
	"boxoffice/storetest"
)

// TestStoreBehaviour runs the behaviour suite every store passes; what is particular to SQLite
// (pragmas, reopen, query plans, group commit, a crash) is tested beside it.
func TestStoreBehaviour(t *testing.T) {
	storetest.Exercise(t, func(t *testing.T) boxoffice.Store {
		db, _ := openTest(t)
		return db
	})
}
