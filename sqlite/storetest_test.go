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

// TestWaitRoomBehaviour runs the waiting room's suite on SQLite files; a second handle on the
// same file stands for a restarted server, or a second process on the file.
func TestWaitRoomBehaviour(t *testing.T) {
	storetest.ExerciseWaitRoom(t, func(t *testing.T) (boxoffice.Store, func() boxoffice.Store) {
		db, path := openTest(t)
		return db, func() boxoffice.Store {
			again, err := Open(t.Context(), path)
			if err != nil {
				t.Fatalf("Open again: %v", err)
			}
			t.Cleanup(func() { _ = again.Close() })
			return again
		}
	})
}
