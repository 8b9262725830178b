package pgtest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { Main(m) }

// TestStartGivesFreshDatabases: each Start is its own empty database on the one server.
func TestStartGivesFreshDatabases(t *testing.T) {
	ctx := context.Background()
	a, b := Start(t), Start(t)
	if a == b {
		t.Fatalf("two Starts gave the same database %s", a)
	}
	for _, url := range []string{a, b} {
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		var tables int
		if err := c.QueryRow(ctx, `SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&tables); err != nil || tables != 0 {
			t.Errorf("%s has %d tables (%v), want a fresh database", url, tables, err)
		}
		if _, err := c.Exec(ctx, `CREATE TABLE t (id int)`); err != nil {
			t.Error(err)
		}
		_ = c.Close(ctx)
	}
	mu.Lock()
	s := srv
	mu.Unlock()
	if s == nil || s.port == 0 {
		t.Fatal("no server")
	}
	// Loopback only.
	if h := s.url("x"); h[:len("postgres://postgres@127.0.0.1:")] != "postgres://postgres@127.0.0.1:" {
		t.Errorf("url %s is not on 127.0.0.1", h)
	}
}

// TestRemoveStale: the directory of a run whose test process is gone is removed, one whose
// owner lives is kept.
func TestRemoveStale(t *testing.T) {
	base := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	for name, pid := range map[string]int{"dead": dead.Process.Pid, "live": os.Getpid()} {
		dir := filepath.Join(base, dirPrefix+name)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A directory without an owner file may belong to a run that is starting.
	if err := os.MkdirAll(filepath.Join(base, dirPrefix+"starting"), 0o700); err != nil {
		t.Fatal(err)
	}
	removeStale(base)
	for name, want := range map[string]bool{"dead": false, "live": true, "starting": true} {
		_, err := os.Stat(filepath.Join(base, dirPrefix+name))
		if got := err == nil; got != want {
			t.Errorf("%s directory exists = %v, want %v", name, got, want)
		}
	}
}
