package migrations

import (
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	ms, err := Load(fstest.MapFS{
		"m/0002_b.sql": {Data: []byte("B")},
		"m/0001_a.sql": {Data: []byte("A")},
		"m/0010_c.sql": {Data: []byte("C")},
	}, "m/*.sql")
	if err != nil || len(ms) != 3 || ms[0].Version != 1 || ms[1].SQL != "B" || ms[2].Name != "0010_c.sql" {
		t.Fatalf("got %+v %v", ms, err)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"duplicate version": {"m/0001_a.sql": {}, "m/01_b.sql": {}},
		"no version":        {"m/init.sql": {}},
		"zero version":      {"m/0000_a.sql": {}},
	} {
		if _, err := Load(fsys, "m/*.sql"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
