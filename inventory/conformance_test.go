package inventory_test

import (
	"context"
	"strings"
	"testing"

	"boxoffice"
	"boxoffice/inventory"
	"boxoffice/inventory/inventorytest"
	"boxoffice/sqlite"
)

// SQLiteHarness runs the suite on SQLite files in the test's temp dir.
func sqliteHarness(name string) inventorytest.Harness {
	return inventorytest.Harness{
		OpenStore: func(t *testing.T, dir string) boxoffice.Store {
			st, err := sqlite.Open(context.Background(), dir+"/boxoffice.db")
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
		NewInventory: func(t *testing.T, store boxoffice.Store) boxoffice.Inventory {
			inv, err := inventory.New(name, store, inventory.Options{})
			if err != nil {
				t.Fatal(err)
			}
			return inv
		},
	}
}

func TestConformance(t *testing.T) {
	for _, name := range inventory.Names() {
		t.Run(name+"/sqlite", func(t *testing.T) {
			// TODO(strategies): drop once every strategy is built.
			if _, err := inventory.New(name, nil, inventory.Options{}); err != nil && strings.Contains(err.Error(), "not built yet") {
				t.Skip(err)
			}
			inventorytest.Exercise(t, sqliteHarness(name))
		})
	}
}
